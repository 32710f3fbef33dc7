"""`graphdsl sweep --search tpe`: Optuna's TPE proposes the trials and its median pruner stops the
poor ones; the rows, the pruning rule (recomputed by hand), resuming, and Dask."""
import re
import sys

import numpy as np
import pytest

import graphdsl
from graphdsl.tools import sweep
from test_sweep import invoke, read, without_time

pytest.importorskip("optuna")

SPEC = """
setting lr = 0.1
input x[2]
target y
param W[3, 2] = xavier()
param b[3] = zeros()
param v[3] = xavier()
param c = 0
L = bce_logits(v tanh(W x + b) + c, y)
data x = [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9]], y = [0, 1, 1, 0, 1, 0]
minimize L using sgd(lr=lr), epochs=6, batch=2, validation=0.34
"""
ARGS = ["--search", "tpe", "--range", "lr=0.001:3:log", "--grid", "momentum=0,0.9"]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "search.nn"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def searched(spec_file, tmp_path_factory):
    """16 trials, one after another in this process."""
    out = tmp_path_factory.mktemp("tpe") / "tpe.csv"
    result = invoke(spec_file, *ARGS, "--trials", 16, "--workers", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_trials_lie_in_the_space_and_a_serial_search_repeats(searched, spec_file, tmp_path):
    rows = read(searched)
    assert len(rows) == 16
    assert {r["status"] for r in rows} <= {"ok", "pruned"}
    assert all(0.001 <= float(r["lr"]) <= 3 and r["momentum"] in ("0", "0.9") for r in rows)
    assert len({r["lr"] for r in rows}) == 16  # proposed, not a grid
    again = tmp_path / "again.csv"
    assert invoke(spec_file, *ARGS, "--trials", 16, "--workers", 1, "--out", again).exit_code == 0
    assert without_time(read(again)) == without_time(rows)
    assert [r["trial"] for r in read(again)] == [r["trial"] for r in rows]


def curve(row):
    """A trial's val_loss epoch by epoch, retrained with graphdsl from its row's settings."""
    model = graphdsl.compile(SPEC, seed=0, settings={"lr": float(row["lr"]), "momentum": float(row["momentum"]),
                                                      "seed": 0})
    return np.array(model.train()["val_loss"])


def test_a_trial_is_pruned_when_its_best_so_far_is_behind_the_median_of_earlier_trials(searched):
    """Optuna's MedianPruner's rule, recomputed here from curves trained again: after epoch k, a trial
    whose lowest val_loss so far is above the median of the finished trials' val_loss at epoch k
    stops (once 5 trials have finished); every other trial runs on."""
    rows = read(searched)
    finished, pruned_seen = [], 0
    for row in rows:
        mine = curve(row)
        pruned = re.match(r"pruned after epoch (\d+)", row["error"])
        stopped = int(pruned.group(1)) if pruned else len(mine)
        for k in range(1, stopped + 1):
            behind = len(finished) >= 5 and mine[:k].min() > np.median([f[k - 1] for f in finished])
            assert behind == (pruned is not None and k == stopped), (row, k)
        if pruned:
            pruned_seen += 1
            assert float(row["val_loss"]) == pytest.approx(mine[stopped - 1], rel=1e-12)
        else:
            finished.append(mine)
    assert pruned_seen >= 1, "the search pruned nothing, so the rule went untested"


def test_no_prune_runs_every_trial_to_the_end(spec_file, tmp_path):
    out = tmp_path / "np.csv"
    assert invoke(spec_file, *ARGS, "--trials", 8, "--no-prune", "--workers", 1, "--out", out).exit_code == 0
    assert {r["status"] for r in read(out)} == {"ok"}


def test_a_killed_search_resumes_to_the_count(spec_file, tmp_path, monkeypatch):
    out, real, ran = tmp_path / "k.csv", sweep.run_trial, []

    def dies_on_fifth(job, trial, watch=None):
        ran.append(trial)
        if len(ran) == 5:
            raise KeyboardInterrupt
        return real(job, trial, watch)
    monkeypatch.setattr(sweep, "run_trial", dies_on_fifth)
    invoke(spec_file, *ARGS, "--trials", 10, "--workers", 1, "--out", out)
    kept = read(out)
    assert [r["trial"] for r in kept] == [t.id for t in ran[:4]]
    monkeypatch.setattr(sweep, "run_trial", real)
    result = invoke(spec_file, *ARGS, "--trials", 10, "--workers", 1, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    rows = read(out)
    assert len(rows) == 10 and rows[:4] == kept
    assert len({r["trial"] for r in rows}) == 10, "a resumed search ran a point again"
    assert "6 trials in" in result.stdout
    result = invoke(spec_file, *ARGS, "--trials", 10, "--workers", 1, "--out", out, "--resume")
    assert "nothing left to run" in result.stdout and read(out) == rows


def test_resuming_rows_outside_the_space_is_refused(spec_file, tmp_path):
    out = tmp_path / "r.csv"
    assert invoke(spec_file, *ARGS, "--trials", 3, "--workers", 1, "--out", out).exit_code == 0
    before = out.read_bytes()
    result = invoke(spec_file, "--search", "tpe", "--range", "lr=0.5:3", "--grid", "momentum=0,0.9",
                    "--trials", 5, "--workers", 1, "--out", out, "--resume")
    assert result.exit_code == 2
    assert re.search(r"r\.csv row \d has lr=[\d.e-]+, which this search does not offer", result.output)
    assert out.read_bytes() == before


def test_whole_numbers_and_words(tmp_path):
    """An :int range proposes whole numbers (hidden sizes here, each its own graph), a grid of words
    proposes its words; the metric a search ranks by can be an accuracy, the highest best."""
    spec = tmp_path / "h.nn"
    spec.write_text(SPEC.replace("setting lr = 0.1", "setting lr = 0.1\nsetting h = 3")
                    .replace("[3, 2]", "[h, 2]").replace("[3]", "[h]"))
    out = tmp_path / "h.csv"
    result = invoke(spec, "--search", "tpe", "--range", "h=1:3:int", "--grid", "optimizer=sgd,adam",
                    "--trials", 4, "--metric", "val_accuracy", "--workers", 1, "--out", out)
    assert result.exit_code == 0, result.output
    rows = read(out)
    assert {r["h"] for r in rows} <= {"1", "2", "3"} and {r["optimizer"] for r in rows} <= {"sgd", "adam"}
    top = max((r for r in rows if r["status"] == "ok"), key=lambda r: float(r["val_accuracy"]))
    assert f"best by val_accuracy: trial {top['trial']}" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--search", "tpe", "--range", "lr=0.01:1"], "needs --trials N"),
    (["--trials", 3, "--grid", "lr=0.1,0.2"], "--trials is for --search tpe"),
    (["--search", "tpe", "--trials", 3, "--range", "lr=0.01:1", "--seeds", 2], "leave out --seeds"),
    (["--search", "tpe", "--trials", 3, "--range", "lr=0.01:1", "--random", 2], "give --trials N"),
    (["--search", "tpe", "--trials", 3], "needs something to search"),
    (["--search", "tpe", "--trials", 3, "--range", "h=1.2:1.8:int"], "runs between whole numbers"),
    (["--search", "tpe", "--trials", 3, "--range", "lr=0.01:1", "--metric", "f1"], "--metric is one of"),
    (["--search", "tpe", "--trials", 3, "--range", "lr=0.01:1", "--metric", "val_loss", "--set", "validation=0"],
     "needs examples held out"),
    (["--search", "tpe", "--trials", 3, "--range", "lr=0.01:1", "--set", "lr=0.1"], "more than once"),
    (["--search", "tpe", "--trials", 3, "--range", "lr=0:inf"], "finite LOW < HIGH"),
    (["--search", "tpe", "--trials", 5, "--grid", "momentum=0,0.9", "--range", "epochs=1:2:int"],
     "hold 4 points, fewer than --trials 5"),
    (["--grid", "lr=0.1,0.2", "--no-prune"], "--prune is for --search tpe"),
])
def test_what_a_search_refuses(spec_file, tmp_path, args, message):
    result = invoke(spec_file, *args, "--workers", 1, "--out", tmp_path / "x.csv")
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x.csv").exists()


