"""A cache directory others can write never runs their code; and the process faults found in the
same pass: a spec saved with a byte-order mark, Ctrl-C before training, temp files a SIGKILL left,
two runs writing one output file, two threads training one model.

Every planted file carries a payload that creates a marker file when it is unpickled or run. Each
test first shows the payload is live (it fires when read the way the file used to be read), then
runs graphdsl in a fresh process on the planted cache: no marker, and the values of a clean cache.
"""
import importlib.util
import marshal
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numba
import pytest
from click.testing import CliRunner
from lark import Lark

import graphdsl
from graphdsl import files
from graphdsl.cli import main
from graphdsl.frontend.parser import grammar_text
from graphdsl.training import records, trainer
from cache_runs import SPEC, compute, modules

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from graphdsl.cli import main; main()"]
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


class Plant:
    """Unpickling it creates `marker`: the code a planted pickle runs as it loads."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def payload(marker: Path) -> bytes:
    data = pickle.dumps(Plant(marker))
    pickle.loads(data).close()  # live: loading it creates the marker
    assert marker.exists()
    marker.unlink()
    return data


# -- planted files ------------------------------------------------------------------------------

def plant_grammar_cache(cache: Path, marker: Path) -> Path:
    """Lark's cache file where graphdsl kept it, after a first line (Lark unpickles the next part
    before it compares the first with the grammar's hash)."""
    path, planted = cache / "grammar-_NL.lark-cache", b"0" * 64 + b"\n" + payload(marker)
    path.write_bytes(planted)
    Lark(grammar_text(), parser="lalr", cache=str(path))  # live: Lark's own loading runs it (and rewrites it)
    assert marker.exists()
    marker.unlink()
    path.write_bytes(planted)
    return path


