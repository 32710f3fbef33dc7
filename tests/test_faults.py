"""Faults from outside the spec: bad data files and a damaged, read-only or contended cache.

Every case runs real processes: `graphdsl run` for data, and a fresh interpreter that
compiles a spec with Numba for the cache. Bad data ends in one clear message naming the
file (and row), exit code 2 and no traceback; a cache fault never changes a result and
costs at most one warning line on stderr.
"""
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cache_runs import SPEC, compute, modules, result, start

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from graphdsl.cli import main; main()"]

CLASSIFIER = """\
input x[2]
target k
param W[3, 2] = 0
param b[3] = 0
L = softmax_ce(W x + b, k)
minimize L using sgd(lr=0.1), epochs=1, batch=2
"""


def graphdsl(*args, cwd, env=None, timeout=300):
    env = {**os.environ, **(env or {})}  # the installed graphdsl, as users run it
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# -- data faults ------------------------------------------------------------------------------

def run_on(tmp_path, name, content):
    (tmp_path / "net.nn").write_text(CLASSIFIER)
    if content is not None:
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return graphdsl("run", "net.nn", "--data", name, cwd=tmp_path)


def assert_data_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for word in words:
        assert word in proc.stderr, proc.stderr


GOOD = "x1,x2,k\n0.5,1,0\n1,2,2\n"


def test_good_data_trains(tmp_path):
    proc = run_on(tmp_path, "d.csv", GOOD)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("content, words", [
    (None, ["missing.csv", "no such file"]),
    ("x1,x2,k\n0.5,1,0\n1,2\n", ["bad.csv", "row 3", "2 columns"]),
    ("x1,x2,k\n0.5,1,0\n1,two,1\n", ["bad.csv", "row 3", "column 2", '"two" is not a number']),
    ("x1,x2,k\n0.5,nan,0\n", ["bad.csv", "row 2", "column 2", "nan is not a finite number"]),
    ("x1,x2,k\n0.5,1,0\ninf,1,1\n", ["bad.csv", "row 3", "column 1", "inf is not a finite number"]),
    ("x1,x2,k\n0.5,1,0\n1,2,3\n", ["bad.csv", "row 3", "3 is not a class index", "0 to 2"]),
    ("x1,x2,k\n0.5,1,0.5\n", ["bad.csv", "row 2", "0.5 is not a class index"]),
    (b"\xff\xfe,1,2\n", ["bad.csv", "not UTF-8"]),
], ids=["missing", "column count", "non-numeric", "nan", "infinity", "label out of range", "fractional label",
        "not utf-8"])
def test_bad_csv(tmp_path, content, words):
    name = "missing.csv" if content is None else "bad.csv"
    assert_data_error(run_on(tmp_path, name, content), *words)


def test_shape_mismatch_with_the_spec(tmp_path):
    npz = tmp_path / "bad.npz"
    np.savez(npz, x=np.zeros((4, 3)), k=np.zeros(4))
    assert_data_error(run_on(tmp_path, "bad.npz", None), "bad.npz", "x[2] needs an array of shape [n, 2]", "[4, 3]")


def test_pickled_npz_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.array([object(), object()], dtype=object).reshape(2, 1).repeat(2, 1),
             k=np.zeros(2))
    assert_data_error(run_on(tmp_path, "bad.npz", None), "bad.npz", "unpickling")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(GOOD)
    path.chmod(0)
    try:
        assert_data_error(run_on(tmp_path, "d.csv", None), "d.csv", "cannot read it")
    finally:
        path.chmod(0o644)


