"""Saved weights used with no training: Model.save / load_weights / evaluate, predict() on arrays,
dicts and DataFrames with classes, `graphdsl predict` and `graphdsl evaluate`, the threads limit, and
the files and callbacks train(), save() and the CLI are given.
Expected values are computed here with NumPy from the weights, never by graphdsl."""
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from threadpoolctl import threadpool_info, threadpool_limits

import graphdsl
from graphdsl.cli import main
from graphdsl.errors import DataError
from graphdsl.training import trainer
from graphdsl.training.trainer import Trainer

# every test twice: all runs compiled, then as the default engine picks (conftest.training_engine)
pytestmark = pytest.mark.usefixtures("training_engine")

W = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.25]])
B = np.array([0.1, 0.0, -0.1])
SOFTMAX = """
input x[2]
target k
param W[3, 2] = zeros()
param b[3] = zeros()
z = W x + b
L = softmax_ce(z, k)
minimize L using sgd(lr=0.1)
"""
LOGITS = """
input x[2]
target y
param v[2] = zeros()
param c = 0
s = v x + c
L = {loss}
data x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [0, 1, 1, 0]
minimize L using sgd(lr=0.1), epochs=3
"""
X = np.array([[0.5, -1.0], [2.0, 3.0], [-1.0, 0.0], [0.2, 0.1]])
K = np.array([0, 1, 2, 2])


def saved_softmax(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, W=W, b=B)
    model = graphdsl.compile(SOFTMAX, engine="numpy")
    model.load_weights(path)
    return model


def test_save_then_load_weights_round_trips(tmp_path):
    model = saved_softmax(tmp_path)
    model.save(tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["W", "b"]
        np.testing.assert_array_equal(saved["W"], W)
    other = graphdsl.compile(SOFTMAX, engine="numpy")
    other.load_weights(tmp_path / "again.npz")
    np.testing.assert_array_equal(other.params["b"], B)


@pytest.mark.parametrize("arrays, named", [
    ({"W": W}, "`b` ([3]) is missing"),
    ({"W": W, "b": B, "extra": B}, "`extra` ([3]) is not a parameter"),
    ({"W": W[:2], "b": B}, "`W` is [2, 2] in the file"),
])
def test_a_weights_file_that_does_not_fit_names_the_param(tmp_path, arrays, named):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=re.escape(named)):
        graphdsl.compile(SOFTMAX).load_weights(tmp_path / "bad.npz")


def test_predict_takes_an_array_a_dict_or_a_dataframe(tmp_path):
    model = saved_softmax(tmp_path)
    want = X @ W.T + B
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-14)
    np.testing.assert_allclose(model.predict({"x": X}), want, rtol=1e-14)
    frame = pd.DataFrame(X, columns=["x[0]", "x[1]"])
    np.testing.assert_allclose(model.predict(frame), want, rtol=1e-14)
    np.testing.assert_array_equal(model.predict(X, classes=True), want.argmax(axis=1))
    with pytest.raises(DataError, match="no column `x\\[1\\]`"):
        model.predict(pd.DataFrame({"x[0]": X[:, 0]}))


def test_an_array_needs_a_spec_of_one_input():
    model = graphdsl.compile("input a[2]\ninput b[2]\nparam W[2] = [1, 2]\nL = mse(W * a, b)\nminimize L using sgd()\n")
    with pytest.raises(DataError, match="2 inputs"):
        model.predict(X)


@pytest.mark.parametrize("loss, cut", [("bce_logits(s, y)", 0.0), ("bce(sigmoid(s), y)", None)])
def test_binary_classes_from_the_logit_sign_or_the_half_cut(loss, cut):
    model = graphdsl.compile(LOGITS.format(loss=loss), engine="numpy")
    model.params.update(v=np.array([2.0, -3.0]), c=0.5)
    logits = X @ np.array([2.0, -3.0]) + 0.5
    got = model.predict(X)
    if cut is None:  # bce compares the probability sigmoid(s) with the target
        np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), rtol=1e-14)
    else:
        np.testing.assert_allclose(got, logits, rtol=1e-14)
    np.testing.assert_array_equal(model.predict(X, classes=True), (logits >= 0).astype(int))