def plant_pyc(module: Path, marker: Path) -> Path:
    """An unchecked-hash .pyc beside a generated module: its header holds the module's source hash,
    and Python's own import takes it without reading the source. Its code creates the marker first."""
    source = module.read_bytes()
    code = compile(f"open({str(marker)!r}, 'w').close()\n".encode() + source, str(module), "exec")
    pyc = Path(importlib.util.cache_from_source(str(module)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little")
                    + importlib.util.source_hash(source) + marshal.dumps(code))
    return pyc


def test_a_planted_grammar_cache_is_never_loaded(filled, expected, tmp_path):
    marker = tmp_path / "ran"
    plant_grammar_cache(filled, marker)
    out, warnings = compute(filled)
    proc = subprocess.run([*CLI, "check", str(SPEC)], env={**os.environ, "GRAPHDSL_CACHE_DIR": str(filled)},
                          capture_output=True, text=True, timeout=300)
    assert not marker.exists()
    assert out == expected and warnings == [] and proc.returncode == 0, proc.stderr


def test_a_planted_pyc_is_never_imported(filled, expected, tmp_path):
    marker = tmp_path / "ran"
    for module in modules(filled):
        plant_pyc(module, marker)
    probe = subprocess.run([sys.executable, "-c", "import importlib.util, sys; "
                            "spec = importlib.util.spec_from_file_location('probe', sys.argv[1]); "
                            "spec.loader.exec_module(importlib.util.module_from_spec(spec))", str(module)],
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0 and marker.exists(), probe.stderr  # live: a plain import runs it
    marker.unlink()
    out, warnings = compute(filled)
    assert not marker.exists()
    assert out == expected and warnings == []


def test_a_planted_generated_module_never_runs(filled, expected, tmp_path):
    marker = tmp_path / "ran"
    originals = {path: path.read_text() for path in modules(filled)}
    for path in originals:
        path.write_text(f"open({str(marker)!r}, 'w').close()\n")
    out, warnings = compute(filled)
    assert not marker.exists()
    assert out == expected and warnings == []
    assert {path: path.read_text() for path in originals} == originals  # rewritten


def numba_files(where: Path, suffix: str) -> list:
    found = sorted(where.rglob(f"*{suffix}"))
    assert found, f"no {suffix} files under {where}"
    return found


def plant_numba_files(where: Path, index_marker: Path, data_marker: Path) -> None:
    """Numba's cache of the two generated modules, as Numba reads it (IndexDataCacheFile): the
    first's index (.nbi: Numba's version, then a pickle) and the second's data (.nbc: a pickle,
    which its index, left whole, leads to) made payloads."""
    first, second = sorted({path.name.split(".")[0] for path in numba_files(where, ".nbi")
                            if path.name.startswith("graphdsl_gen_")})
    for path in where.rglob(f"{first}.*.nbi"):
        path.write_bytes(pickle.dumps(numba.__version__) + payload(index_marker))
        with open(path, "rb") as f:  # live: read as Numba reads an index
            assert pickle.load(f) == numba.__version__
            pickle.loads(f.read()).close()
        assert index_marker.exists()
        index_marker.unlink()
    for path in numba_files(where, ".nbc"):
        if path.name.startswith(f"{second}."):
            path.write_bytes(payload(data_marker))


def test_planted_numba_files_in_a_directory_others_can_write_are_never_loaded(clean, expected, tmp_path):
    """NUMBA_CACHE_DIR shared with others: the helpers' and the modules' Numba caches both live there."""
    numba_dir, cache = tmp_path / "numba", tmp_path / "cache"
    out, warnings = compute(cache, NUMBA_CACHE_DIR=str(numba_dir))
    assert out == expected and warnings == []
    markers = tmp_path / "index ran", tmp_path / "data ran"
    plant_numba_files(numba_dir, *markers)
    for path in [numba_dir, *(p for p in numba_dir.rglob("*") if p.is_dir())]:
        path.chmod(0o777)
    out, warnings = compute(cache, NUMBA_CACHE_DIR=str(numba_dir))
    assert not any(marker.exists() for marker in markers)
    assert out == expected and warnings == []
    assert numba_files(cache / "numba", ".nbi")  # the compiled code went to graphdsl's own cache


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777], ids=["world", "group", "sticky"])
def test_a_cache_others_can_write_is_not_used(filled, expected, tmp_path, mode):
    """Every kind of planted file at once, in a cache as docs/sweeps.md once suggested sharing."""
    marker = tmp_path / "ran"
    plant_grammar_cache(filled, marker)
    for module in modules(filled):
        plant_pyc(module, marker)
    plant_numba_files(filled / "__pycache__", marker, marker)
    hostile = f"open({str(marker)!r}, 'w').close()\n"
    modules(filled)[0].write_text(hostile)
    filled.chmod(mode)
    out, warnings = compute(filled)
    assert not marker.exists() and out == expected
    assert len(warnings) == 1 and str(filled) in warnings[0] and "other users may write" in warnings[0], warnings
    assert modules(filled)[0].read_text() == hostile  # nothing was written there either


# -- the permission rule ------------------------------------------------------------------------

@pytest.fixture
def quiet(monkeypatch):
    """This process's warnings, each kind said afresh."""
    monkeypatch.setattr(files, "_warned", set())


def test_the_cache_is_created_private_whatever_the_umask(tmp_path, monkeypatch, quiet):
    path = tmp_path / "a" / "b" / "cache"
    monkeypatch.setenv("GRAPHDSL_CACHE_DIR", str(path))
    old = os.umask(0)
    try:
        assert files.cache_dir() == path
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o700, 0o755, 0o775, 0o757], ids=oct)
def test_which_cache_directories_are_used(tmp_path, monkeypatch, quiet, capsys, mode):
    path = tmp_path / "cache"
    path.mkdir()
    path.chmod(mode)
    monkeypatch.setenv("GRAPHDSL_CACHE_DIR", str(path))
    used = files.cache_dir()
    warned = capsys.readouterr().err
    if mode & 0o022:
        assert used == files.fallback_dir() and used.stat().st_mode & 0o777 == 0o700
        assert f"other users may write {path} (mode {mode:o})" in warned and "chmod 700" in warned
    else:
        assert used == path and warned == ""


