"""`graphdsl explain`: the chain rule as a sum over paths of named nodes (entry by entry for
vectors and matrices), each local derivative checked against a hand derivation, each formula by
evaluating it on the spec's values, each sum against PyTorch autograd, and the printed format
against a golden file (regenerate with GRAPHDSL_UPDATE_GOLDEN=1, then read the diff)."""
import json
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
from graphdsl.tools.explain import chain_rule, chain_rules

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


LINE = re.compile(r"^  (d\w+/d\w+|product)\s+(?:= .*\S\s+)?= (\S+)$")  # label, [formula,] value


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
    assert re.search(r"^autodiff dL/du +=  ?0  \(agrees\)$", result.output, re.M), result.output


def test_loss_option_picks_another_scalar():
    result = invoke("explain", TASK2, "n5", "--loss", "n7")
    assert result.exit_code == 0, result.output
    assert "path 1 of 1: n5 -> n7  (1 term)" in result.output


# -- errors ---------------------------------------------------------------------------

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
    real = graphdsl.tools.explain.Locals.rows
    monkeypatch.setattr(graphdsl.tools.explain.Locals, "rows",
                        lambda self, *args: {k: type(v)(2 * v.value, v.formula) for k, v in real(self, *args).items()})
    result = invoke("explain", TASK2, "n1")
    assert result.exit_code == 1
    assert "(DISAGREES)" in result.output


# -- formulas: each evaluates, on the spec's values, to its local derivative --------------------

FUNCTIONS = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "exp": np.exp, "log": np.log,
             "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt, "step": lambda v: (np.asarray(v) > 0) * 1.0}


def evaluated(formula, values):
    """A formula as explain writes it, evaluated by Python on the named values (`^` is a power)."""
    return eval(formula.replace("^", "**"), {"__builtins__": {}}, {**FUNCTIONS, **values})


# the specs that name a loss (mlp.nn's and cnn_digits.nn's inputs come from a data set, so they have
# no values to explain)
WITH_LOSS = [s for s in sorted((ROOT / "specs").glob("*.nn"))
             if s.name not in ("mlp.nn", "cnn_digits.nn") and re.search(r"^(grad|minimize) ", s.read_text(), re.M)]


@pytest.mark.parametrize("spec", WITH_LOSS, ids=[s.stem for s in WITH_LOSS])
def test_every_node_of_every_spec_sums_to_autodiff_and_each_formula_to_its_value(spec):
    model = graphdsl.load(spec, engine="numpy")
    values = {name: np.asarray(v) for name, v in model.forward().items()}
    for name in (n for n, kind in model.spec.kinds.items() if kind != "const"):
        for result in chain_rules(model, name):
            assert result.agrees, (name, result.total, result.autodiff)
            for term in (t for p in result.paths for t in p.terms if t.formula):
                close(evaluated(term.formula, values), term.value, 1e-10)


def test_skip_connection_formulas_hold_the_other_inputs_fixed():
    model = graphdsl.compile(SKIPS, engine="numpy")
    values = dict(model.forward())
    terms = {t.label: t for p in chain_rule(model, "a").paths for t in p.terms}
    for term in terms.values():
        close(evaluated(term.formula or str(term.value), values), term.value, 1e-12)
    assert terms["dc/db"].formula in ("a + exp(b)", "exp(b) + a")   # c = a b + exp(b), by hand


# -- vectors and matrices, entry by entry: seed 000's 2-2-1 network -------------------------------

S4 = ROOT / "specs" / "seed000_s4_backprop.nn"


def s4_torch():
    """The network in torch from the spec's values, and dL/dW_h by autograd."""
    model = graphdsl.load(S4, engine="numpy")
    v = {name: torch.tensor(np.asarray(x).tolist(), dtype=torch.float64, requires_grad=True)
         for name, x in model.forward().items() if name in model.spec.names_of("input", "target", "param")}
    h = torch.sigmoid(v["W_h"] @ v["x"] + v["b_h"])
    y_hat = torch.sigmoid(v["W_o"] @ h + v["b_o"])
    L = -(v["y"] * torch.log(y_hat) + (1 - v["y"]) * torch.log(1 - y_hat))
    dW_h, = torch.autograd.grad(L, [v["W_h"]])
    return model, {k: t.detach().numpy() for k, t in v.items()}, h.detach().numpy(), y_hat.item(), dW_h.numpy()


