"""Sweeps: a grid of trials, serially or on a real local Dask cluster, with the same rows either way."""
import collections
import csv

import numpy as np
import pytest
from click.testing import CliRunner

from graphdsl.tools import sweep
from graphdsl.cli import main

# A small net on inline data with a validation split, so every metric column is filled.
SPEC = """
setting hidden = [3]
setting lr = 0.1
input x[2]
target y
a = x
for n in hidden
    param W[n, size(a)] = xavier()
    param b[n] = zeros()
    a = tanh(W a + b)
end
param v[size(a)] = xavier()
param c = 0
L = bce_logits(v a + c, y)
data x = [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9]], y = [0, 1, 1, 0, 1, 0]
minimize L using sgd(lr=lr), epochs=5, batch=2, validation=0.34
"""
# lr is a spec setting, momentum an optimizer setting: one graph, so one compile for all 8 trials.
GRID = {"lr": [(0.05,), (0.5,)], "momentum": [(0.0,), (0.9,)]}
# The default engine interprets SPEC's 10 steps; 4,500 steps it compiles (docs/training.md).
COMPILED = SPEC.replace("epochs=5, batch=2, validation=0.34", "epochs=1500, batch=2")


def trials(grid=GRID, seeds=2, fixed=None):
    return sweep.plan(fixed or {}, grid, {}, 0, seeds)


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_time(rows):
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=lambda r: r["trial"])


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.nn"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def job(spec_file):
    return sweep.Job(SPEC, str(spec_file))


@pytest.fixture(scope="module")
def serial(job, tmp_path_factory):
    """The grid run in this process: the reference every other way of running must match."""
    out = tmp_path_factory.mktemp("serial") / "serial.csv"
    sweep.run_sweep(job, trials(), list(GRID), out, workers=1)
    return out


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    with sweep.local_cluster(2) as c:
        yield c