def test_a_search_on_a_dask_cluster(spec_file, tmp_path):
    """Two workers, each trial proposed once a worker is free: every trial has its row, in range."""
    pytest.importorskip("distributed")
    out = tmp_path / "d.csv"
    result = invoke(spec_file, *ARGS, "--trials", 8, "--workers", 2, "--out", out)
    assert result.exit_code == 0, result.output
    rows = read(out)
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"ok", "pruned"}
    assert all(0.001 <= float(r["lr"]) <= 3 for r in rows)


def test_on_epoch_sees_each_epoch_and_can_stop_training():
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, metrics))
        return epoch == 3
    history = graphdsl.compile(SPEC, seed=0).train(on_epoch=on_epoch)
    assert [e for e, _ in seen] == [1, 2, 3] and history.stopped_epoch == 3
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [m[name] for _, m in seen] == list(history[name])


def test_every_trial_takes_the_set_settings(spec_file, tmp_path):
    out = tmp_path / "s.csv"
    result = invoke(spec_file, "--search", "tpe", "--range", "lr=0.01:1", "--set", "epochs=2", "--set", "momentum=0.5",
                    "--trials", 3, "--no-prune", "--workers", 1, "--out", out)
    assert result.exit_code == 0, result.output
    for row in read(out):
        model = graphdsl.compile(SPEC, seed=0, settings={"lr": float(row["lr"]), "epochs": 2, "momentum": 0.5,
                                                          "seed": 0})
        history = model.train()
        assert len(history["val_loss"]) == 2
        assert float(row["val_loss"]) == pytest.approx(history["val_loss"][-1], rel=1e-12)