@pytest.mark.parametrize("i, j", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_each_entry_of_dW_h_sums_its_paths_to_autodiff(i, j):
    model, v, h, y_hat, dW_h = s4_torch()
    result = chain_rule(model, f"W_h[{i}, {j}]")
    # by hand: W_h[i, j] reaches L through z_h[i] and h[i] alone
    assert [p.names for p in result.paths] == [(f"W_h[{i}, {j}]", f"z_h[{i}]", f"h[{i}]", "z_o", "y_hat", "L")]
    y = float(v["y"])
    hand = {"dL/dy_hat": -y / y_hat + (1 - y) / (1 - y_hat), "dy_hat/dz_o": y_hat * (1 - y_hat),
            f"dz_o/dh[{i}]": v["W_o"][i], f"dh[{i}]/dz_h[{i}]": h[i] * (1 - h[i]),
            f"dz_h[{i}]/dW_h[{i}, {j}]": v["x"][j]}
    assert {t.label: t.value for t in result.paths[0].terms} == pytest.approx(hand, rel=1e-12, abs=1e-15)
    close(result.total, dW_h[i, j])
    close(result.autodiff, dW_h[i, j])
    assert result.agrees


def test_whole_matrix_is_a_table_of_entries_and_json_has_each_one():
    model, v, h, y_hat, dW_h = s4_torch()
    result = invoke("explain", S4, "W_h")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("W_h[")]
    assert [r[0] + " " + r[1] for r in rows] == ["W_h[0, 0]", "W_h[0, 1]", "W_h[1, 0]", "W_h[1, 1]"]
    for row, want in zip(rows, dW_h.ravel()):
        assert row[2] == "1" and row[-1] == "agrees"
        close(float(row[3]), want, 1e-6)
    found = json.loads(invoke("explain", S4, "W_h", "--format", "json").output)
    assert [e["node"] for e in found["entries"]] == ["W_h[0, 0]", "W_h[0, 1]", "W_h[1, 0]", "W_h[1, 1]"]
    for entry, want in zip(found["entries"], dW_h.ravel()):
        close(entry["sum"], want)
        close(sum(p["product"] for p in entry["paths"]), want)
        assert entry["agrees"] and entry["listed"] and entry["path_count"] == 1


def test_a_row_picks_its_entries():
    assert [r.node for r in chain_rules(graphdsl.load(S4, engine="numpy"), "W_h[1]")] == ["W_h[1, 0]", "W_h[1, 1]"]


def test_vector_on_a_path_is_followed_entry_by_entry(tmp_path):
    spec = tmp_path / "vector.nn"
    spec.write_text("input x = 1\nh = [x, 2 x]\nL = sum(h)\ngrad L wrt x\n")
    result = chain_rule(graphdsl.load(spec, engine="numpy"), "x")
    assert [p.names for p in result.paths] == [("x", "h[0]", "L"), ("x", "h[1]", "L")]
    assert [[t.value for t in p.terms] for p in result.paths] == [[1.0, 1.0], [1.0, 2.0]]   # by hand
    assert result.total == result.autodiff == 3.0


def test_language_doc_entry_examples_are_what_graphdsl_prints(tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "language.md").read_text()
    section = doc[doc.index("### Vectors and matrices, entry by entry"):]
    spec, one, table = re.search(r"```nn\n(.*?)```.*?```text\n(.*?)```.*?```text\n(.*?)```", section, re.S).groups()
    (tmp_path / "net.nn").write_text(spec)
    monkeypatch.chdir(tmp_path)
    assert invoke("explain", "net.nn", "W[0, 1]").output == one
    assert invoke("explain", "net.nn", "W").output == table


