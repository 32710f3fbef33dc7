"""The "auto" engine, the Python API's default: a program's first calls run in the interpreter
(nothing compiles, so a homework's forward and grad answer at once), later calls compiled; the
answers agree whichever engine gives them."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphdsl
from graphdsl import pipeline

SPEC = Path(__file__).resolve().parent.parent / "specs" / "backprop_2_2_1.nn"


def test_the_first_calls_are_interpreted_then_the_program_compiles():
    model = graphdsl.load(SPEC, seed=11)  # a seed of its own: programs no other test has called
    program = pipeline.grad_program(model.spec)
    first = [model.grad(x=[0.5 * i, 1.0]) for i in range(pipeline.AUTO_INTERPRETED)]
    assert "kernel" not in vars(program)  # the compiled kernel was never asked for
    later = model.grad(x=[0.0, 1.0])
    assert "kernel" in vars(program)
    reference = graphdsl.load(SPEC, seed=11, engine="numpy").grad(x=[0.0, 1.0])
    for name, value in reference.items():
        np.testing.assert_allclose(first[0][name], value, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(later[name], value, rtol=1e-12, err_msg=name)


def test_a_homework_from_python_never_imports_numba():
    code = ("import sys, graphdsl\n"
            f"m = graphdsl.load({str(SPEC)!r})\n"
            "m.forward(); m.grad(); m.jacobian('z_h', 'x')\n"
            "assert 'numba' not in sys.modules, 'numba was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of auto, numba, numpy"):
        graphdsl.load(SPEC, engine="jax")


def test_one_jacobian_is_one_call_answered_by_one_engine():
    """A jacobian runs its program once a row; the engine is chosen once for the whole call, so a
    6-row jacobian neither compiles halfway nor mixes interpreted and compiled rows."""
    text = "input x[6] = [1, 2, 3, 4, 5, 6]\nparam W[6, 6] = 0.1\ny = tanh(W x)\n"
    model = graphdsl.compile(text, seed=12)
    got = model.jacobian("y", "x")
    program = pipeline.jacobian_program(model.spec, "y", "x")
    assert program.calls == 1 and "kernel" not in vars(program)
    z = np.full((6, 6), 0.1) @ np.arange(1.0, 7.0)
    np.testing.assert_allclose(got, (1 - np.tanh(z) ** 2)[:, None] * np.full((6, 6), 0.1), rtol=1e-13)


# -- training: interpreted where the run's estimated work is small ----------------------------------

# 40 epochs of 5 steps, far past a homework's 5: estimated at 0.07 s interpreted. Each test gives the hidden layer a width of its own, so that no other test's run has
# compiled the same loop in this process.
MLP = """\
input x[4]
target k
param W[{hidden}, 4] = xavier(seed=1)
param b[{hidden}] = zeros()
param V[3, {hidden}] = xavier(seed=2)
h = tanh(W x + b)
L = softmax_ce(V h, k)
data iris
minimize L using sgd(lr=0.1, momentum=0.9), batch={batch}, epochs={epochs}
"""


def mlp(hidden: int, epochs: int = 40, batch: str = "30") -> str:
    return MLP.format(hidden=hidden, epochs=epochs, batch=batch)


def trains(text: str, **compile_kw) -> tuple:
    """(the trained model, whether its loop compiled)."""
    from graphdsl.training.trainer import Trainer

    compiled, original = [], Trainer.compiled

    def watched(self, tracing):
        compiled.append(tracing)
        return original(self, tracing)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "compiled", watched)
        model = graphdsl.compile(text, **compile_kw)
        model.train()
    return model, bool(compiled)


@pytest.mark.parametrize("hidden, update", [(6, "Python"), (7, "compiled")])
def test_a_run_of_little_work_is_interpreted_and_ends_where_the_compiled_loop_does(hidden, update, monkeypatch,
                                                                                   tmp_path):
    """Interpreted on a fresh cache, with the momentum update as Python (200 steps x 51 or 59
    params: under 300,000), or compiled where the run's steps x params are more (made so by
    shrinking the limit): every step's update one way; the compiled loop ends at the same weights."""
    from graphdsl.backend.runtime import step
    from graphdsl.training import interpreted

    calls = []

    class Watched:  # T.sgd, counting the calls of its compiled and its Python form
        py_func = staticmethod(lambda *a: calls.append("Python") or real.py_func(*a))

        def __call__(self, *a):
            calls.append("compiled")
            return real(*a)
    real = step.sgd
    monkeypatch.setenv("GRAPHDSL_CACHE_DIR", str(tmp_path))
    if update == "compiled":
        monkeypatch.setattr(interpreted, "MOST_WORK", 1000)
    monkeypatch.setattr(step, "sgd", Watched())
    model, compiled = trains(mlp(hidden))
    assert not compiled, "200 steps of little work compiled their loop"
    assert calls == [update] * 200
    monkeypatch.setattr(step, "sgd", real)
    reference, compiled = trains(mlp(hidden), engine="numba")
    assert compiled
    for name, value in reference.params.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-12, err_msg=name)


def test_a_resumed_run_takes_the_engine_of_the_whole_run(tmp_path):
    """3,000 steps compile (estimated at 1.4 s interpreted); stopped 2 epochs short and resumed,
    the last 10 steps compile too, and the weights are the uninterrupted run's to the last bit."""
    text = mlp(13, epochs=600)
    whole, compiled = trains(text)
    assert compiled
    cut = graphdsl.compile(text)
    cut.train(epochs=598, checkpoint=str(tmp_path / "c.npz"))
    resumed = graphdsl.compile(text)
    from graphdsl.training.trainer import Trainer
    with pytest.MonkeyPatch.context() as mp:
        ran = []
        mp.setattr(Trainer, "compiled", lambda self, tracing, real=Trainer.compiled: ran.append(1) or real(self, tracing))
        resumed.train(resume=str(tmp_path / "c.npz"))
    assert ran, "the resumed 10 steps were interpreted"
    for name, value in whole.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)


def test_a_run_takes_the_same_engine_whatever_the_cache_holds(monkeypatch, tmp_path):
    """Interpreted on a fresh cache, and still after a run compiled its loop, in this process and in
    another: the engine, and so every last digit, depends on the run alone."""
    monkeypatch.setenv("GRAPHDSL_CACHE_DIR", str(tmp_path))
    first, compiled = trains(mlp(8))
    assert not compiled
    assert trains(mlp(8), engine="numba")[1]
    code = f"import graphdsl\ngraphdsl.compile({mlp(8)!r}, engine='numba').train()\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again, compiled = trains(mlp(8), filename="again.nn")
    assert not compiled
    for name, value in first.params.items():
        np.testing.assert_array_equal(again.params[name], value, err_msg=name)


def test_a_run_of_much_work_compiles(monkeypatch, tmp_path):
    from graphdsl.training import interpreted

    monkeypatch.setenv("GRAPHDSL_CACHE_DIR", str(tmp_path))
    assert not trains(mlp(10, epochs=1, batch="all"))[1]
    monkeypatch.setattr(interpreted, "MOST_S", 0.0)  # every run is too much to interpret
    assert trains(mlp(10, epochs=1, batch="all"))[1]
    assert trains(mlp(11, epochs=1, batch="all"), engine="numba")[1]


def test_a_float32_run_always_compiles():
    assert trains(mlp(12, epochs=1, batch="all").replace("epochs=1", "epochs=1, dtype=float32"))[1]
