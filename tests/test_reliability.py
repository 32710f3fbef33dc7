"""Reliability, by class of fault (issue 19): a run never overwrites the files it reads; special
files, full disks and file-size limits end in a clear message; data is read exactly or refused
with file, row and column; values at the edge of what the language accepts are bounded; a sweep
survives a failing trial and a torn row; specs the documentation calls valid are accepted.

Faults about files, limits and processes run the real command in a fresh interpreter; exit
codes are the contract: 2 bad input, 1 a failed run, never 3 (a bug).
"""
import csv
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphdsl
from click.testing import CliRunner

from graphdsl.cli import main
from graphdsl.errors import DataError
from graphdsl.training import data, records
from graphdsl.tools import sweep

CLI = [sys.executable, "-c", "from graphdsl.cli import main; main()"]

NET = """\
input x[2]
target k
param W[3, 2] = 0
param b[3] = 0
L = softmax_ce(W x + b, k)
minimize L using sgd(lr=0.1), epochs=1, batch=2
"""
DATA = "x1,x2,k\n0.5,1,0\n1,2,2\n"


def graphdsl_cli(*args, cwd, timeout=120, **kw):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def in_process(*args, cwd, monkeypatch):
    """The command in this process (click's CliRunner), for faults in what a file or spec says."""
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, [*map(str, args)])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def refused(proc, *words, code=2):
    """Exit `code`, no traceback, and the message says each of `words`."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def net(tmp_path):
    (tmp_path / "net.nn").write_text(NET)
    (tmp_path / "d.csv").write_text(DATA)
    return tmp_path


# -- the user's own files -----------------------------------------------------------------------

def overwrite_cases(tmp_path):
    """(arguments after `run net.nn --data d.csv`, words the refusal says): every output option
    naming an input (directly, by a symbolic or hard link, by `..`) or another output."""
    os.link(tmp_path / "d.csv", tmp_path / "hard.csv")
    os.symlink("net.nn", tmp_path / "link.nn")
    np.savez(tmp_path / "w.npz", W=np.zeros((3, 2)), b=np.zeros(3))
    (tmp_path / "new.csv").write_text("x1,x2\n1,2\n")
    return [(["--trace", "net.nn"], ["--trace net.nn is the spec"]),
            (["--log", "d.csv"], ["--log d.csv is a data file"]),
            (["--save", "hard.csv"], ["--save hard.csv is a data file"]),
            (["--checkpoint", "link.nn"], ["--checkpoint link.nn is the spec"]),
            (["--plot", "sub/../net.nn"], ["is the spec"]),
            (["--save", "w.npz", "--load", "w.npz"], ["--save w.npz is the --load file"]),
            (["--trace", "new.csv", "--predict", "new.csv"], ["--trace new.csv is a --predict file"]),
            (["--log", "t.csv", "--trace", "t.csv"], ["--log t.csv is also the file of --trace", "its own file"]),
            (["--save", "c.npz", "--checkpoint", "c.npz"], ["--checkpoint c.npz is also the file of --save"])]
    # every other case names an input: "the run would overwrite what it reads; write to another file"


def test_no_output_overwrites_an_input_or_another_output(net):
    (net / "sub").mkdir()
    before = {p.name: p.read_bytes() for p in net.iterdir() if p.is_file()}
    for args, words in overwrite_cases(net):
        refused(graphdsl_cli("run", "net.nn", "--data", "d.csv", *args, cwd=net), *words)
    for name, content in before.items():
        assert (net / name).read_bytes() == content, f"{name} was changed"
    assert not (net / "t.csv").exists() and not (net / "c.npz").exists(), "refused before any work"


def test_the_spec_s_own_data_file_is_an_input_too(net):
    (net / "own.nn").write_text(NET + 'data "d.csv"\n')
    refused(graphdsl_cli("run", "own.nn", "--log", "./d.csv", cwd=net), "--log ./d.csv is a data file")
    assert (net / "d.csv").read_text() == DATA


def test_a_checkpoint_may_name_the_file_it_resumes(net):
    first = graphdsl_cli("run", "net.nn", "--data", "d.csv", "--checkpoint", "c.npz", cwd=net)
    assert first.returncode == 0, first.stderr
    again = graphdsl_cli("run", "net.nn", "--data", "d.csv", "--checkpoint", "c.npz", "--resume", "c.npz",
                         "--set", "epochs=2", cwd=net)
    assert again.returncode == 0, again.stderr
    assert records.load_weights(net / "c.npz", {"W": (3, 2), "b": (3,)})[2] == {"step": 2, "epoch": 2}


def test_a_sweep_never_writes_over_its_spec_or_data(net):
    refused(graphdsl_cli("sweep", "net.nn", "--data", "d.csv", "--grid", "lr=0.1", "--out", "d.csv", cwd=net),
            "--out d.csv is a data file")
    refused(graphdsl_cli("sweep", "net.nn", "--grid", "lr=0.1", "--out", "r.csv", "--plot", "r.csv", cwd=net),
            "--plot r.csv is also the file of --out")
    assert (net / "d.csv").read_text() == DATA and not (net / "r.csv").exists()


def test_outputs_that_are_not_regular_files_are_refused_not_replaced(net):
    os.mkfifo(net / "fifo")
    for option in ("--trace", "--save", "--checkpoint"):  # a FIFO opened for writing blocks for a reader
        refused(graphdsl_cli("run", "net.nn", "--data", "d.csv", option, "fifo", cwd=net, timeout=60),
                "not a regular file")
        assert (net / "fifo").is_fifo()
    refused(graphdsl_cli("run", "net.nn", "--data", "d.csv", "--save", "nowhere/w.npz", cwd=net),
            "the folder", "does not exist")


def test_saving_through_a_symbolic_link_replaces_the_file_it_names(net):
    (net / "kept").mkdir()
    np.savez(net / "kept" / "w.npz", W=np.ones((3, 2)), b=np.ones(3))
    os.symlink("kept/w.npz", net / "w.npz")
    proc = graphdsl_cli("run", "net.nn", "--data", "d.csv", "--save", "w.npz", cwd=net)
    assert proc.returncode == 0, proc.stderr
    assert (net / "w.npz").is_symlink(), "the link is kept"
    assert records.load_weights(net / "kept" / "w.npz", {"W": (3, 2), "b": (3,)})[0]["W"][0, 0] != 1


# -- disks, limits and special files ------------------------------------------------------------

def test_a_file_size_limit_fails_the_run_and_keeps_whole_rows(net):
    """RLIMIT_FSIZE: a write past it fails with EFBIG (Python ignores SIGXFSZ). The trace stops at its
    last whole row, the checkpoint is the last one saved whole, and the run exits 1."""
    args = ["run", "net.nn", "--data", "d.csv", "--set", "epochs=400", "--set", "batch=1",
            "--trace", "t.csv", "--checkpoint", "c.npz"]
    warm = graphdsl_cli(*args, cwd=net)  # compiles into the cache, which the limited run only reads
    assert warm.returncode == 0, warm.stderr
    limit = 32_000
    (net / "t.csv").unlink()
    proc = graphdsl_cli(*args, cwd=net, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    refused(proc, "cannot write t.csv", "File too large", "keeps the rows written before", code=1)
    text = (net / "t.csv").read_text()
    assert 0 < len(text) <= limit and text.endswith("\n")
    columns, rows = records.read_trace(net / "t.csv")
    assert rows.shape[1] == len(columns) and list(rows[:, 0]) == list(range(1, len(rows) + 1))
    records.load_weights(net / "c.npz", {"W": (3, 2), "b": (3,)})  # whole


def test_stdout_on_a_full_device_or_a_closed_pipe(net):
    with open(os.devnull if not os.path.exists("/dev/full") else "/dev/full", "w") as full:
        proc = subprocess.run([*CLI, "run", "net.nn", "--data", "d.csv"], cwd=net, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    if os.path.exists("/dev/full"):
        refused(proc, "cannot write the output", code=1)
    reader = subprocess.Popen([*CLI, "run", "net.nn", "--data", "d.csv"], cwd=net, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    reader.stdout.close()  # as `| head -0` does: the first write finds no reader
    err = reader.stderr.read()
    assert reader.wait(timeout=120) == 1 and "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("option", ["--data", "--load", "--resume", "--predict", "spec"])
def test_special_files_are_refused_as_inputs(net, option):
    """A FIFO blocks a reader until something writes to it; /dev/zero never ends."""
    os.mkfifo(net / "fifo")
    for path in ("fifo", "/dev/zero"):
        args = [path] if option == "spec" else ["net.nn", "--data", "d.csv", option, path]
        if option == "--data":
            args = ["net.nn", "--data", path]
        refused(graphdsl_cli("run", *args, cwd=net, timeout=60), "not a regular file")


def npz_claiming(path, name, shape, **more):
    """An .npz whose member `name` has a header claiming `shape` of float64 and holds no data at all,
    beside the arrays `more`."""
    import io
    import zipfile
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.npy", header.getvalue())
        for key, value in more.items():
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())


def test_an_npz_claiming_terabytes_is_refused_before_allocating(net):
    npz_claiming(net / "big.npz", "x", (10**6, 10**6), k=np.zeros(2))
    npz_claiming(net / "w.npz", "W", (10**6, 10**6), b=np.zeros(3))
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # so a try fails fast
    refused(graphdsl_cli("run", "net.nn", "--data", "big.npz", cwd=net, preexec_fn=limit),
            "big.npz, array x", "claims an array of shape [1000000, 1000000]")
    refused(graphdsl_cli("run", "net.nn", "--data", "d.csv", "--load", "w.npz", cwd=net, preexec_fn=limit),
            "w.npz: `W`", "claims")


def test_no_writable_cache_nor_temporary_directory_is_a_clear_error(net):
    """Neither the cache nor any temporary directory can be made: /proc takes no new files, even from root."""
    (net / "show.nn").write_text("input x = 1\ny = 2 x\nshow y\n")
    script = ("import tempfile; tempfile.tempdir = '/proc/no-such-dir'; from graphdsl.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", script, "run", "--engine", "numba", "show.nn"],
                          cwd=net, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GRAPHDSL_CACHE_DIR": "/proc/no-such-cache"})
    refused(proc, "neither /proc/no-such-cache nor a temporary directory can be written", "GRAPHDSL_CACHE_DIR")
    assert "compiling into a temporary directory instead" not in proc.stderr


# -- data read wrong ---------------------------------------------------------------------------

X2, K3 = data.Field("x", "input", (2,)), data.Field("k", "target", (), classes=3)


@pytest.mark.parametrize("text, where", [
    ('a,b,k\n"1\n2",3,0\n', "row 2, column 1"),       # a quoted cell across a line break
    ('a,b,k\n1,"2\n",0\n3,4,1\n', "row 2, column 2"),
    ("a,b,k\n1,2,0\f3,4,1\n", "row 2"),               # \f, \v, \x1c-\x1e, \x85, \u2028 end no row
    ("a,b,k\n1,2,0\u20283,4,1\n", "row 2"),
    ("a,b,k\n1,2,0\x1e3,4,1\n", "row 2"),
    ("a,b,k\n1_000,2,0\n", "row 2, column 1"),         # Python's float() reads these, NumPy's parser not
    ("a,b,k\n\u0661,2,0\n", "row 2, column 1"),
    ("a,b,k\n1,\uff12,0\n", "row 2, column 2"),
])
def test_a_csv_read_wrongly_is_refused_with_row_and_column(tmp_path, text, where):
    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=where):
        data.load(path, [X2, K3])


def test_an_idx_file_of_too_many_dimensions_is_refused(tmp_path):
    path = tmp_path / "images-idx"
    path.write_bytes(bytes([0, 0, 8, 70]) + (1).to_bytes(4, "big") * 70 + b"\x07")
    with pytest.raises(DataError, match="70 dimensions"):
        data.load(path, [X2])


# -- edge values -------------------------------------------------------------------------------

EDGES = [  # (spec, what its refusal says), each an exit 3 before issue 19
    ("param w[2] = uniform(low=-1e308, high=1e308)\nL = sum(w)\nshow L\n", "beyond the largest float"),
    ("param w[" + ",".join(["1"] * 21) + "] = zeros()\nL = sum(w)\nshow L\n", "21 axes"),
    ("param w = " + "[" * 65 + "1" + "]" * 65 + "\nL = sum(w)\nshow L\n", "axes"),
    ("input x[2] = [1, 2]\ny = reshape(x, shape=[" + ",".join(["1"] * 20) + ",2])\nshow y\n", "21 axes"),
    ("input x[5] = [1,2,3,4,5]\nparam k[2] = 1\ny = conv1d(x, k, stride=9223372036854775807)\nshow y\n",
     "`stride` must be at most"),
    ("input x[1,4,4] = 1\nparam k[1,1,2,2] = 1\ny = conv2d(x, k, stride=1e300)\nshow y\n", "`stride` must be at most"),
    ("input x[4] = 1\ny = x[0:4:1e300]\nshow y\n", "at most 100,000,000"),
]


@pytest.mark.parametrize("text, words", EDGES)
def test_edge_values_are_bounded_by_the_language(tmp_path, monkeypatch, text, words):
    (tmp_path / "edge.nn").write_text(text)
    refused(in_process("run", "--engine", "numba", "edge.nn", cwd=tmp_path, monkeypatch=monkeypatch), "edge.nn:", words)


@pytest.mark.parametrize("meta, words", [
    ({"meta:step": np.float64(np.nan)}, "one finite number"),
    ({"meta:epoch": np.array("two")}, "real numbers"),
    ({"meta:step": np.array([1, 2])}, "one finite number"),
    ({"meta:epoch": np.array(-3)}, "whole number of at least 0"),
    ({"state:optimizer": np.array(["a", "b"])}, "real numbers"),
    ({"W": np.zeros((3, 2), complex)}, "real numbers"),
])
def test_what_a_checkpoint_claims_is_checked(net, monkeypatch, meta, words):
    arrays = {"W": np.zeros((3, 2)), "b": np.zeros(3), "meta:step": np.array(1), "meta:epoch": np.array(1)}
    np.savez(net / "c.npz", **{**arrays, **meta})
    refused(in_process("run", "net.nn", "--data", "d.csv", "--resume", "c.npz", cwd=net, monkeypatch=monkeypatch),
            "c.npz", words)


@pytest.mark.parametrize("option", ["every=1e300", "epochs=1e300", "batch=1e19"])
def test_options_beyond_the_loop_s_integers_are_refused(net, monkeypatch, option):
    refused(in_process("run", "net.nn", "--data", "d.csv", "--set", option, cwd=net, monkeypatch=monkeypatch),
            "below 2^53")


# -- sweeps ------------------------------------------------------------------------------------

SWEPT = NET.replace("lr=0.1", "lr=lr").replace("input", "setting lr = 0.1\ninput", 1) + \
    "data x = [[0, 1], [1, 0]], k = [0, 2]\n"


def test_a_trial_that_meets_a_bug_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from graphdsl.training import trainer
    real = trainer.Trainer.run

    def bug_at_lr_half(self, **kw):
        if self.train.settings["lr"] == 0.5:
            raise ZeroDivisionError("a planted bug")
        return real(self, **kw)
    monkeypatch.setattr(trainer.Trainer, "run", bug_at_lr_half)
    job = sweep.Job(SWEPT, str(tmp_path / "s.nn"))
    trials = sweep.plan({}, {"lr": [(0.1,), (0.5,), (0.2,)]}, {}, 0, 1)
    rows = sweep.run_sweep(job, trials, ["lr"], tmp_path / "r.csv", workers=1)
    status = {row["lr"]: (row["status"], row["error"]) for row in rows}
    assert status["0.1"] == ("ok", "") and status["0.2"] == ("ok", "")
    assert status["0.5"][0] == "error" and "internal error (ZeroDivisionError: a planted bug)" in status["0.5"][1]
    assert (tmp_path / "r.csv").read_text().count("\n") == 4, "a header and one line a trial"


SIZED = NET.replace("param W[3, 2] = 0\nparam b[3] = 0", "setting h = 3\nparam W[h, 2] = 0\nparam b[h] = 0") + \
    "data x = [[0, 1], [1, 0]], k = [0, 2]\n"


def test_a_row_torn_inside_a_quoted_message_is_run_again(tmp_path):
    """A spec error's message spans lines (the spec's line, a caret, a hint). Written into a row it
    is one line, so a kill mid-write leaves a torn last line; a row written whole elsewhere, with
    its quoted line breaks, torn inside its quotes, is not taken for a finished trial either."""
    job = sweep.Job(SIZED, str(tmp_path / "s.nn"))
    trials = sweep.plan({}, {"h": [(3,), (0,)]}, {}, 0, 1)  # 0: "a size must be ... at least 1", located
    out = tmp_path / "r.csv"
    rows = {row["h"]: row for row in sweep.run_sweep(job, trials, ["h"], out, workers=1)}
    assert rows["0"]["status"] == "error" and "at least 1" in rows["0"]["error"] and "\n" not in rows["0"]["error"]
    header, ok, bad = out.read_text().splitlines(keepends=True)
    cells = next(csv.reader([bad]))
    cells[-2] = cells[-2].replace(" | ", "\n")  # the message as it reads, over lines
    spread = records.quoted_line(cells)
    out.write_text(header + ok + spread[:spread.index("\n") + 1])  # killed after the message's first line
    again = sweep.run_sweep(job, trials, ["h"], out, resume=True, workers=1)
    assert sorted(row["h"] for row in again) == ["0", "3"]
    assert out.read_text().count("\n") == 3 and out.read_text().endswith("\n")
    assert {row["h"]: row["error"] for row in again}["0"] == rows["0"]["error"], "the torn trial ran again"


# -- valid specs ----------------------------------------------------------------------------------

def test_minimising_a_function_of_params_alone(tmp_path):
    """Gradient descent on f(w) = |w - (1, 2)|^2, which has no inputs: each epoch is one step,
    w <- w - 0.1 * 2 (w - c), so w - c shrinks by 0.8 a step."""
    (tmp_path / "f.nn").write_text("param w[2] = [3, -1]\nL = sum((w - [1, 2])^2)\n"
                                   "minimize L using sgd(lr=0.1), epochs=30\nshow w\n")
    proc = graphdsl_cli("run", "f.nn", "--precision", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = np.array([1.0, 2.0]) + 0.8 ** 30 * np.array([2.0, -3.0])
    assert f"{expected[0]:.10g}" in proc.stdout.split("values")[-1]
    model = graphdsl.compile("param w = 3\nL = (w - 1)^2\nminimize L using adam(lr=0.5), epochs=200\n")
    model.train()
    assert abs(model.params["w"] - 1) < 1e-2


LABELLED = """\
input x[2]
target y[3]
param W[3, 2] = [[0.1, -0.2], [0.3, 0.1], [-0.1, 0.2]]
L = softmax_ce(W x, y)
minimize L using sgd(lr=0.5), epochs=3, shuffle=0
"""
X3 = [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("given", ["inline", "csv", "dict"])
def test_class_labels_for_a_vector_target_are_one_hot_encoded(tmp_path, given):
    """As docs/training.md says, from every source: three examples of three classes, the case the
    number of examples once confused, train exactly as their one-hot rows do."""
    labels = [2, 0, 1]
    reference = graphdsl.compile(LABELLED)
    reference.train({"x": X3, "y": np.eye(3)[labels]})
    text = LABELLED + (f"data x = {X3}, y = {labels}\n" if given == "inline" else "")
    model = graphdsl.compile(text, filename=str(tmp_path / "l.nn"))
    if given == "csv":
        (tmp_path / "l.csv").write_text("a,b,class\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X3, labels)))
    model.train({"inline": None, "csv": str(tmp_path / "l.csv"), "dict": {"x": X3, "y": labels}}[given])
    np.testing.assert_array_equal(model.params["W"], reference.params["W"])


def test_specs_mlp_with_25_hidden_layers_builds_its_training_loop():
    """specs/mlp.nn's `for` block of 25 layers, through expansion, lowering, the minibatch rewrite,
    autodiff and the training loop's code generation (imported; Numba compiles at a call)."""
    from graphdsl import pipeline
    text = (Path(__file__).resolve().parents[1] / "specs" / "mlp.nn").read_text()
    model = graphdsl.compile(text, settings={"hidden": [4] * 25, "features": 2, "classes": 3}, engine="numpy")
    spec = model.spec
    plan = pipeline.step_plan(spec, spec.training, [spec.graph.names["x"], spec.graph.names["k"]], 32, [], [])
    pipeline.training_loop(plan, "float64", False)
    assert model.grad(x=[1, 2], k=2)["W.24"].shape == (4, 4)


def test_a_long_chain_of_names_trains_without_recursing():
    """Lowering, autodiff, the minibatch rewrite and the interpreter walk a graph without recursion;
    the generated training loop must too (written and imported here; Numba compiles at a call)."""
    from graphdsl import pipeline
    n = 1200  # beyond Python's recursion limit (1000)
    text = ("input x[2]\ntarget y\n" + "".join(f"a{i} = tanh({'x' if i == 0 else f'a{i - 1}'})\n" for i in range(n))
            + f"L = (sum(a{n - 1}) - y)^2\nminimize L using sgd(lr=0.1), batch=2\n")
    model = graphdsl.compile(text, engine="numpy")
    model.train({"x": np.ones((2, 2)), "y": [1, 0]})  # a short run: interpreted
    spec = model.spec
    plan = pipeline.step_plan(spec, spec.training, [spec.graph.names["x"], spec.graph.names["y"]], 2, [], [])
    pipeline.training_loop(plan, "float64", False)  # no RecursionError: fused chains are bounded