@pytest.mark.skipif(not ROOT_USER, reason="only root can give a directory to another user")
def test_a_cache_of_another_user_is_not_used(tmp_path, monkeypatch, quiet, capsys):
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    monkeypatch.setenv("GRAPHDSL_CACHE_DIR", str(path))
    assert files.cache_dir() == files.fallback_dir()
    assert f"{path} belongs to another user" in capsys.readouterr().err


def test_which_files_in_a_cache_count_as_written_by_no_one_else(tmp_path):
    shared = tmp_path / "shared"  # 0755: others may enter it and write what its modes let them
    private = tmp_path / "private"
    shared.mkdir(mode=0o755)
    private.mkdir(mode=0o700)
    for where in (shared, private):
        for mode in (0o644, 0o664, 0o666):
            (where / oct(mode)).write_text("")
            (where / oct(mode)).chmod(mode)
    assert files.exposure(shared / "0o644") is None
    assert files.exposure(shared / "0o664") == f"other users may write {shared / '0o664'} (mode 664)"
    assert files.exposure(shared / "0o666") is not None
    # in a directory no one else may enter, as Numba's files made with a umask of 002 are in graphdsl's
    assert [files.exposure(private / oct(mode)) for mode in (0o644, 0o664, 0o666)] == [None] * 3
    if ROOT_USER:
        os.chown(private / "0o644", 65534, 65534)
        assert files.exposure(private / "0o644") == f"{private / '0o644'} belongs to another user"


# -- the process faults -------------------------------------------------------------------------

BOM_SPEC = "input x[2] = [1, 2]\nparam w[2] = [3, 4]\ny = dot(w, x)\nshow y\n"


def test_a_spec_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.nn"
    path.write_bytes(b"\xef\xbb\xbf" + BOM_SPEC.encode())
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0 and "y scalar  11" in result.output, result.output
    assert float(graphdsl.load(path, engine="numpy").forward()["y"]) == 11.0


def test_an_error_in_a_spec_with_a_byte_order_mark_points_where_it_would_without(tmp_path):
    text = "y = x +\n"
    (tmp_path / "net.nn").write_text(text)
    without = CliRunner().invoke(main, ["check", str(tmp_path / "net.nn")]).output
    (tmp_path / "net.nn").write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = CliRunner().invoke(main, ["check", str(tmp_path / "net.nn")])
    assert result.exit_code == 2 and result.output == without, result.output


def test_a_byte_order_mark_inside_text_is_named():
    with pytest.raises(graphdsl.SpecError, match="invisible character U\\+FEFF"):
        graphdsl.compile("input x = 1\n\ufeffy = x\n")


LONG = """\
input x[2]
target y
param w[2] = [0.1, -0.2]
param b = 0
L = bce_logits(dot(w, x) + b, y)
data x = [[0, 1], [1, 0], [1, 1], [0, 0], [2, 1]], y = [1, 0, 1, 0, 1]
minimize L using adam(lr=0.001), epochs=1000000000, batch=2
"""
# The CLI, with one trainer method made to say "ready" (a file) and then take `seconds`.
STALLED = """
import pathlib, sys, time
from graphdsl.training import trainer
method, seconds = sys.argv.pop(1), float(sys.argv.pop(1))
original = getattr(trainer.Trainer, method)
def stalled(*args, **kwargs):
    pathlib.Path("ready").write_text("ready")
    time.sleep(seconds)
    return original(*args, **kwargs)
setattr(trainer.Trainer, method, stalled)
from graphdsl.cli import main
main()
"""