def test_a_regressor_predicts_the_loss_first_argument_and_a_custom_loss_asks_for_a_node():
    spec = "input x[2]\ntarget t\nparam w[2] = [1, 2]\np = w x\nL = mse(p, t)\nminimize L using sgd()\n"
    model = graphdsl.compile(spec, engine="numpy")
    np.testing.assert_allclose(model.predict(X), X @ [1, 2], rtol=1e-14)
    custom = graphdsl.compile(spec.replace("mse(p, t)", "(p - t) * (p - t)"), engine="numpy")
    with pytest.raises(DataError, match="say which node to predict"):
        custom.predict(X)
    np.testing.assert_allclose(custom.predict(X, node="p"), X @ [1, 2], rtol=1e-14)
    with pytest.raises(DataError, match="classes=True needs"):
        model.predict(X, classes=True)


def test_evaluate_gives_the_loss_and_metrics_by_hand(tmp_path):
    model = saved_softmax(tmp_path)
    z = X @ W.T + B
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    got = model.evaluate({"x": X, "k": K})
    assert got["loss"] == pytest.approx(-log_p[np.arange(4), K].mean(), rel=1e-13)
    predicted = z.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(np.mean(predicted == K))
    matrix = np.zeros((3, 3), int)
    for t, p in zip(K, predicted):
        matrix[t, p] += 1
    np.testing.assert_array_equal(got["confusion"], matrix)


def test_evaluate_a_regressor_gives_mae_and_r2():
    spec = "input x[2]\ntarget t\nparam w[2] = [1, 2]\nL = mse(w x, t)\nminimize L using sgd()\n"
    t = np.array([1.0, 7.0, -2.0, 0.0])
    p = X @ [1, 2]
    got = graphdsl.compile(spec, engine="numpy").evaluate({"x": X, "t": t})
    assert got["loss"] == pytest.approx(np.mean((p - t) ** 2), rel=1e-13)
    assert got["mae"] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-13)
    assert got["r2"] == pytest.approx(1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2), rel=1e-13)


def test_cli_predict_and_evaluate_from_saved_weights(tmp_path):
    (tmp_path / "net.nn").write_text(LOGITS.format(loss="bce_logits(s, y)").replace("epochs=3", "epochs=50"))
    np.savez(tmp_path / "w.npz", v=np.array([2.0, -3.0]), c=np.array(0.5))
    np.savetxt(tmp_path / "new.csv", X, delimiter=",")
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "net.nn"), "--load", str(tmp_path / "w.npz"),
                                       str(tmp_path / "new.csv")])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(pd.io.common.StringIO(result.output))
    logits = X @ np.array([2.0, -3.0]) + 0.5  # the saved weights as they are: nothing trained
    assert list(frame.columns) == ["s", "class"]
    np.testing.assert_allclose(frame["s"], logits, rtol=1e-14)
    np.testing.assert_array_equal(frame["class"], (logits >= 0).astype(int))
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "net.nn"), "--load", str(tmp_path / "w.npz"),
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    data = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    z, y = data @ [2.0, -3.0] + 0.5, np.array([0, 1, 1, 0])
    rows = {row["name"]: row["value"] for row in json.loads(result.output)["rows"]}
    assert rows["loss"] == pytest.approx(np.mean(np.logaddexp(0, z) - y * z), rel=1e-12)
    assert rows["accuracy"] == np.mean((z >= 0) == y)
    np.savez(tmp_path / "bad.npz", v=np.zeros(3), c=np.array(0.5))
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "net.nn"), "--load", str(tmp_path / "bad.npz")])
    assert result.exit_code == 2 and "bad.npz" in result.output and "`v`" in result.output


def blas_threads() -> list:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_threads_limit_blas_while_training_and_are_restored_after(monkeypatch):
    trainer.blas_pools()  # SciPy's BLAS, the loops', loaded before counting the libraries
    seen = []
    chunk = Trainer.run_chunk

    def watched(self, *args):
        seen.append(blas_threads())
        return chunk(self, *args)

    monkeypatch.setattr(Trainer, "run_chunk", watched)
    model = graphdsl.compile(LOGITS.format(loss="bce_logits(s, y)"))
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        model.train(threads=1)
        assert blas_threads() == before
    assert seen and all(threads == [1] * len(before) for threads in seen)
    with pytest.raises(ValueError, match="threads"):
        model.train(threads=0)