# -- cache faults -------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["corrupt", "truncate", "empty", "hostile"])
def test_damaged_generated_module_is_rewritten(filled, expected, damage):
    cache = filled
    originals = {p: p.read_text() for p in modules(cache)}
    for path, text in originals.items():
        path.write_text({"corrupt": text.replace("def ", "dfe "), "truncate": text[:len(text) // 2], "empty": "",
                         "hostile": "raise SystemExit('ran a planted module')\n"}[damage])
    out, warnings = compute(cache)
    assert out == expected and warnings == []
    assert {p: p.read_text() for p in modules(cache)} == originals


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
def test_damaged_numba_cache_file_recompiles_with_one_warning(filled, expected, suffix):
    cache = filled
    damaged = sorted((cache / "__pycache__").glob(f"graphdsl_gen_*{suffix}"))
    assert damaged
    for path in damaged:
        with open(path, "rb") as f:  # an index starts with Numba's version: keep it, so Numba reads on
            keep = (pickle.load(f), f.tell())[1] if suffix == ".nbi" else 0
        path.write_bytes(path.read_bytes()[:keep] + b"\x80\x05garbage" + os.urandom(64))
    out, warnings = compute(cache)
    assert out == expected
    assert len(warnings) == 1 and "cache" in warnings[0] and "damaged" in warnings[0], warnings
    out, warnings = compute(cache)  # the cache was repaired
    assert out == expected and warnings == []


def test_truncated_numba_cache_file(filled, expected):
    cache = filled
    for path in (cache / "__pycache__").glob("graphdsl_gen_*.nb*"):
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    out, warnings = compute(cache)
    assert out == expected and len(warnings) <= 1


def test_unwritable_cache_falls_back_to_a_temporary_one(tmp_path, expected):
    """A cache path below a plain file cannot be created, even by root."""
    (tmp_path / "file").write_text("not a directory")
    out, warnings = compute(tmp_path / "file" / "cache")
    assert out == expected
    assert len(warnings) == 1 and "cannot write the cache" in warnings[0], warnings


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes whatever the mode")
def test_read_only_cache_directory(tmp_path, expected):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        out, warnings = compute(cache)
    finally:
        cache.chmod(0o755)
    assert out == expected and len(warnings) == 1, warnings


def test_read_only_cache_that_is_already_filled_needs_no_warning(filled, expected):
    cache = filled
    cache.chmod(0o555)  # for root this changes nothing; for anyone else, the modules are read as they are
    try:
        out, warnings = compute(cache)
    finally:
        cache.chmod(0o755)
    assert out == expected and warnings == []


def test_processes_compiling_the_same_spec_at_once(tmp_path, expected):
    cache = tmp_path / "cache"
    procs = [start(cache) for _ in range(3)]
    for proc in procs:
        out, warnings = result(proc)
        assert out == expected and warnings == []
    assert not list(cache.glob(".tmp-*")), "no half-written files are left behind"
    out, warnings = compute(cache)
    assert out == expected


# -- interruptions ------------------------------------------------------------------------------

LONG = """\
input x[2]
target y
param w[2] = [0.1, -0.2]
param b = 0
L = bce_logits(dot(w, x) + b, y)
data x = [[0, 1], [1, 0], [1, 1], [0, 0], [2, 1]], y = [1, 0, 1, 0, 1]
minimize L using adam(lr=0.001), epochs=1000000000, batch=2
"""


def start_training(tmp_path, *args):
    (tmp_path / "long.nn").write_text(LONG)
    env = dict(os.environ)
    return subprocess.Popen([*CLI, "run", "long.nn", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def weights(path: Path):
    from graphdsl.training import records
    return records.load_weights(path, {"w": (2,), "b": ()})


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resumes_bit_identically(tmp_path):
    proc = start_training(tmp_path, "--checkpoint", "ck.npz")
    wait_for(tmp_path / "ck.npz", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and "--resume ck.npz" in err, err
    params, state, meta = weights(tmp_path / "ck.npz")
    epochs = meta["epoch"] + 3
    assert meta["step"] == meta["epoch"] * 3  # 5 examples, batch 2: 3 steps an epoch, whole epochs only
    assert f"after epoch {meta['epoch']} (step {meta['step']})" in err

    def finish(*args):
        proc = subprocess.run([*CLI, "run", "long.nn", "--set", f"epochs={epochs}", *args], cwd=tmp_path,
                              env=dict(os.environ), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
    finish("--resume", "ck.npz", "--save", "resumed.npz")
    finish("--save", "straight.npz")
    resumed, straight = weights(tmp_path / "resumed.npz")[0], weights(tmp_path / "straight.npz")[0]
    for name in straight:
        assert resumed[name].tobytes() == straight[name].tobytes(), name


def test_ctrl_c_without_a_checkpoint_says_nothing_was_saved(tmp_path):
    proc = start_training(tmp_path, "--log", "log.csv")
    wait_for(tmp_path / "log.csv", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "nothing was saved" in err and "Traceback" not in err, err


@pytest.mark.parametrize("delay", [0.0, 0.13, 0.37])
def test_sigkill_leaves_the_last_complete_checkpoint_and_whole_trace_lines(tmp_path, delay):
    proc = start_training(tmp_path, "--checkpoint", "ck.npz", "--trace", "trace.csv", "--set", "every=1000")
    wait_for(tmp_path / "ck.npz", proc)
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=60)
    params, state, meta = weights(tmp_path / "ck.npz")  # readable, and whole: the same epoch everywhere
    assert meta["epoch"] >= 1 and state["optimizer"].shape == (6,)
    lines = (tmp_path / "trace.csv").read_text().split("\n")
    width = len(lines[0].split(","))  # header: no name here holds a comma
    # Every line that ended is whole. A SIGKILL in the middle of a write() can leave the last line
    # without its newline: such a tail is not a row (records.read_trace skips it, --resume cuts it).
    assert all(len(line.split(",")) == width for line in lines[:-1])


def many_examples(tmp_path, epochs):
    """LONG on 600 examples from a CSV (300 steps an epoch), `epochs` long: a few seconds of training."""
    rows = [f"{i % 7 / 7!r},{i % 11 / 11!r},{i % 2}" for i in range(600)]
    (tmp_path / "d.csv").write_text("x1,x2,y\n" + "\n".join(rows) + "\n")
    lines = ['data "d.csv"' if line.startswith("data ") else line for line in LONG.splitlines()]
    (tmp_path / "long.nn").write_text("\n".join(lines).replace("epochs=1000000000", f"epochs={epochs}"))


def wait_for_growth(path: Path, proc, seconds=120):
    size = path.stat().st_size
    deadline = time.monotonic() + seconds
    while path.stat().st_size == size:
        assert proc.poll() is None, f"the run ended before {path.name} grew"
        assert time.monotonic() < deadline, f"{path.name} never grew"
        time.sleep(0.01)


def tear(path: Path, reference: Path):
    """What a SIGKILL in the middle of the next append would leave: the next rows of the
    uninterrupted run's file, whole, then half a row (unless the kill already tore a row)."""
    text, lines = path.read_bytes(), reference.read_bytes().splitlines(keepends=True)
    assert reference.read_bytes().startswith(text)  # the killed run wrote the same rows so far
    if text.endswith(b"\n"):
        n = text.count(b"\n")
        path.write_bytes(text + lines[n] + lines[n + 1] + lines[n + 2][:len(lines[n + 2]) // 2])


def test_sigkill_then_resume_gives_the_trace_log_and_weights_of_an_uninterrupted_run(tmp_path):
    epochs = 12000
    many_examples(tmp_path, epochs)
    files = ["--set", "every=300", "--trace", "trace.csv", "--log", "log.csv"]
    (tmp_path / "straight").mkdir()
    straight = graphdsl("run", "../long.nn", *files, "--save", "w.npz", cwd=tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    with open(tmp_path / "killed.err", "w") as err:  # a file: a full pipe would stall the run
        proc = subprocess.Popen([*CLI, "run", "long.nn", *files, "--checkpoint", "ck.npz"], cwd=tmp_path,
                                env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for(tmp_path / "ck.npz", proc)
            wait_for_growth(tmp_path / "trace.csv", proc)  # a chunk after the first checkpoint is on disk
        finally:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.err").read_text()[-2000:]
    assert 1 <= weights(tmp_path / "ck.npz")[2]["epoch"] < epochs
    for name in ("trace.csv", "log.csv"):
        tear(tmp_path / name, tmp_path / "straight" / name)

    resumed = graphdsl("run", "long.nn", *files, "--checkpoint", "ck.npz", "--resume", "ck.npz",
                       "--save", "w.npz", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("trace.csv", "log.csv"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    got, expected = weights(tmp_path / "w.npz")[0], weights(tmp_path / "straight" / "w.npz")[0]
    for name in expected:
        assert got[name].tobytes() == expected[name].tobytes(), name


def test_resuming_into_a_trace_of_another_spec_is_refused(tmp_path):
    from graphdsl.training import records
    (tmp_path / "long.nn").write_text(LONG.replace("epochs=1000000000", "epochs=2"))
    records.save_weights(tmp_path / "ck.npz", {"w": np.zeros(2), "b": np.float64(0)},
                         {"optimizer": np.zeros(6)}, {"step": 3, "epoch": 1})
    other = "step,epoch,L,W[0]\n1,1,0.5,0.25\n"
    (tmp_path / "trace.csv").write_text(other)
    proc = graphdsl("run", "long.nn", "--resume", "ck.npz", "--trace", "trace.csv", cwd=tmp_path)
    assert_data_error(proc, "trace.csv", "new path")
    assert (tmp_path / "trace.csv").read_text() == other


# -- numerics -------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["softmax_ce(z, 1)", "logsumexp(z)", "bce_logits(z[0], 1)", "bce_logits(z[1], 1)"])
@pytest.mark.parametrize("logits", ["[1000, -1000]", "[1e-300, -1e-300]", "[700, 710]"])
def test_stable_forms_stay_finite_for_extreme_logits(loss, logits):
    from graphdsl.tools.anomaly import detect_anomaly
    model = graphdsl_compile(f"input z = {logits}\nL = {loss}\ngrad L wrt z\n")
    assert detect_anomaly(model) is None
    assert np.isfinite(model.forward()["L"]) and np.all(np.isfinite(model.grad()["z"]))


@pytest.mark.parametrize("text, words", [
    ("input x = 0\nparam w = 1\ny = log(w x)\nL = y^2\ngrad L wrt w\n", ["anomaly.nn:3:5", "is `y`", "log(w x)"]),
    ("input z = [1000, 0]\nt = exp(z)\nL = -log(t[1] / sum(t))\ngrad L wrt z\n", ["anomaly.nn:2:5", "is `t`"]),
    ("input x = 0\nparam w = 1\nL = sqrt(w x)\ngrad L wrt w\n", ["anomaly.nn:3:5", "the gradient of `L` through"]),
    ("input p = 0\nL = bce(p, 1)\ngrad L wrt p\n", ["anomaly.nn:2:5", "a `log` value", "bce(p, 1)"]),
])
def test_detect_anomaly_names_the_first_node_that_is_not_finite(tmp_path, text, words):
    (tmp_path / "anomaly.nn").write_text(text)
    proc = graphdsl("run", "anomaly.nn", "--detect-anomaly", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_detect_anomaly_is_quiet_when_everything_is_finite(tmp_path):
    proc = graphdsl("run", str(SPEC), "--detect-anomaly", cwd=tmp_path)
    assert proc.returncode == 0 and "dL/dW_h" in proc.stdout, proc.stderr


def graphdsl_compile(text):
    import graphdsl as g
    return g.compile(text, engine="numpy")