def wait_for(path: Path, proc, seconds=120) -> None:
    """Until `path` has something in it, while `proc` runs."""
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.stat().st_size:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def interrupted(tmp_path, method: str, seconds: float, epochs: int):
    (tmp_path / "long.nn").write_text(LONG.replace("epochs=1000000000", f"epochs={epochs}"))
    proc = subprocess.Popen([sys.executable, "-c", STALLED, method, str(seconds), "run", "long.nn"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "ready", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_ctrl_c_before_the_training_loop_exits_130_with_one_line(tmp_path):
    code, out, err = interrupted(tmp_path, "__init__", 60, 3)
    assert code == 130 and out == "", err
    assert err.strip().count("\n") == 0 and "interrupted" in err and "Traceback" not in err, err


def test_ctrl_c_during_the_last_chunk_is_not_lost(tmp_path):
    """The one chunk of a one-epoch run is the last: the press is kept until it is recorded."""
    code, out, err = interrupted(tmp_path, "run_chunk", 3, 1)
    assert code == 130 and out == "", err
    assert "interrupted: the weights after epoch 1" in err and "Traceback" not in err, err


# Replaces `ck.npz` with a writer that says "ready" (a file) mid-write, then waits to be killed.
WRITER = """
import pathlib, sys, time
from graphdsl.files import replace_atomically
def write(f):
    f.write(b"half a checkpoint")
    pathlib.Path(sys.argv[1]).write_text("ready")
    time.sleep(600)
replace_atomically("ck.npz", write)
"""


def stalled_writer(tmp_path, ready: str):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, ready], cwd=tmp_path)
    wait_for(tmp_path / ready, proc)
    return proc


def test_temp_files_a_sigkill_left_go_at_the_next_run(tmp_path):
    killed = stalled_writer(tmp_path, "first")
    killed.kill()
    killed.wait(timeout=60)
    (left,) = tmp_path.glob(f".tmp-ck.npz.{killed.pid}.*")
    live = stalled_writer(tmp_path, "second")
    try:
        (tmp_path / "long.nn").write_text(LONG.replace("epochs=1000000000", "epochs=2"))
        proc = subprocess.run([*CLI, "run", "long.nn", "--checkpoint", "ck.npz"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert not left.exists()
        assert len(list(tmp_path.glob(f".tmp-ck.npz.{live.pid}.*"))) == 1  # still being written
    finally:
        live.kill()
        live.wait(timeout=60)
    assert records.load_weights(tmp_path / "ck.npz", {"w": (2,), "b": ()})[2]["epoch"] == 2


def test_a_second_run_writing_the_same_output_file_is_refused(tmp_path):
    (tmp_path / "long.nn").write_text(LONG)
    first = subprocess.Popen([*CLI, "run", "long.nn", "--log", "log.csv", "--trace", "trace.csv", "--set", "every=1000"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(tmp_path / "log.csv", first)
        for flags, said in [(["--log", "log.csv"], "cannot write log.csv: another graphdsl run is writing it"),
                            (["--trace", "trace.csv"], "cannot write trace.csv: another graphdsl run is writing it"),
                            (["--trace", "same.csv", "--log", "same.csv"], "--log same.csv is also the file of --trace")]:
            second = subprocess.run([*CLI, "run", "long.nn", "--set", "epochs=1", *flags], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=300)
            assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
            assert said in second.stderr, second.stderr
        time.sleep(0.3)  # the first run goes on writing whole rows of its own
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    header, *rows = (tmp_path / "log.csv").read_text().splitlines()
    assert header.startswith("epoch,") and all(row.count(",") == header.count(",") for row in rows)
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, len(rows) + 1))


def test_two_threads_training_one_model_refuse_the_second(monkeypatch):
    model = graphdsl.compile(LONG.replace("epochs=1000000000", "epochs=2"), engine="numpy")
    started, release = threading.Event(), threading.Event()
    original = trainer.Trainer.run_chunk

    def held(self, *args):
        started.set()
        release.wait(timeout=120)
        return original(self, *args)
    monkeypatch.setattr(trainer.Trainer, "run_chunk", held)
    results = []
    first = threading.Thread(target=lambda: results.append(model.train()))
    first.start()
    try:
        assert started.wait(timeout=120)
        with pytest.raises(RuntimeError, match="this model is already training .*train a model of its own"):
            model.train()
    finally:
        release.set()
        first.join(timeout=120)
    assert results[0].epoch == [1, 2]
    assert model.train(epochs=1).epoch == [1]  # the first run's claim ended with it