@pytest.mark.parametrize("busy, expected", [(0, 2), (1, 1), (3, 1), (None, 2)])
def test_by_default_blas_leaves_the_cores_other_processes_keep_busy(monkeypatch, busy, expected):
    """Two cores: with another process's thread running, BLAS trains on one thread; with none (or
    where the system does not say), on both."""
    seen, chunk = [], Trainer.run_chunk
    monkeypatch.setattr(Trainer, "run_chunk", lambda self, *a: (seen.append(blas_threads()), chunk(self, *a))[1])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(trainer, "running_elsewhere", lambda: busy)
    model = graphdsl.compile(LOGITS.format(loss="bce_logits(s, y)"))
    with threadpool_limits(limits=2, user_api="blas"):
        model.train()
        assert blas_threads() == [2] * len(blas_threads())
    assert seen and all(threads == [expected] * len(threads) for threads in seen)
    seen.clear()
    with threadpool_limits(limits=1, user_api="blas"):  # a limit the user set is never raised
        monkeypatch.setattr(trainer, "running_elsewhere", lambda: 0)
        model.train()
    assert seen and all(threads == [1] * len(threads) for threads in seen)


UNCOMPILED_THEN_COMPILED = """
import sys
from threadpoolctl import threadpool_info, threadpool_limits
import graphdsl
from graphdsl.training.trainer import threads_limited

def threads():
    return sorted(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

model = graphdsl.compile("input x\\ntarget y\\nparam w = 0.5\\nL = (w x - y)^2\\ndata x = [1, 2], y = [2, 4]\\n"
                         "minimize L using sgd(lr=0.1), epochs=3\\n")
model.train()
assert model.params["w"] != 0.5 and "scipy.linalg" not in sys.modules, "an interpreted run loads SciPy's BLAS"
with threadpool_limits(limits=2, user_api="blas"):
    before = threads()
    with threads_limited(1, compiled=False):
        assert "scipy.linalg" not in sys.modules and threads() == [1] * len(before)
        with threads_limited(None, compiled=True):  # joins, and so takes the first run's limit
            assert "scipy.linalg" in sys.modules and len(threads()) > len(before)
            assert threads() == [1] * len(threads()), threads()
    assert threads() == [2] * len(threads()), threads()
print("ok")
"""


def test_an_uncompiled_run_leaves_scipys_blas_unloaded_and_a_compiled_one_joining_limits_it():
    """A homework's step spares SciPy's BLAS import (0.14 s of its 0.6); a compiled run starting
    while it trains loads it and limits it as the first run limited NumPy's. A fresh process, in
    which nothing has loaded SciPy."""
    done = subprocess.run([sys.executable, "-c", UNCOMPILED_THEN_COMPILED], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_threads_running_elsewhere_sees_a_busy_process():
    """The count the default comes from, against a real spinning process (Linux only)."""
    if trainer.running_elsewhere() is None:
        pytest.skip("no /proc/stat here")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert max(trainer.running_elsewhere() for _ in range(5)) >= 1
    finally:
        spinner.kill()


def test_models_training_in_threads_at_once_leave_blas_as_it_was():
    """The limit is the process's: each of four overlapping runs restoring its own would leave the
    threads of whichever ended last."""
    trainer.blas_pools()
    text = ("input x[2]\ntarget y\nparam w[2] = [0, 0]\nL = (w x - y)^2\n"
            "minimize L using sgd(lr=0.01), epochs=300, batch=2\n")
    data = {"x": np.random.default_rng(0).normal(size=(200, 2)), "y": np.zeros(200)}
    models = [graphdsl.compile(text, filename=f"{i}.nn") for i in range(4)]
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        runs = [threading.Thread(target=m.train, args=(data,), kwargs={"threads": 1 + i % 2})
                for i, m in enumerate(models)]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        assert blas_threads() == before
    assert all(len(m.params["w"]) == 2 and np.all(m.params["w"] == models[0].params["w"]) for m in models)


def test_cli_run_takes_threads(tmp_path):
    (tmp_path / "net.nn").write_text(LOGITS.format(loss="bce_logits(s, y)"))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "net.nn"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["run", str(tmp_path / "net.nn"), "--threads", "0"])
    assert result.exit_code == 2


