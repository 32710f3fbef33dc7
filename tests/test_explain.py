"""`graphdsl explain`: the chain rule as a sum over paths of named nodes, each local derivative
checked against a hand derivation, each sum against PyTorch autograd, and the printed format
against a golden file (regenerate with GRAPHDSL_UPDATE_GOLDEN=1, then read the diff)."""
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graphdsl
import graphdsl.tools.explain
from graphdsl.cli import main
from graphdsl.tools.explain import chain_rule

ROOT = Path(__file__).resolve().parent.parent
TASK2 = ROOT / "specs" / "seed001_task2_paths.nn"
GOLDEN = Path(__file__).parent / "golden" / "explain_seed001_task2_n1.txt"
UPDATE = os.environ.get("GRAPHDSL_UPDATE_GOLDEN") == "1"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def close(actual, expected, tol=1e-10):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


# -- seed 001, Task 2: figure 1's network, one data point ------------------------------

def task2_torch():
    """The network in torch, from the spec's own input and param values: the units' values, and
    dE/dn1, dE/dn2, dE/dn4, dE/dw25 by autograd."""
    model = graphdsl.load(TASK2, engine="numpy")
    v = {name: torch.tensor(np.asarray(x).tolist(), dtype=torch.float64, requires_grad=True)
         for name, x in model.forward().items() if name in model.spec.names_of("input", "target", "param")}
    n = {}
    n[1] = torch.sigmoid(v["b1"] + v["v11"] @ v["x1"])
    n[2] = torch.sigmoid(v["b2"] + v["v22"] @ v["x2"])
    n[3] = torch.sigmoid(v["b3"] + v["w13"] * n[1])
    n[4] = torch.sigmoid(v["b4"] + v["w14"] * n[1] + v["w24"] * n[2])
    n[5] = torch.sigmoid(v["b5"] + v["w25"] * n[2])
    n[6] = torch.sigmoid(v["b6"] + v["w36"] * n[3] + v["w46"] * n[4])
    n[7] = torch.sigmoid(v["b7"] + v["w57"] * n[5])
    E = (n[6] - v["y6"]) ** 2 + (n[7] - v["y7"]) ** 2
    grads = torch.autograd.grad(E, [n[1], n[2], n[4], v["w25"]])
    units = {k: t.item() for k, t in n.items()}
    return model, units, v, {name: g.item() for name, g in zip(("n1", "n2", "n4", "w25"), grads)}


def task2_local(n, v):
    """Each local derivative, derived by hand: g = sigmoid, g' = g (1 - g), read from the unit's output."""
    s = {k: n[k] * (1 - n[k]) for k in n}
    w = {k: x.item() for k, x in v.items() if x.ndim == 0}
    return {"dE/dn6": 2 * (n[6] - w["y6"]), "dE/dn7": 2 * (n[7] - w["y7"]),
            "dn6/dn3": s[6] * w["w36"], "dn6/dn4": s[6] * w["w46"], "dn7/dn5": s[7] * w["w57"],
            "dn3/dn1": s[3] * w["w13"], "dn4/dn1": s[4] * w["w14"], "dn4/dn2": s[4] * w["w24"],
            "dn5/dn2": s[5] * w["w25"], "dn5/dw25": s[5] * n[2]}


EXPECTED_PATHS = {   # read off the network by hand
    "n1": {("n1", "n3", "n6", "E"), ("n1", "n4", "n6", "E")},
    "n2": {("n2", "n4", "n6", "E"), ("n2", "n5", "n7", "E")},
    "n4": {("n4", "n6", "E")},
    "w25": {("w25", "n5", "n7", "E")},
}


@pytest.mark.parametrize("node", sorted(EXPECTED_PATHS))
def test_task2_paths_terms_and_sums_match_hand_derivation_and_torch(node):
    model, n, v, grads = task2_torch()
    local = task2_local(n, v)
    result = chain_rule(model, node)
    assert {p.names for p in result.paths} == EXPECTED_PATHS[node]
    for path in result.paths:
        # Task 2: K terms along a path, the first the loss's own, written loss end first
        assert len(path.terms) == len(path.names) - 1
        assert path.terms[0].child == "E"
        assert [(t.parent, t.child) for t in reversed(path.terms)] == list(zip(path.names, path.names[1:]))
        for term in path.terms:
            close(term.value, local[term.label])
        close(path.product, math.prod(local[t.label] for t in path.terms))
    hand = sum(math.prod(local[f"d{child}/d{parent}"] for parent, child in zip(p, p[1:]))
               for p in EXPECTED_PATHS[node])
    close(result.total, hand)
    close(result.total, grads[node])
    close(result.autodiff, grads[node])
    assert result.agrees


LINE = re.compile(r"^  (d\w+/d\w+|product)\s+= (\S+)$")


def test_task2_cli_prints_every_term_and_the_sum():
    model, n, v, grads = task2_torch()
    local = task2_local(n, v)
    result = invoke("explain", TASK2, "n1", "--precision", "12")
    assert result.exit_code == 0, result.output
    printed = [LINE.match(line).groups() for line in result.output.splitlines() if LINE.match(line)]
    assert [label for label, _ in printed] == ["dE/dn6", "dn6/dn3", "dn3/dn1", "product",
                                               "dE/dn6", "dn6/dn4", "dn4/dn1", "product"]
    for i in (0, 4):
        terms = printed[i:i + 3]
        for label, value in terms:
            close(float(value), local[label], 1e-10)
        close(float(printed[i + 3][1]), math.prod(local[label] for label, _ in terms), 1e-10)
    total = re.search(r"^sum over paths\s+= .* = (\S+)$", result.output, re.M).group(1)
    autodiff = re.search(r"^autodiff dE/dn1\s+= (\S+)  \(agrees\)$", result.output, re.M).group(1)
    close(float(total), grads["n1"], 1e-10)
    close(float(autodiff), grads["n1"], 1e-10)