def test_a_small_space_runs_each_point_once(spec_file, tmp_path):
    out = tmp_path / "g.csv"
    result = invoke(spec_file, "--search", "tpe", "--grid", "momentum=0,0.5,0.9", "--trials", 3, "--workers", 1,
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(r["momentum"] for r in read(out)) == ["0", "0.5", "0.9"]


def test_a_trial_without_the_metric_says_so_in_its_row(spec_file, tmp_path):
    """validation=0 in some trials: they report no val_loss, which the search optimises."""
    out = tmp_path / "v.csv"
    result = invoke(spec_file, "--search", "tpe", "--grid", "validation=0,0.34", "--trials", 2, "--workers", 1,
                    "--out", out)
    assert result.exit_code == 1
    rows = {r["validation"]: r for r in read(out)}
    assert rows["0.34"]["status"] == "ok"
    assert rows["0"]["status"] == "error" and "reports no val_loss" in rows["0"]["error"]
    assert "internal error" not in result.output


def test_resuming_with_other_set_values_is_refused(spec_file, tmp_path):
    out = tmp_path / "o.csv"
    assert invoke(spec_file, *ARGS, "--trials", 2, "--workers", 1, "--out", out).exit_code == 0
    before = out.read_bytes()
    result = invoke(spec_file, *ARGS, "--trials", 4, "--set", "epochs=3", "--workers", 1, "--out", out, "--resume")
    assert result.exit_code == 2 and "a trial of other settings" in result.output
    assert out.read_bytes() == before


def test_a_worker_without_optuna_fails_its_trial_with_the_install_hint(spec_file, monkeypatch):
    from graphdsl.tools.search import Watch

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ModuleNotFoundError
    result = sweep.run_trial(sweep.Job(SPEC, str(spec_file)), sweep.Trial({}, 0), Watch("val_loss", []))
    assert result["status"] == "error" and 'pip install "graphdsl[sweep]"' in result["error"]