@pytest.fixture(scope="module")
def cluster_run(job, cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster") / "cluster.csv"
    sweep.run_sweep(job, trials(), list(GRID), out, address=cluster.scheduler_address)
    return out


@pytest.fixture(scope="module")
def counted_run(cluster, tmp_path_factory):
    """A grid whose trials compile, on the cluster, first of all, while no process has compiled its
    graph; with the Numba compiles of generated functions and the trials each worker process ran,
    counted there."""
    from distributed import Client

    def install():
        import numba.core.compiler as compiler

        import graphdsl
        counts = graphdsl.sweep_test_counts = {"compiled": [], "trials": 0}
        compile_extra, compile_spec = compiler.compile_extra, graphdsl.compile

        def counting_compile_extra(*a, **k):
            counts["compiled"].append((a[2].__module__, a[2].__qualname__, str(k.get("args"))))
            return compile_extra(*a, **k)

        def counting_compile(*a, **k):
            counts["trials"] += 1
            return compile_spec(*a, **k)
        compiler.compile_extra, graphdsl.compile = counting_compile_extra, counting_compile

    def counts():
        import graphdsl
        return graphdsl.sweep_test_counts

    path = tmp_path_factory.mktemp("counted")
    (path / "long.nn").write_text(COMPILED)
    out = path / "counted.csv"
    with Client(cluster.scheduler_address) as client:
        client.run(install)
        sweep.run_sweep(sweep.Job(COMPILED, str(path / "long.nn")), trials(), list(GRID), out,
                        address=cluster.scheduler_address)
        return out, client.run(counts)


# This runs first: the count needs a graph no process has compiled yet.
def test_each_worker_compiles_the_graph_at_most_once(counted_run):
    out, found = counted_run
    assert {r["status"] for r in read(out)} == {"ok"}
    assert sum(c["trials"] for c in found.values()) == 8
    generated = {w: [f for f in c["compiled"] if f[0].startswith("graphdsl_gen_")] for w, c in found.items()}
    assert sum(map(len, generated.values())) >= 1, "the graph was compiled somewhere"
    for worker, functions in generated.items():
        assert len(functions) == len(set(functions)), f"{worker} compiled a function twice"
        assert len({f[0] for f in functions}) <= 1, f"{worker} compiled more than the graph's one module"


def test_the_cluster_gives_the_serial_rows(cluster_run, serial, job, tmp_path):
    assert without_time(read(cluster_run)) == without_time(read(serial))
    rows = sweep.run_sweep(job, trials(), list(GRID), tmp_path / "c.csv", workers=2)  # an embedded cluster
    assert without_time(rows) == without_time(read(serial))


# -- planning ------------------------------------------------------------------------

def test_values_and_ranges_parse():
    assert sweep.parse_values("0.01, 0.1") == [(0.01,), (0.1,)]
    assert sweep.parse_values("[16],[64,32],[]") == [(16.0,), (64.0, 32.0), ()]
    assert sweep.parse_values("16,64") == [(16.0,), (64.0,)]  # one-entry lists
    assert sweep.parse_values("sgd,adam") == ["sgd", "adam"]
    for bad in ("", "[1,x]", "[16"):
        with pytest.raises(sweep.DataError):
            sweep.parse_values(bad)
    assert sweep.Range.parse("0.001:0.1:log") == sweep.Range(0.001, 0.1, log=True)
    assert sweep.Range.parse("8:64:int") == sweep.Range(8, 64, whole=True)
    for bad in ("1", "2:1", "0:1:log", "1:2:cubic", "1:3.5:int", "0.5:3:int:log"):
        with pytest.raises(sweep.DataError):
            sweep.Range.parse(bad)


@pytest.mark.parametrize("text", ["1:4:int", "1:4:int:log"])
def test_a_whole_range_draws_every_whole_number_in_it(text):
    r, rng = sweep.Range.parse(text), np.random.default_rng(1)
    counts = collections.Counter(r.draw(rng)[0] for _ in range(8000))
    assert set(counts) == {1.0, 2.0, 3.0, 4.0}  # the ends included, nothing past them
    if not r.log:  # uniform: a quarter each, the ends as likely as the middle
        assert all(abs(c / 8000 - 0.25) < 0.02 for c in counts.values())


def test_plan_crosses_grid_random_and_seeds_deterministically():
    ranges = {"lr": sweep.Range(0.001, 0.1, log=True), "hidden": sweep.Range(4, 32, whole=True)}
    five = sweep.plan({"epochs": (3.0,)}, {"momentum": [(0.0,), (0.9,)]}, ranges, 5, 3)
    assert len(five) == 2 * 5 * 3
    assert {t.seed for t in five} == {0, 1, 2}
    for t in five:
        assert 0.001 <= t.settings["lr"][0] <= 0.1 and t.settings["hidden"][0] in range(4, 33)
        assert t.settings["epochs"] == (3.0,)
    ten = sweep.plan({"epochs": (3.0,)}, {"momentum": [(0.0,), (0.9,)]}, ranges, 10, 3)
    assert [t.id for t in ten[:len(five)]] == [t.id for t in five]  # more draws extend the same sweep
    assert sweep.Trial({"hidden": (16.0,)}, 0).id == sweep.Trial({"hidden": sweep.parse_values("[16]")[0]}, 0).id
    assert len(sweep.plan({}, {"lr": [(0.1,), (0.1,)]}, {}, 0, 1)) == 1  # a repeated value runs once
    with pytest.raises(sweep.DataError):
        sweep.plan({"lr": (0.1,)}, {"lr": [(0.2,)]}, {}, 0, 1)


# -- serial --------------------------------------------------------------------------

def test_serial_sweep_writes_one_row_a_trial(serial):
    rows = read(serial)
    assert len(rows) == 8 and len({r["trial"] for r in rows}) == 8
    assert {r["status"] for r in rows} == {"ok"}
    assert {(r["lr"], r["momentum"], r["seed"]) for r in rows} == {
        (lr, m, s) for lr in ("0.05", "0.5") for m in ("0", "0.9") for s in ("0", "1")}
    assert all(float(r["best_val_loss"]) <= float(r["val_loss"]) for r in rows)


def test_csv_loads_with_pandas(serial):
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(serial)
    assert list(frame.columns) == ["trial", "seed", "lr", "momentum", *sweep.RESULTS]
    assert frame["lr"].dtype == float and frame["val_accuracy"].dtype == float
    assert frame["error"].isna().all()


def test_failing_trials_are_recorded_and_the_others_run(job, tmp_path):
    grid = {"lr": [(0.5,), "abc", (1e308,)]}  # fine; not a number; so large the weights overflow
    planned = trials(grid, seeds=1, fixed={"momentum": (0.9,)})
    rows = {r["lr"]: r for r in sweep.run_sweep(job, planned, ["lr"], tmp_path / "r.csv", workers=1)}
    assert rows["0.5"]["status"] == "ok"
    assert rows["abc"]["status"] == "error" and "takes numbers" in rows["abc"]["error"]
    assert rows["1e+308"]["status"] == "error" and "not finite" in rows["1e+308"]["error"]
    assert rows["1e+308"]["loss"] == ""
    assert len(read(tmp_path / "r.csv")) == 3


def test_resume_runs_only_the_trials_without_a_row(job, serial, tmp_path, monkeypatch):
    out = tmp_path / "r.csv"
    lines = serial.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]))  # the header and three finished trials
    ran = []
    real = sweep.run_trial
    monkeypatch.setattr(sweep, "run_trial", lambda j, t, w=None: (ran.append(t.id), real(j, t, w))[1])
    sweep.run_sweep(job, trials(), list(GRID), out, resume=True, workers=1)
    assert len(ran) == 5
    assert without_time(read(out)) == without_time(read(serial))
    sweep.run_sweep(job, trials(), list(GRID), out, resume=True, workers=1)
    assert len(ran) == 5, "a finished sweep resumes to nothing"
    out.write_text(out.read_text() + "99,0,0.5")  # a row a kill cut short
    before = out.read_bytes()
    with pytest.raises(sweep.DataError, match="columns"):
        sweep.run_sweep(job, trials({"lr": [(0.1,)]}), ["lr"], out, resume=True, workers=1)
    assert out.read_bytes() == before, "a file that is not this sweep's is left as it was"