def test_golden_output_format():
    result = invoke("explain", TASK2, "n1")
    assert result.exit_code == 0, result.output
    if UPDATE:
        GOLDEN.write_text(result.output, encoding="utf-8")
    assert result.output == GOLDEN.read_text(encoding="utf-8")


# -- a graph with skip connections, a diamond and a node read twice ---------------------

SKIPS = """
input a = 0.7
param w = -1.3
b = sin(a) * w
c = a b + exp(b)
d = tanh(c) + b^2
L = d * a + c
grad L wrt a, w
"""


def test_skip_connections_every_path_and_local_derivative():
    model = graphdsl.compile(SKIPS, engine="numpy")
    a, w = 0.7, -1.3
    b = math.sin(a) * w
    c = a * b + math.exp(b)
    d = math.tanh(c) + b ** 2
    local = {("a", "b"): math.cos(a) * w, ("w", "b"): math.sin(a), ("a", "c"): b, ("b", "c"): a + math.exp(b),
             ("c", "d"): 1 - math.tanh(c) ** 2, ("b", "d"): 2 * b, ("d", "L"): a, ("a", "L"): d, ("c", "L"): 1.0}

    def paths(node):   # every path to L, by depth-first search over the hand-written edges
        if node == "L":
            return [("L",)]
        return [(node,) + rest for (p, child) in local if p == node for rest in paths(child)]

    ta, tw = torch.tensor(a, dtype=torch.float64, requires_grad=True), torch.tensor(w, dtype=torch.float64,
                                                                                   requires_grad=True)
    tb = torch.sin(ta) * tw
    tc = ta * tb + torch.exp(tb)
    L = (torch.tanh(tc) + tb ** 2) * ta + tc
    autograd = dict(zip("awbc", torch.autograd.grad(L, [ta, tw, tb, tc])))
    for node in "awbc":
        result = chain_rule(model, node)
        want = paths(node)
        assert {p.names for p in result.paths} == set(want)
        for path in result.paths:
            for t in path.terms:
                close(t.value, local[t.parent, t.child])
        close(result.total, sum(math.prod(local[e] for e in zip(p, p[1:])) for p in want))
        close(result.total, float(autograd[node]))
        close(result.autodiff, float(autograd[node]))
    assert len(chain_rule(model, "a").paths) == 6


def test_no_path_gives_zero_and_agrees(tmp_path):
    spec = tmp_path / "unused.nn"
    spec.write_text("input x = 1\ninput u = 2\nparam w = 3\nL = w x\ngrad L wrt w\n")
    result = invoke("explain", spec, "u")
    assert result.exit_code == 0, result.output
    assert "no path of named nodes leads from u to L" in result.output
    assert "autodiff dL/du = 0  (agrees)" in result.output


def test_loss_option_picks_another_scalar():
    result = invoke("explain", TASK2, "n5", "--loss", "n7")
    assert result.exit_code == 0, result.output
    assert "path 1 of 1: n5 -> n7  (1 term)" in result.output


# -- errors ---------------------------------------------------------------------------

def test_vector_node_is_a_located_error():
    line = TASK2.read_text().splitlines().index("param v11 = [0.4, -0.6]") + 1
    result = invoke("explain", TASK2, "v11")
    assert result.exit_code == 2
    assert f"{TASK2}:{line}:1: error: explain follows scalar values only, but `v11` is [2]\n" in result.output


def test_vector_on_a_path_is_a_located_error(tmp_path):
    spec = tmp_path / "vector.nn"
    spec.write_text("input x = 1\nh = [x, 2 x]\nL = sum(h)\ngrad L wrt x\n")
    result = invoke("explain", spec, "x")
    assert result.exit_code == 2
    assert f"{spec}:2:5: error: explain follows scalar values only, but `h` is [2] and lies on a path from `x` to `L`" \
        in result.output


def test_unknown_node_suggests_a_name():
    result = invoke("explain", TASK2, "w255")
    assert result.exit_code == 2
    assert f"{TASK2}: error: the spec defines no `w255`\n  hint: did you mean `w25`?" in result.output


def test_const_and_missing_loss_are_errors(tmp_path):
    spec = tmp_path / "noloss.nn"
    spec.write_text("const c = 2\ninput x = 1\nL = c x\n")
    no_loss = invoke("explain", spec, "x")
    assert no_loss.exit_code == 2 and "this spec names no loss to differentiate" in no_loss.output
    const = invoke("explain", spec, "c", "--loss", "L")
    assert const.exit_code == 2 and "`c` is a constant, so it has no gradient" in const.output


def test_disagreement_exits_1(monkeypatch):
    real = graphdsl.tools.explain.local_derivatives
    monkeypatch.setattr(graphdsl.tools.explain, "local_derivatives",
                        lambda model, edges: {e: 2 * v for e, v in real(model, edges).items()})
    result = invoke("explain", TASK2, "n1")
    assert result.exit_code == 1
    assert "(DISAGREES)" in result.output
