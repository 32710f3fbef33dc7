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