@pytest.mark.parametrize("node, message", [
    ("W_h[2, 0]", "index 2 is out of range for axis 0 of `W_h`, which has 2 entries"),
    ("W_h[0, 0, 0]", "`W_h` is [2, 2], so it takes up to 2 whole-number indices"),
    ("W_h[i]", "`W_h` is [2, 2], so it takes up to 2 whole-number indices"),
    ("W_h[0", "`W_h[0` is not a name or an entry of one"),
])
def test_a_bad_entry_is_a_usage_error_with_a_hint_from_the_docs(node, message):
    result = invoke("explain", S4, node)
    assert result.exit_code == 2 and message in result.output, result.output
    hint = result.output.partition("hint:")[2]
    assert "Traceback" not in result.output and "specs/" not in hint


def test_the_no_loss_hint_points_at_the_docs(tmp_path):
    spec = tmp_path / "noloss.nn"
    spec.write_text("input x = 1\nL = 2 x\n")
    result = invoke("explain", spec, "x")
    assert result.exit_code == 2
    assert 'hint: pass one with --loss, or add `grad L wrt ...` to the spec; the section "Explaining a gradient ' \
        'path by path" of docs/language.md has an example' in result.output


# -- depth and breadth: bounded, never recursive ------------------------------------------------

def chain(n):
    return "\n".join(["input x = 0.5", "a0 = sin(x)", *(f"a{i} = sin(a{i - 1})" for i in range(1, n)),
                      f"L = 2 a{n - 1}", "grad L wrt x"])


def ladder(n):
    """Rung i: a_i and b_i each read a_(i-1) and b_(i-1), so 2^i paths reach each, 2^n reach L."""
    lines = ["input x = 0.5", "a0 = sin(x)", "b0 = cos(x)"]
    for i in range(1, n):
        lines += [f"a{i} = 0.5 * a{i - 1} + 0.5 * b{i - 1}", f"b{i} = a{i - 1} * b{i - 1}"]
    return "\n".join(lines + [f"L = a{n - 1} + b{n - 1}", "grad L wrt x"])


def test_a_long_chain_is_explained_without_recursion():
    import inspect
    import sys

    model = graphdsl.compile(chain(600), engine="numpy")
    model.grad()  # autodiff's own value, before the recursion limit drops
    depth = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)   # far fewer frames than the chain has names
    try:
        result = chain_rule(model, "x")
    finally:
        sys.setrecursionlimit(depth)
    assert len(result.paths) == 1 and len(result.paths[0].terms) == 601
    x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    a = torch.sin(x)
    for _ in range(599):
        a = torch.sin(a)
    close(result.total, torch.autograd.grad(2 * a, x)[0].item())


def test_a_ladder_of_many_paths_is_summed_node_by_node(tmp_path):
    spec = tmp_path / "ladder.nn"
    spec.write_text(ladder(40))
    result = chain_rule(graphdsl.load(spec, engine="numpy"), "x")
    assert result.count == 2 ** 40 and not result.listed and result.paths == ()
    x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    a, b = torch.sin(x), torch.cos(x)
    for _ in range(39):
        a, b = 0.5 * a + 0.5 * b, a * b
    close(result.total, torch.autograd.grad(a + b, x)[0].item())
    printed = invoke("explain", spec, "x")
    assert printed.exit_code == 0, printed.output
    assert "1,099,511,627,776 paths of named nodes lead from x to L, more than\nexplain lists" in printed.output
    assert "(agrees)" in printed.output


def test_a_small_ladder_lists_every_path():
    result = chain_rule(graphdsl.compile(ladder(5), engine="numpy"), "x")
    assert len(result.paths) == result.count == 2 ** 5 and result.agrees


def test_more_entries_than_explain_follows_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(graphdsl.tools.explain, "MAX_ENTRIES", 20)
    spec = tmp_path / "chain.nn"
    spec.write_text(chain(30))
    result = invoke("explain", spec, "x")
    assert result.exit_code == 2
    assert "error: explain follows at most 20 entries (one evaluation each), and more lie between `x` and `L`" \
        in result.output and "Traceback" not in result.output
