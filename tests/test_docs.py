"""docs/language.md stays true: every example compiles and runs, every function is documented.

A ```nn block must compile (and, if it asks for anything, evaluate); a
```nn-error block must be rejected with a SpecError. An ```nn-error block
followed by a ```text block that starts with `net.nn:` shows the error as
graphdsl prints it, and must match exactly.
"""
import re
from pathlib import Path

import numpy as np
import pytest

import graphdsl
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
TEXT = DOC.read_text(encoding="utf-8")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks():
    """(tag, body, line, next block's (tag, body) or None) for every fenced block, in order."""
    found = [(m.group(1).strip(), m.group(2), TEXT.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(TEXT)]
    return [(tag, body, line, found[i + 1][:2] if i + 1 < len(found) else None)
            for i, (tag, body, line) in enumerate(found)]


ALL = blocks()
GOOD = [(body, line) for tag, body, line, _ in ALL if tag == "nn"]
BAD = [(body, line, follow) for tag, body, line, follow in ALL if tag == "nn-error"]


def test_the_doc_has_examples():
    assert len(GOOD) >= 20
    assert len(BAD) >= 1


@pytest.mark.parametrize("body, line", GOOD, ids=[f"line-{line}" for _, line in GOOD])
def test_example_compiles_and_runs(body, line):
    model = graphdsl.compile(body, filename=f"language.md:{line}", engine="numpy")
    requests = model.spec.requests
    if not requests:
        return
    values = model.forward()
    for name, value in values.items():
        assert np.all(np.isfinite(value)), f"{name} is not finite"
    if model.loss is not None:
        model.grad()
    for r in requests:  # each request evaluates as `graphdsl run` would evaluate it
        if r.kind == "show":
            for name in r.names:
                assert name in values, f"`show {name}` has no value"
        elif r.kind == "grad":
            grads = model.grad(r.loss)
            for name in r.names:
                want = model.spec.graph.nodes[model.spec.graph.names[name]].shape
                assert np.shape(grads[name]) == want
        else:
            of, wrt = r.names
            point = {} if r.at is None else {wrt: r.at}
            jac = model.jacobian(of, wrt, **point)
            nodes, names = model.spec.graph.nodes, model.spec.graph.names
            assert jac.shape == nodes[names[of]].shape + nodes[names[wrt]].shape


@pytest.mark.parametrize("body, line, follow", BAD, ids=[f"line-{line}" for _, line, _ in BAD])
def test_error_example_is_rejected(body, line, follow):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(body, filename="net.nn", engine="numpy")
    if follow is not None and follow[0] == "text" and follow[1].startswith("net.nn:"):
        assert str(info.value) == follow[1].rstrip("\n")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_is_documented(name):
    assert re.search(rf"`{re.escape(name)}(\(|`)", TEXT), f"`{name}` is not documented in docs/language.md"


@pytest.mark.parametrize("name", sorted(INITIALISERS))
def test_every_initialiser_is_documented(name):
    assert re.search(rf"`{re.escape(name)}(\(|`)", TEXT), f"`{name}` is not documented in docs/language.md"


TRAINING = (DOC.parent / "training.md").read_text(encoding="utf-8")
TRAINING_SPECS = [m.group(2) for m in FENCE.finditer(TRAINING) if m.group(1).strip() == "nn"]


def test_training_doc_examples_compile():
    assert len(TRAINING_SPECS) >= 2
    for body in TRAINING_SPECS:
        assert graphdsl.compile(body, engine="numpy").spec.training is not None


def test_training_doc_xor_learns_xor():
    """The first example trains as the doc says: it learns XOR (accuracy from the model's own
    forward pass on the four examples, compared with the truth table)."""
    model = graphdsl.compile(TRAINING_SPECS[0], engine="numpy")
    model.train()
    table = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0}
    for x, y in table.items():
        score = model.forward(x=np.array(x, dtype=float), y=float(y))
        logit = score["v"] @ score["h"] + score["c"]
        assert (logit > 0) == bool(y), (x, logit)


@pytest.mark.parametrize("shape, fan_in, fan_out", [((4, 2), 2, 4), ((3,), 3, 3), ((8, 3, 5, 5), 75, 200)])
def test_initialisers_read_fans_as_the_doc_says(shape, fan_in, fan_out):
    """W[out, in]: fan_in = in, fan_out = out; a vector: both n; a conv kernel [F, C, kh, kw]:
    fan_in = C kh kw, fan_out = F kh kw. The draws' spread shows the fans used."""
    dims = ", ".join(map(str, shape))
    model = graphdsl.compile(f"param a[{dims}] = xavier(seed=0)\nparam b[{dims}] = he(seed=0)\n")
    a, b = model.params["a"], model.params["b"]
    limit = np.sqrt(6 / (fan_in + fan_out))
    np.testing.assert_allclose(a, np.random.default_rng(0).uniform(-limit, limit, shape), rtol=1e-15)
    np.testing.assert_allclose(b, np.random.default_rng(0).normal(0, np.sqrt(2 / fan_in), shape), rtol=1e-15)