def test_many_examples_are_evaluated_in_chunks_with_the_same_numbers(monkeypatch):
    """Predicting or measuring more examples than evaluate.CHUNK takes several minibatch graphs of
    one size; the values are those of evaluating each example alone."""
    import graphdsl
    from graphdsl.training import evaluate

    model = graphdsl.compile("input x[2]\nparam W[3, 2] = [[1, -1], [0.5, 2], [0, 1]]\nh = tanh(W x)\n",
                             engine="numpy")
    xs = np.random.default_rng(0).normal(size=(11, 2))
    monkeypatch.setattr(evaluate, "CHUNK", 4)  # 11 examples: chunks of 4, 4 and 3 (padded to 4)
    got = model.predict({"x": xs}, node="h")
    want = np.tanh(xs @ np.array([[1, -1], [0.5, 2], [0, 1]]).T)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_run_predicts_a_built_in_set_and_finds_a_bad_source_before_training(tmp_path, monkeypatch):
    """--predict iris reads iris's inputs (leaving out its labels), and a source that cannot be read
    is refused before anything trains."""
    from click.testing import CliRunner

    from graphdsl.cli import main
    from graphdsl.training.trainer import Trainer

    spec = (tmp_path / "net.nn")
    spec.write_text("input x[4]\ntarget k\nparam W[3, 4] = xavier(seed=0)\nz = W x\nL = softmax_ce(z, k)\n"
                    "minimize L using sgd(lr=0.1), epochs=1\n")
    result = CliRunner().invoke(main, ["run", str(spec), "--data", "iris", "--predict", "iris"])
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0] == "z[0],z[1],z[2],class" and len(rows) == 151
    monkeypatch.setattr(Trainer, "run", lambda *a, **k: pytest.fail("trained before reading --predict"))
    result = CliRunner().invoke(main, ["run", str(spec), "--data", "iris", "--predict", str(tmp_path / "no.csv")])
    assert result.exit_code == 2 and "no.csv" in result.output


# -- the files and callbacks train(), save() and the CLI are given ---------------------------------

FILES_SPEC = """\
input x
target y
param w = 0
param b = 0.5
L = (w x + b - y)^2
data "train.csv"
minimize L using sgd(lr=0.01), epochs=3, validation="val.csv"
"""


@pytest.fixture
def spec_dir(tmp_path):
    for name in ("train.csv", "val.csv"):
        (tmp_path / name).write_text("x,y\n1,2\n2,4\n3,6\n4,8\n")
    (tmp_path / "spec.nn").write_text(FILES_SPEC)
    return tmp_path


@pytest.mark.parametrize("flag", ["--log", "--trace", "--save", "--checkpoint"])
@pytest.mark.parametrize("read", ["val.csv", "train.csv", "spec.nn"])
def test_the_cli_never_writes_over_a_file_the_run_reads(spec_dir, flag, read, monkeypatch):
    """The validation file the spec names is an input like its data, and so is one --set names."""
    from click.testing import CliRunner

    from graphdsl.cli import main
    before = (spec_dir / read).read_bytes()
    monkeypatch.chdir(spec_dir)
    result = CliRunner().invoke(main, ["run", "spec.nn", flag, read])
    assert result.exit_code == 2 and "would overwrite what it reads" in result.output, result.output
    other = CliRunner().invoke(main, ["run", "spec.nn", "--set", "validation=train.csv", flag, "val.csv"])
    assert read != "val.csv" or other.exit_code == 0  # val.csv is no input there: it may be written
    assert (spec_dir / read).read_bytes() == before or read == "val.csv"


