"""The Python API's boundary (issue 19): whatever arrays a user hands a model (params, inputs,
weights and checkpoint files, examples to train on or predict from), of any shape, dtype, layout
and value, a call returns values of the spec's shapes or refuses with a DataError (a TrainingError
for a loss that is not finite): never another exception, never a crash, never a read out of bounds.

Compiled kernels trust their arguments' shapes, so the property runs in a process of its own with
Numba's bounds checking on (NUMBA_BOUNDSCHECK=1, and a fresh cache, since Numba's cache does not
tell code compiled with bounds checks from code without): there a read out of bounds raises
IndexError instead of reading whatever lies past the array. The compiled results are also held
to the NumPy interpreter's, so a silently misread value fails too.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

ROOT = Path(__file__).resolve().parents[1]
INNER = os.environ.get("GRAPHDSL_BOUNDARY_RUN") == "1"
inner = pytest.mark.skipif(not INNER, reason="run by test_the_api_boundary_with_bounds_checking, in a process "
                                             "with NUMBA_BOUNDSCHECK=1")


def test_the_api_boundary_with_bounds_checking(tmp_path):
    if INNER:
        pytest.skip("this is the process the property runs in")
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "GRAPHDSL_BOUNDARY_RUN": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                           "-k", "inner"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout, proc.stdout[-2000:]


SPEC = """\
input x[3]
target k
param W[4, 3] = xavier()
param b[4] = zeros()
param s = 0.5
z = s * (W x + b)
L = softmax_ce(z, k)
grad L wrt W, b, s
minimize L using sgd(lr=0.1), epochs=3, batch=2
"""
SHAPES = {"W": (4, 3), "b": (4,), "s": ()}
EXAMPLES = {"x": np.arange(12.0).reshape(4, 3) / 10, "k": np.array([0, 1, 2, 3])}
DTYPES = ["float64", "float32", "float16", ">f8", "int64", "int8", "uint8", "bool", "complex128", "U2", "object"]


def c_order(a):
    return a


def fortran(a):
    return np.asfortranarray(a)


def strided(a):  # a view that skips every other entry of its last axis
    return np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a


def broadcast(a):  # zero strides, read-only
    return np.broadcast_to(a.flat[0], a.shape) if a.size else a


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def nested_list(a):
    return a.tolist()


REAL = ["float64", "float32", "float16", ">f8", "int64", "int8", "uint8", "bool"]


@st.composite
def user_array(draw, shape: tuple, fits: bool = False):
    """An array-like a user might hand in where one of `shape` belongs, in any layout, with values from
    class indices to nan and 1e308; unless it `fits`, also of any shape and dtype (text, objects)."""
    if not fits:
        shape = draw(st.one_of(st.just(shape), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
    dtype = np.dtype(draw(st.sampled_from(REAL if fits else DTYPES)))
    if dtype.hasobject:
        array = np.empty(shape, object)
        array.fill(draw(st.sampled_from([1.0, None, "a"])))
        return array
    small = dtype.kind in "iuf" and draw(st.integers(0, 3)) > 0  # class indices and ordinary numbers, mostly
    array = draw(hnp.arrays(dtype, shape, elements=st.integers(0, 3) if small else None))
    return draw(st.sampled_from([c_order, fortran, strided, broadcast, read_only, nested_list]))(array)


@st.composite
def handed_in(draw, shapes: dict) -> dict:
    """An array for each name of `shapes`, all of them fitting but one at most (or all, when the
    one is None), so a call gets past the checks often enough to run."""
    odd = draw(st.sampled_from([None, *shapes]))
    return {name: draw(user_array(shape, fits=name != odd)) for name, shape in shapes.items()}


def models():
    import graphdsl
    return graphdsl.compile(SPEC, engine="numba"), graphdsl.compile(SPEC, engine="numpy")


def outcome(call):
    """What the call returns, or None where it refused as a user is told: anything else fails."""
    from graphdsl.errors import DataError
    from graphdsl.training.trainer import TrainingError
    try:
        return call()
    except (DataError, TrainingError):
        return None


def agree(got, want) -> None:
    """Compiled and interpreted results: both refused, or the same shapes and, where finite, values."""
    assert (got is None) == (want is None), (got, want)
    event("refused" if got is None else "ran")  # --hypothesis-show-statistics counts them
    if got is None:
        return
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.shape == w.shape, name
        finite = np.isfinite(w) & np.isfinite(g)
        np.testing.assert_allclose(g[finite], w[finite], rtol=1e-6, atol=1e-9, err_msg=name)


PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@inner
def test_inner_bounds_checking_is_on():
    """The harness itself: a kernel given a param of the wrong shape, past every check, raises IndexError."""
    import numba
    from graphdsl import pipeline
    assert numba.config.BOUNDSCHECK
    compiled, _ = models()
    program = pipeline.forward_program(compiled.spec)
    leaves = compiled.leaf_values(program.graph, {"x": [1, 2, 3], "k": 1})
    leaves[compiled.spec.graph.names["W"]] = np.zeros((2, 2))
    with pytest.raises(IndexError):
        program.kernel(*(leaves[leaf] for leaf in program.leaves))


@inner
@PROPERTY
@given(given=handed_in({"W": (4, 3), "b": (4,), "s": (), "x": (3,), "k": ()}))
def test_inner_params_and_inputs(given):
    x, k = given.pop("x"), given.pop("k")
    compiled, reference = models()
    for model in (compiled, reference):
        model.params.update(given)
    agree(outcome(lambda: compiled.forward(x=x, k=k)), outcome(lambda: reference.forward(x=x, k=k)))
    agree(outcome(lambda: compiled.grad(x=x, k=k)), outcome(lambda: reference.grad(x=x, k=k)))
    agree(outcome(lambda: {"J": compiled.jacobian("z", "x", x=x)}),
          outcome(lambda: {"J": reference.jacobian("z", "x", x=x)}))
    history = outcome(lambda: compiled.train(EXAMPLES))
    if history is not None:
        assert {n: np.shape(v) for n, v in compiled.params.items()} == SHAPES


FILED = {"W": (4, 3), "b": (4,), "s": (), "extra": (2,), "state:optimizer": (17,), "meta:step": (),
         "meta:epoch": ()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@st.composite
def weights_file(draw):
    """The arrays of an .npz a user loads or resumes from: the params mostly, other keys sometimes."""
    chance = {"W": 0.95, "b": 0.95, "s": 0.95, "extra": 0.1}
    odd = draw(st.sampled_from([None, *FILED]))
    return {key: np.asarray(draw(user_array(shape, fits=key != odd))) for key, shape in FILED.items()
            if draw(st.floats(0, 1)) < chance.get(key, 0.5)}


FITTING = {"W": np.zeros((4, 3)), "b": np.zeros(4), "s": np.array(0.5)}


@inner
@PROPERTY
@given(arrays=weights_file())
@example(arrays={**FITTING, "meta:step": np.array(np.nan)})  # each an exit 3 before issue 19
@example(arrays={**FITTING, "meta:epoch": np.array(["x"])})
@example(arrays={**FITTING, "state:optimizer": np.array(["a"] * 17)})
def test_inner_weights_and_checkpoints(folder, arrays):
    from graphdsl.training import records
    path = folder / "w.npz"
    np.savez(path, **arrays)  # objects are pickled into it, as a careless np.savez does
    compiled, reference = models()
    loaded = outcome(lambda: records.load_weights(path, SHAPES))
    if loaded is not None:
        assert {n: v.shape for n, v in loaded[0].items()} == SHAPES
        for model in (compiled, reference):
            model.params.update(loaded[0])
        agree(outcome(compiled.grad), outcome(reference.grad))
    resumed = outcome(lambda: models()[0].train(EXAMPLES, resume=path, epochs=5))
    event("resumed" if resumed is not None else "not resumed")
    assert resumed is None or loaded is not None, "a file load_weights refuses is no checkpoint either"


@inner
@PROPERTY
@given(given=handed_in({"x": (4, 3), "k": (4,)}))
def test_inner_examples_to_train_and_predict(given):
    x, k = given["x"], given["k"]
    compiled, _ = models()
    history = outcome(lambda: compiled.train({"x": x, "k": k}))
    event("refused" if history is None else "trained")
    if history is not None:
        assert {n: np.shape(v) for n, v in compiled.params.items()} == SHAPES
    found = outcome(lambda: compiled.predict({"x": x}))
    assert found is None or found.shape == (len(np.asarray(x)), 4)