def test_resuming_into_a_file_without_a_whole_line_leaves_it_as_it_was(job, tmp_path):
    """No header can be read from it, so it is not this sweep's and must not be overwritten."""
    out = tmp_path / "notes.txt"
    out.write_text("a note without a newline")
    with pytest.raises(sweep.DataError, match="no whole line"):
        sweep.run_sweep(job, trials(), list(GRID), out, resume=True, workers=1)
    assert out.read_text() == "a note without a newline"


def test_a_killed_sweep_keeps_every_finished_row(job, tmp_path, monkeypatch):
    real, ran = sweep.run_trial, []

    def dies_on_third(j, t, watch=None):
        ran.append(t)
        if len(ran) == 3:
            raise KeyboardInterrupt
        return real(j, t, watch)
    monkeypatch.setattr(sweep, "run_trial", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(job, trials(), list(GRID), tmp_path / "k.csv", workers=1)
    assert [r["trial"] for r in read(tmp_path / "k.csv")] == [t.id for t in ran[:2]]


def test_without_dask_the_trials_run_here(job, serial, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "dask_available", lambda: False)
    rows = sweep.run_sweep(job, trials(), list(GRID), tmp_path / "n.csv")
    assert without_time(rows) == without_time(read(serial))


# -- the command ---------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


def test_cli_exit_codes_best_trial_and_plot(spec_file, serial, tmp_path):
    out, png = tmp_path / "cli.csv", tmp_path / "cli.png"
    result = invoke(spec_file, "--grid", "lr=0.05,0.5", "--grid", "momentum=0,0.9", "--seeds", 2,
                    "--workers", 1, "--out", out, "--plot", png)
    assert result.exit_code == 0, result.output
    assert without_time(read(out)) == without_time(read(serial))
    _, top = sweep.best(read(serial))
    assert f"best by val_loss: trial {top['trial']}" in result.stdout
    assert png.stat().st_size > 0
    failed = invoke(spec_file, "--grid", "lr=0.5,abc", "--workers", 1, "--out", tmp_path / "f.csv")
    assert failed.exit_code == 1, failed.output
    for bad in (["--grid", "lr"], ["--grid", "lr=[1"], ["--grid", "seed=1,2"], ["--random", 3],
                ["--range", "lr=1:0"]):
        assert invoke(spec_file, *bad, "--workers", 1, "--out", tmp_path / "b.csv").exit_code == 2, bad
    untrained = tmp_path / "untrained.nn"
    untrained.write_text("input x = 1\ny = 2 x\n")
    assert invoke(untrained, "--out", tmp_path / "u.csv").exit_code == 2


def test_cli_runs_on_a_cluster_by_address_or_dask_config(spec_file, serial, cluster, tmp_path):
    import dask

    args = [spec_file, "--grid", "lr=0.05,0.5", "--grid", "momentum=0,0.9", "--seeds", 2]
    result = invoke(*args, "--address", cluster.scheduler_address, "--out", tmp_path / "a.csv")
    assert result.exit_code == 0, result.output
    # DASK_SCHEDULER_ADDRESS sets this config key when dask is imported
    with dask.config.set({"scheduler-address": cluster.scheduler_address}):
        result = invoke(*args, "--out", tmp_path / "e.csv")
    assert result.exit_code == 0, result.output
    for out in ("a.csv", "e.csv"):
        assert without_time(read(tmp_path / out)) == without_time(read(serial))