@pytest.mark.parametrize("option", ["log", "trace", "checkpoint"])
@pytest.mark.parametrize("read", ["val.csv", "train.csv", "spec.nn"])
def test_train_and_save_never_write_over_a_file_the_model_reads(spec_dir, option, read):
    model = graphdsl.load(spec_dir / "spec.nn")
    before = (spec_dir / read).read_bytes()
    with pytest.raises(DataError, match="would overwrite what it reads"):
        model.train(**{option: spec_dir / read})
    if read != "val.csv":  # save() reads no validation examples
        with pytest.raises(DataError, match="would overwrite what it reads"):
            model.save(spec_dir / read)
    assert (spec_dir / read).read_bytes() == before


@pytest.mark.parametrize("call", [
    lambda m: m.train(trace=1), lambda m: m.train(log=2), lambda m: m.train(checkpoint=5),
    lambda m: m.train(resume=3.0), lambda m: m.save(None), lambda m: m.save(1), lambda m: m.load_weights(None),
])
def test_a_file_argument_that_is_not_a_path_is_refused(spec_dir, call, capfd):
    """An int would be opened as a file descriptor, and closing it would close stdout."""
    with pytest.raises(DataError, match="is the path of a file"):
        call(graphdsl.load(spec_dir / "spec.nn"))
    print("stdout still open")
    assert "stdout still open" in capfd.readouterr().out


def test_on_epoch_must_be_a_function_that_says_stop_or_go_on(spec_dir):
    model = graphdsl.load(spec_dir / "spec.nn")
    with pytest.raises(DataError, match="on_epoch is a function"):
        model.train(on_epoch=5)
    with pytest.raises(DataError, match="returned \\[1, 2\\]"):
        model.train(on_epoch=lambda epoch, metrics: [1, 2])
    assert model.train(on_epoch=lambda epoch, metrics: np.bool_(epoch == 2)).epoch == [1, 2]


def test_options_given_from_python_as_numpy_numbers_or_none(spec_dir):
    model = graphdsl.load(spec_dir / "spec.nn")
    history = model.train(validation=np.float32(0.25), epochs=np.int64(2))
    assert history.epoch == [1, 2] and len(history["val_loss"]) == 2
    with pytest.raises(DataError, match="`per` is epoch or step, not `None`"):
        model.train(schedule="cosine", per=None)


def test_a_spec_without_examples_evaluates_at_its_own_values():
    model = graphdsl.compile("param w = 3\nL = (w - 1)^2\nminimize L using sgd(lr=0.1), epochs=3\n")
    assert model.evaluate() == {"loss": 4.0}
    model.train()
    assert model.evaluate()["loss"] == pytest.approx((model.params["w"] - 1) ** 2, rel=1e-12)


def test_a_checkpoint_of_a_run_with_frozen_params_loads_and_saved_weights_resume(tmp_path):
    text = ("input x\ntarget y\nparam w = 0\nparam b = 0.5\nL = (w x + b - y)^2\n"
            "minimize L using sgd(lr=0.01), epochs=20, freeze=[b]\n")
    data = {"x": np.arange(8.0), "y": 2 * np.arange(8.0)}
    model = graphdsl.compile(text)
    model.train(data, checkpoint=tmp_path / "c.npz")
    loaded = graphdsl.compile(text)
    loaded.load_weights(tmp_path / "c.npz")
    assert loaded.params["w"] == model.params["w"] and loaded.params["b"] == 0.5
    model.save(tmp_path / "s.npz")
    resumed = graphdsl.compile(text)
    resumed.train(data, resume=tmp_path / "s.npz", epochs=1)
    assert resumed.params["b"] == 0.5 and resumed.params["w"] != model.params["w"]


def test_early_stopping_says_when_a_validation_fraction_holds_out_nothing():
    model = graphdsl.compile("input x\ntarget y\nparam w = 0\nL = (w x - y)^2\n"
                             "minimize L using sgd(lr=0.1), epochs=3, patience=2, validation=0.01\n")
    with pytest.raises(DataError, match="validation=0.01 holds out none of these examples"):
        model.train({"x": np.arange(20.0), "y": np.arange(20.0)})
