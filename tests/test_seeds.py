"""The worked homework examples in specs/seed*.nn, each checked against an independent computation.

Every expected value comes from PyTorch (float64, its own autograd) or from a closed form
evaluated here, never from the documents' printed numbers, which contain slips (each spec's
comments list them). docs/examples.md maps every example to its spec.
"""
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
F = torch.nn.functional


def load(name):
    return graphdsl.load(str(SPECS / name), engine="numpy")


def T(value, grad=False):
    return torch.tensor(value, dtype=torch.float64, requires_grad=grad)


def close(actual, expected, tol=1e-10):
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=tol, atol=tol)


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


# -- `graphdsl run`, read back -----------------------------------------------------

ROW = re.compile(r"^  (\S+(?: after)?) (scalar|\[[\d, ]*\])\s+(.*)$")
NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|-?inf|nan")


def run_cli(name, *args):
    """`graphdsl run SPEC --precision 12`: each printed row as (block title, label) -> flat numbers."""
    result = CliRunner().invoke(main, ["run", str(SPECS / name), "--precision", "12", *args])
    assert result.exit_code == 0, result.output
    rows, title, last = {}, None, None
    for line in result.output.splitlines():
        match = ROW.match(line)
        if match:
            last = (title, match.group(1))
            rows[last] = [match.group(3)]
        elif line.startswith("   ") and last:
            rows[last].append(line)
        elif line.strip():
            title, last = line.strip(), None
    return {key: np.array([float(n) for n in NUMBER.findall(" ".join(parts))]) for key, parts in rows.items()}


def printed(rows, label, title=None):
    found = [v for (t, lab), v in rows.items() if lab == label and (title is None or t.startswith(title))]
    assert len(found) == 1, f"{label} printed {len(found)} times"
    return found[0]


def summary_cli(name):
    """`graphdsl summary SPEC --format json`: {node: (params, multiplications)}, and the two totals."""
    result = CliRunner().invoke(main, ["summary", str(SPECS / name), "--format", "json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    rows = {row["name"]: (row["params"], row["multiplications"]) for row in found["rows"]}
    return rows, found["total_params"], found["multiplications"]


def torch_counts(module, *input_shape):
    """(parameters, multiplications, output shape) of a torch module, on the meta device (no data):
    multiplications are half the FLOPs torch's counter reports (one multiply and one add each)."""
    from torch.utils.flop_counter import FlopCounterMode

    module = module.to("meta")
    with FlopCounterMode(display=False) as counter:
        out = module(torch.empty(*input_shape, device="meta"))
    return sum(p.numel() for p in module.parameters()), counter.get_total_flops() // 2, tuple(out.shape)


# -- seed 000 (Sharif ML HW3) -------------------------------------------------------

def xor_function(A, B, C, D):
    return bool((A or not B) != ((not C) or (not D)))


def test_seed000_s1_threshold_network_over_the_whole_truth_table():
    model = load("seed000_s1_xor_threshold.nn")
    for bits in itertools.product([0, 1], repeat=4):
        A, B, C, D = bits
        out = model.forward(x=list(bits))
        products = [(not A) and B and (not C), (not A) and B and (not D), A and C and D, (not B) and C and D]
        assert list(out["h"]) == [float(bool(p)) for p in products], bits
        assert out["y"] == float(xor_function(*bits)), bits
        assert np.all(np.abs(out["z_h"]) >= 0.5) and abs(out["z_y"]) >= 0.5  # never on a threshold
        # the document's sum-of-products expansion is the same boolean function
        assert any(products) == xor_function(*bits)


def test_seed000_s1_cli_prints_the_default_input():
    rows = run_cli("seed000_s1_xor_threshold.nn")
    close(printed(rows, "y"), [float(xor_function(0, 1, 0, 0))])


def seed000_f1(x):
    return torch.stack([torch.sin(math.pi * x[1]) / math.pi, x[1] ** 2 * torch.exp(x[0] - 1), x[0] * x[1]])


def seed000_f2(u):
    return torch.stack([u.sum(), (u * u).sum()])


def test_seed000_s2_jacobians_match_torch():
    model = load("seed000_s2_jacobian.nn")
    x = T([1.0, 2.0])
    J1 = torch.autograd.functional.jacobian(seed000_f1, x)
    u = seed000_f1(x)
    J2 = torch.autograd.functional.jacobian(seed000_f2, u)
    J = torch.autograd.functional.jacobian(lambda x: seed000_f2(seed000_f1(x)), x)
    out = model.forward()
    close(out["f1"], u)
    close(out["f"], seed000_f2(u))
    close(model.jacobian("f1", "x"), J1)
    close(model.jacobian("f", "f1"), J2)
    close(model.jacobian("f", "x"), J)
    # the document's route: v_k = J_f1 e_k, then J_f2 v_k is column k of J_f
    for k in range(2):
        v = model.jacobian("f1", "x")[:, k]
        close(v, J1[:, k])
        close(model.jacobian("f", "f1") @ v, J[:, k])
    # closed forms of the document's Jacobians at (1, 2)
    x1, x2 = 1.0, 2.0
    close(model.jacobian("f1", "x"), [[0, math.cos(math.pi * x2)],
                                      [x2 ** 2 * math.exp(x1 - 1), 2 * x2 * math.exp(x1 - 1)],
                                      [x2, x1]])
    rows = run_cli("seed000_s2_jacobian.nn")
    close(printed(rows, "df/dx"), J.flatten())
    close(printed(rows, "df1/dx"), J1.flatten())


def test_seed000_s3_conv_gradients_match_torch_and_the_formulas():
    model = load("seed000_s3_conv1d.nn")
    x, t = T([0.5, -1, 2, 0.25, -0.75, 1.5], True), T([1, -0.5, 0, 0.25])
    k, b = T([0.2, -0.4, 0.1], True), T(0.3, True)
    z = F.conv1d(x.view(1, 1, -1), k.view(1, 1, -1)).view(-1) + b
    z.retain_grad()
    L = 0.5 * ((torch.tanh(z) - t) ** 2).sum()
    L.backward()
    out, g = model.forward(), model.grad()
    close(out["z"], z)
    close(out["L"], L)
    for name, tensor in [("k", k), ("b", b), ("z", z), ("x", x)]:
        close(g[name], tensor.grad)
    alpha, xs = g["z"], out["x"]
    m, d = len(alpha), len(k)
    close(g["k"], [sum(alpha[i] * xs[i + j] for i in range(m)) for j in range(d)])  # dL/dk_j = sum_i alpha_i x_(i+j)
    close(g["b"], alpha.sum())                                                       # dL/db = sum_i alpha_i
    rows = run_cli("seed000_s3_conv1d.nn")
    close(printed(rows, "dL/dk"), k.grad, 1e-9)
    close(printed(rows, "dL/db"), [b.grad.item()], 1e-9)


def seed000_s4_torch():
    x, y = T([0.0, 1.0]), T(1.0)
    P = {"W_h": T([[2.5, 1], [-1.5, -3]], True), "b_h": T([1.5, 2], True),
         "W_o": T([1, 0.5], True), "b_o": T(-1.0, True)}
    z_h = P["W_h"] @ x + P["b_h"]
    h = torch.sigmoid(z_h)
    z_o = P["W_o"] @ h + P["b_o"]
    y_hat = torch.sigmoid(z_o)
    L = F.binary_cross_entropy(y_hat, y)
    nodes = {"z_h": z_h, "h": h, "z_o": z_o, "y_hat": y_hat, "L": L}
    for n in ("z_h", "z_o", "y_hat"):
        nodes[n].retain_grad()
    L.backward()
    return P, nodes


def test_seed000_s4_backprop_values_gradients_and_sgd_step():
    model = load("seed000_s4_backprop.nn")
    P, nodes = seed000_s4_torch()
    out, g = model.forward(), model.grad()
    for n, tensor in nodes.items():
        close(out[n], tensor)
    for n in ("z_h", "z_o", "y_hat"):
        close(g[n], nodes[n].grad)
    for n, tensor in P.items():
        close(g[n], tensor.grad)
    # closed forms the document uses: delta_o = y_hat - y, delta_h = W_o delta_o sigma'(z_h)
    y_hat, h = out["y_hat"], out["h"]
    close(g["z_o"], y_hat - 1.0)
    close(g["z_h"], (y_hat - 1.0) * out["W_o"] * h * (1 - h))
    close(out["L"], -math.log(y_hat))                       # natural log
    # one SGD step, learning rate 0.1
    torch.optim.SGD(list(P.values()), lr=0.1).step()
    for n, tensor in P.items():
        close(model.params[n] - 0.1 * g[n], tensor)
    # the spec's own step: the values and gradients print at the given weights, then the update
    rows = run_cli("seed000_s4_backprop.nn")
    close(printed(rows, "L", "values"), [nodes["L"].item()])
    close(printed(rows, "dL/dW_h", "gradients of L"), P["W_h"].grad.flatten())
    close(printed(rows, "dL/db_o", "gradients of L"), [P["b_o"].grad.item()])
    for n, tensor in P.items():
        close(printed(rows, f"d{'L'}/d{n}", "step 1"), tensor.grad.flatten())
        close(printed(rows, f"{n} after", "step 1"), tensor.detach().flatten())
    model.train()
    for n, tensor in P.items():
        close(model.params[n], tensor)


def test_seed000_s5_conv_layer_parameters_and_multiplications():
    rows, params, mults = summary_cli("seed000_s5_conv_params.nn")
    weights, _, _ = torch_counts(torch.nn.Conv2d(10, 96, 10, stride=3, bias=False), 1, 10, 205, 205)
    with_bias, torch_mults, out_shape = torch_counts(torch.nn.Conv2d(10, 96, 10, stride=3), 1, 10, 205, 205)
    assert out_shape == (1, 96, 66, 66)                       # the document's 66 x 66 x 96 output
    assert rows["k"] == (weights, 0) and weights == 10 * 10 * 10 * 96
    assert rows["b"] == (96, 0)
    assert params == with_bias == 10 * 10 * 10 * 96 + 96      # the document leaves out the 96 biases
    assert rows["z"] == (0, torch_mults)
    assert mults == torch_mults == 66 * 66 * 96 * 10 * 10 * 10
    # (1): the kernel sizes giving 66 outputs with stride 3: 10 fits exactly, 8 and 9 leave rows unread
    assert [h for h in range(1, 206) if (205 - h) // 3 + 1 == 66] == [8, 9, 10]
    assert [h for h in range(1, 206) if (205 - h) / 3 + 1 == 66] == [10]


# -- seed 001 (Week 4 Theory HW) ---------------------------------------------------

def torch_params(model, grad=True):
    return {n: T(np.asarray(v).tolist(), grad) for n, v in model.params.items()}


def torch_inputs(model, names):
    out = model.forward()
    return {n: T(np.asarray(out[n]).tolist()) for n in names}


def test_seed001_task1_figure1_gradients_match_torch_and_the_chain_rules():
    model = load("seed001_task1_fig1.nn")
    p = torch_params(model)
    d = torch_inputs(model, ["x1", "y6", "y7"])
    x2 = T(model.forward()["x2"].tolist(), True)
    n1 = torch.sigmoid(p["b1"] + d["x1"] @ p["v11"])
    n2 = torch.sigmoid(p["b2"] + x2 @ p["v22"])
    n3 = torch.sigmoid(p["b3"] + p["w13"] * n1)
    n4 = torch.sigmoid(p["b4"] + p["w14"] * n1 + p["w24"] * n2)
    n5 = torch.sigmoid(p["b5"] + p["w25"] * n2)
    n6 = torch.sigmoid(p["b6"] + p["w36"] * n3 + p["w46"] * n4)
    n7 = torch.sigmoid(p["b7"] + p["w57"] * n5)
    E = ((n6 - d["y6"]) ** 2).sum() + ((n7 - d["y7"]) ** 2).sum()
    n4.retain_grad()
    E.backward()
    out, g = model.forward(), model.grad()
    for name, tensor in [("n1", n1), ("n4", n4), ("n6", n6), ("n7", n7), ("E", E)]:
        close(out[name], tensor)
    close(g["n4"], n4.grad)
    close(g["w25"], p["w25"].grad)
    close(g["v11"], p["v11"].grad)
    close(g["x2"], x2.grad)
    # the document's chain rules, per data point, summed over the data
    o = {k: np.asarray(v) for k, v in out.items()}
    dE6, dE7 = 2 * (o["n6"] - o["y6"]), 2 * (o["n7"] - o["y7"])
    s = lambda n: n * (1 - n)  # noqa: E731  g'(.) for g = sigmoid, from its output
    close(g["n4"], dE6 * s(o["n6"]) * o["w46"])                                       # item 1
    close(g["w25"], np.sum(dE7 * s(o["n7"]) * o["w57"] * s(o["n5"]) * o["n2"]))       # item 2
    dn1 = dE6 * s(o["n6"]) * (o["w36"] * s(o["n3"]) * o["w13"] + o["w46"] * s(o["n4"]) * o["w14"])
    close(g["v11"], (dn1 * s(o["n1"])) @ o["x1"])                                     # item 3
    dn2 = dE6 * s(o["n6"]) * o["w46"] * s(o["n4"]) * o["w24"] + dE7 * s(o["n7"]) * o["w57"] * s(o["n5"]) * o["w25"]
    close(g["x2"], np.outer(dn2 * s(o["n2"]), o["v22"]))                              # item 4


def test_seed001_task1_figure2_gradients_match_torch_and_the_chain_rules():
    model = load("seed001_task1_fig2.nn")
    p = torch_params(model)
    d = torch_inputs(model, ["x1", "x2", "y6", "y7", "y8"])
    n1 = torch.sigmoid(p["b1"] + p["v11"] @ d["x1"])
    n2 = torch.sigmoid(p["b2"] + p["v22"] @ d["x2"])
    n3 = torch.sigmoid(p["b3"] + p["w13"] * n1)
    n4 = torch.sigmoid(p["b4"] + p["w24"] * n2)
    n5 = torch.sigmoid(p["b5"] + p["w15"] * n1)
    n6 = torch.sigmoid(p["b6"] + p["w36"] * n3 + p["w46"] * n4)
    n7 = torch.sigmoid(p["b7"] + p["w57"] * n5)
    n8 = torch.sigmoid(p["b8"] + p["w38"] * n3 + p["w48"] * n4)
    E = (n6 - d["y6"]) ** 2 + (n7 - d["y7"]) ** 2 + (n8 - d["y8"]) ** 2
    n1.retain_grad()
    E.backward()
    out, g = model.forward(), model.grad()
    close(out["E"], E)
    close(out["n8"], n8)
    close(g["v22"], p["v22"].grad)
    close(g["w24"], p["w24"].grad)
    close(g["n1"], n1.grad)
    o = {k: np.asarray(v) for k, v in out.items()}
    s = lambda n: n * (1 - n)  # noqa: E731
    e6, e7, e8 = (2 * (o[f"n{k}"] - o[f"y{k}"]) * s(o[f"n{k}"]) for k in (6, 7, 8))   # dE/dn_k times g'
    dn4 = e6 * o["w46"] + e8 * o["w48"]
    close(g["v22"], dn4 * s(o["n4"]) * o["w24"] * s(o["n2"]) * o["x2"])              # item 1
    close(g["w24"], dn4 * s(o["n4"]) * o["n2"])                                       # item 2
    close(g["n1"], (e6 * o["w36"] + e8 * o["w38"]) * s(o["n3"]) * o["w13"]
          + e7 * o["w57"] * s(o["n5"]) * o["w15"])                                    # item 3


def test_seed001_task2_gradients_match_torch_and_explain_agrees():
    model = load("seed001_task2_paths.nn")
    p = torch_params(model)
    d = torch_inputs(model, ["x1", "x2", "y6", "y7"])
    n1 = torch.sigmoid(p["b1"] + p["v11"] @ d["x1"])
    n2 = torch.sigmoid(p["b2"] + p["v22"] @ d["x2"])
    n3 = torch.sigmoid(p["b3"] + p["w13"] * n1)
    n4 = torch.sigmoid(p["b4"] + p["w14"] * n1 + p["w24"] * n2)
    n5 = torch.sigmoid(p["b5"] + p["w25"] * n2)
    n6 = torch.sigmoid(p["b6"] + p["w36"] * n3 + p["w46"] * n4)
    n7 = torch.sigmoid(p["b7"] + p["w57"] * n5)
    E = (n6 - d["y6"]) ** 2 + (n7 - d["y7"]) ** 2
    units = {"n1": n1, "n2": n2, "n4": n4}
    for t in units.values():
        t.retain_grad()
    E.backward()
    out, g = model.forward(), model.grad()
    close(out["E"], E)
    close(g["w25"], p["w25"].grad)
    for name, t in units.items():
        close(g[name], t.grad)
    for name in ("w25", "n1", "n2", "n4"):    # every gradient the spec asks for, explained path by path
        result = CliRunner().invoke(main, ["explain", str(SPECS / "seed001_task2_paths.nn"), name])
        assert result.exit_code == 0 and "(agrees)" in result.output, result.output


@pytest.mark.parametrize("layer, size", [(1, 64), (2, 6), (3, 1)])
def test_seed001_task3_conv_parameter_counts(layer, size):
    rows, _, _ = summary_cli("seed001_task3_conv_params.nn")
    params, torch_mults, out_shape = torch_counts(torch.nn.Conv2d(2, 96, size), 1, 2, 64, 64)
    assert rows[f"k{layer}"][0] + rows[f"b{layer}"][0] == params == size * size * 96 * 2 + 96
    rows_out = 64 - size + 1
    assert out_shape == (1, 96, rows_out, rows_out)
    assert rows[f"z{layer}"] == (0, torch_mults)
    assert torch_mults == 96 * rows_out * rows_out * 2 * size * size


def test_seed001_task3_totals():
    _, params, mults = summary_cli("seed001_task3_conv_params.nn")
    counts = [torch_counts(torch.nn.Conv2d(2, 96, size), 1, 2, 64, 64) for size in (64, 6, 1)]
    assert params == sum(c[0] for c in counts)
    assert mults == sum(c[1] for c in counts)


# -- seed 002 (CS577 Assignment 2) ---------------------------------------------------

W002 = [[0.01, 0.02, 0.03], [0.03, 0.01, 0.02], [0.02, 0.03, 0.01]]   # rows [w_k0, w_k1, w_k2]
V002 = [0.01, 0.02, 0.03, 0.04]                                        # [v0, v1, v2, v3]


def seed002_torch(x, y=None):
    """The 2-3-1 network in matrix form for one example; returns the pieces, with gradients of L if y is given."""
    W, V = T(W002, True), T(V002, True)
    s = W @ torch.cat([T([1.0]), T(x)])
    a = torch.sigmoid(s)
    y_hat = V @ torch.cat([T([1.0]), a])
    out = {"W": W, "V": V, "s": s, "a": a, "y_hat": y_hat}
    if y is not None:
        for n in ("a", "y_hat"):
            out[n].retain_grad()
        out["L"] = (T(y) - y_hat) ** 2
        out["L"].backward()
    return out


def test_seed002_1b_forward_pass_for_the_three_examples():
    model = load("seed002_1b_forward.nn")
    out = model.forward()
    examples = [[1.0, 2.0], [1.0, 3.0], [2.0, 2.0]]
    for e, x in enumerate(examples):
        ref = seed002_torch(x)
        W = np.array(W002)
        products = {"a": W[0, 1] * x[0], "b": W[0, 2] * x[1], "c": W[0, 0], "d": W[1, 1] * x[0], "e": W[1, 2] * x[1],
                    "f": W[1, 0], "g": W[2, 1] * x[0], "h": W[2, 2] * x[1], "i": W[2, 0]}
        for n, v in products.items():
            close(np.broadcast_to(out[n], (3,))[e], v)
        close([out["j"][e], out["k"][e], out["l"][e]], ref["s"])
        close([out["m"][e], out["n"][e], out["o"][e]], ref["a"])
        close([out["p"][e], out["q"][e], out["r"][e]], T(V002[1:]) * ref["a"])
        close(out["y_hat"][e], ref["y_hat"])


def test_seed002_1c_1d_gradients_match_torch_and_the_row_formula():
    model = load("seed002_1c_backprop.nn")
    ref = seed002_torch([1.0, 2.0], 8.0)
    out, g, gy = model.forward(), model.grad("L"), model.grad("y_hat")
    close(out["y_hat"], ref["y_hat"])
    close(out["L"], ref["L"])
    close([out["m"], out["n"], out["o"]], ref["a"])
    close(g["y_hat"], ref["y_hat"].grad)
    close([g[f"v{k}"] for k in range(4)], ref["V"].grad)
    close([[g[f"w{j}{k}"] for k in range(3)] for j in (1, 2, 3)], ref["W"].grad)
    # the local derivatives dy_hat/dv, dy_hat/dw, by torch
    W, V = T(W002, True), T(V002, True)
    y_hat = V @ torch.cat([T([1.0]), torch.sigmoid(W @ T([1.0, 1.0, 2.0]))])
    dV, dW = torch.autograd.grad(y_hat, [V, W])
    close([gy[f"v{k}"] for k in range(4)], dV)
    close([[gy[f"w{j}{k}"] for k in range(3)] for j in (1, 2, 3)], dW)
    # 1d, row by row: Delta w_j = 2 (y_hat - y) v_j z_j (1 - z_j) [1, x],  Delta v = 2 (y_hat - y) [1, z]
    err = 2 * (out["y_hat"] - 8.0)
    z = np.array([out["m"], out["n"], out["o"]])
    for j in range(3):
        close([g[f"w{j + 1}{k}"] for k in range(3)], err * V002[j + 1] * z[j] * (1 - z[j]) * np.array([1, 1, 2]))
    close([g[f"v{k}"] for k in range(4)], err * np.array([1, *z]))
    rows = run_cli("seed002_1c_backprop.nn")
    close(printed(rows, "dL/dv1"), [ref["V"].grad[1].item()])
    close(printed(rows, "dy_hat/dw32"), [dW[2, 2].item()])


def test_seed002_2a_gradient():
    model = load("seed002_2a_gradient.nn")
    x, y = T(1.0, True), T(2.0, True)
    f = (2 * x + 3 * y) ** 2
    f.backward()
    g = model.grad()
    close(model.forward()["f"], f)
    close([g["x"], g["y"]], [x.grad, y.grad])
    close([g["x"], g["y"]], [4 * (2 * 1 + 3 * 2), 6 * (2 * 1 + 3 * 2)])   # the document's closed form


def test_seed002_2b_jacobian():
    model = load("seed002_2b_jacobian.nn")
    F_ = lambda p: torch.stack([p[0] ** 2 + 2 * p[1], 3 * p[0] + 4 * p[1] ** 2])  # noqa: E731
    J = torch.autograd.functional.jacobian(F_, T([1.0, 2.0]))
    close(model.jacobian("F", "p"), J)
    close(model.jacobian("F", "p"), [[2 * 1, 2], [3, 8 * 2]])            # DF(x, y) = [[2x, 2], [3, 8y]]


def test_seed002_2c_chain_rule():
    model = load("seed002_2c_chain_rule.nn")
    F_ = lambda u: torch.stack([u[0] ** 2 + 2 * u[1], 3 * u[0] + 4 * u[1] ** 2])  # noqa: E731
    G_ = lambda x: torch.stack([x, x ** 2])  # noqa: E731
    x = T(2.0)
    J = torch.autograd.functional.jacobian(lambda x: F_(G_(x)), x)
    close(model.jacobian("FG", "x"), J)
    close(model.jacobian("FG_direct", "x"), J)
    close(model.jacobian("FG", "G"), torch.autograd.functional.jacobian(F_, G_(x)))
    close(model.jacobian("G", "x"), torch.autograd.functional.jacobian(G_, x))
    xv = 2.0
    close(model.jacobian("FG", "G"), [[2 * xv, 2], [3, 8 * xv ** 2]])      # DF(G(x))
    close(model.jacobian("FG", "x"), [6 * xv, 3 + 16 * xv ** 3])           # D(F o G)(x)
    close(model.forward()["FG"], model.forward()["FG_direct"])
    rows = run_cli("seed002_2c_chain_rule.nn")
    close(printed(rows, "dFG/dx"), J)
    close(printed(rows, "dFG_direct/dx"), J)


def test_seed002_2d_matrix_form_matches_torch_and_1c():
    model = load("seed002_2d_matrix_backprop.nn")
    ref = seed002_torch([1.0, 2.0], 8.0)
    out, g = model.forward(), model.grad()
    for n in ("s", "a", "y_hat", "L"):
        close(out[n], ref[n])
    for n in ("a", "y_hat"):
        close(g[n], ref[n].grad)
    close(g["V"], ref["V"].grad)
    close(g["W"], ref["W"].grad)
    close(model.jacobian("y_hat", "V"), np.concatenate([[1.0], out["a"]]))   # dy_hat/dV = [1; a]
    close(model.jacobian("y_hat", "a"), V002[1:])                            # dy_hat/da = [v1, v2, v3]
    Ja = torch.autograd.functional.jacobian(lambda W: torch.sigmoid(W @ T([1.0, 1.0, 2.0])), T(W002))
    close(model.jacobian("a", "W"), Ja)
    a = out["a"]
    for k in range(3):   # the document's rows: da_k/dw_k = a_k (1 - a_k) [1, x]
        close(model.jacobian("a", "W")[k, k], a[k] * (1 - a[k]) * np.array([1, 1, 2]))
    # the document's claim: 2d gives the same gradients as 1c
    g1c = load("seed002_1c_backprop.nn").grad()
    close(g["W"], [[g1c[f"w{j}{k}"] for k in range(3)] for j in (1, 2, 3)])
    close(g["V"], [g1c[f"v{k}"] for k in range(4)])


def test_seed002_3_sigmoid_output_gradient_matches_torch_and_the_boxed_formula():
    model = load("seed002_3_sigmoid_output.nn")
    X, y = T([[1, 1, 2], [1, 1, 3], [1, 2, 2]]), T([1, 0, 1])
    W, v0, v = T(W002, True), T(0.01, True), T([0.02, 0.03, 0.04], True)
    Z = torch.sigmoid(X @ W.T)
    y_hat = torch.sigmoid(Z @ v + v0)
    y_hat.retain_grad()
    E = 0.5 * ((y_hat - y) ** 2).sum()
    E.backward()
    out, g = model.forward(), model.grad()
    close(out["Z"], Z)
    close(out["E"], E)
    close(g["v"], v.grad)
    close(g["v0"], v0.grad)
    close(g["y_hat"], y_hat.grad)
    yh, yv = out["y_hat"], out["y"]
    w = (yh - yv) * yh * (1 - yh)
    close(g["v"], w @ out["Z"])         # sum_i (y_hat_i - y_i) y_hat_i (1 - y_hat_i) z_i
    close(g["v0"], w.sum())             # the bias entry z_0 = 1


# -- seed 003 (Practical 1) ----------------------------------------------------------

def test_seed003_ex1_deltas_match_torch_and_the_delta_rule():
    model = load("seed003_ex1_deltas.nn")
    p = torch_params(model)
    d = torch_inputs(model, ["x_in", "y_gt"])
    s1 = p["W1"] @ d["x_in"]
    s2 = p["W2"] @ torch.relu(s1)
    s_out = p["W_out"] @ torch.sigmoid(s2)
    L = 0.5 * (torch.tanh(s_out) - d["y_gt"]) ** 2
    for t in (s1, s2, s_out):
        t.retain_grad()
    L.backward()
    out, g = model.forward(), model.grad()
    close(out["L"], L)
    for n, t in [("s1", s1), ("s2", s2), ("s_out", s_out)]:
        close(out[n], t)
        close(g[n], t.grad)
    for n in ("W1", "W2", "W_out"):
        close(g[n], p[n].grad)
    assert np.all(out["s1"] != 0)   # away from relu's kink
    # 1.2: Delta W_k = delta_k z_(k-1)', delta_k = (W_(k+1)' delta_(k+1)) * f_k'(s_k)
    y_out, z2, z1 = out["y_out"], out["z2"], out["z1"]
    delta_out = (y_out - out["y_gt"]) * (1 - y_out ** 2)
    delta2 = out["W_out"] * delta_out * z2 * (1 - z2)
    delta1 = (out["W2"].T @ delta2) * (out["s1"] > 0)
    close(g["s_out"], delta_out)
    close(g["s2"], delta2)
    close(g["s1"], delta1)
    close(g["W_out"], delta_out * z2)
    close(g["W2"], np.outer(delta2, z1))
    close(g["W1"], np.outer(delta1, out["x_in"]))


X003 = [[0.75, 0.2, -0.75, 0.2], [0.8, 0.05, 0.8, -0.05]]
Y003 = [1, 1, -1, -1]
W003 = [[0.6, 0.7, 0.0], [0.01, 0.43, 0.88]]


@pytest.mark.parametrize("w3", [0.09, 0.9], ids=["w3=0.09 (the document's numbers)", "w3=0.9 (as printed)"])
def test_seed003_ex2_iteration1_matches_torch(w3):
    model = load("seed003_ex2_iteration1.nn")
    w_value = [0.02, 0.03, w3]
    x, y = T(X003), T(Y003)
    W, w = T(W003, True), T(w_value, True)
    s1 = W.T @ x
    s_out = w @ torch.relu(s1)
    y_out = torch.tanh(s_out)
    L_each = 0.5 * (y_out - y) ** 2
    for t in (s1, s_out):
        t.retain_grad()
    L_each.sum().backward()
    out, g = model.forward(w=w_value), model.grad(w=w_value)
    for n, t in [("s1", s1), ("s_out", s_out), ("y_out", y_out), ("L_each", L_each)]:
        close(out[n], t)
    close(g["s_out"], s_out.grad)
    close(g["s1"], s1.grad)
    close(g["w"], w.grad)
    close(g["W"], W.grad)
    assert np.all(out["s1"] != 0)
    # the document's steps (6)-(10)
    delta_out = (out["y_out"] - np.array(Y003)) * (1 - out["y_out"] ** 2)
    delta_1 = np.outer(w_value, delta_out) * (out["s1"] > 0)
    close(g["s_out"], delta_out)
    close(g["s1"], delta_1)
    close(g["w"], out["z1"] @ delta_out)
    close(g["W"], np.array(X003) @ delta_1.T)
    # (11), (12): one step, with the stated alpha = 0.05 and with the 0.1 the document's W' used
    for lr in (0.05, 0.1):
        Wt, wt = W.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        Wt.grad, wt.grad = W.grad.clone(), w.grad.clone()
        torch.optim.SGD([Wt, wt], lr=lr).step()
        close(np.array(W003) - lr * g["W"], Wt)
        close(np.array(w_value) - lr * g["w"], wt)
        stepped = load("seed003_ex2_iteration1.nn")  # the spec's own step, at this lr
        stepped.params["w"] = np.array(w_value, dtype=float)
        stepped.train(lr=lr)
        close(stepped.params["W"], Wt)
        close(stepped.params["w"], wt)


def test_seed003_ex2_cli():
    rows = run_cli("seed003_ex2_iteration1.nn")
    W, w = T(W003, True), T([0.02, 0.03, 0.09], True)
    (0.5 * (torch.tanh(w @ torch.relu(W.T @ T(X003))) - T(Y003)) ** 2).sum().backward()
    close(printed(rows, "dL/dW", "gradients of L"), W.grad.flatten())
    close(printed(rows, "dL/dw", "gradients of L"), w.grad)
    with torch.no_grad():  # the update, alpha = 0.05 as stated, in the same run
        close(printed(rows, "W after", "step 1"), (W - 0.05 * W.grad).flatten())
        close(printed(rows, "w after", "step 1"), w - 0.05 * w.grad)


# -- seed 004 (Persian homework) -----------------------------------------------------

PAIRS = list(itertools.combinations(range(4), 2))   # (1,2), (1,3), (1,4), (2,3), (2,4), (3,4), from 0


def test_seed004_1_two_equal_network_on_the_document_inputs_and_a_grid():
    model = load("seed004_1_two_equal.nn")
    assert model.params["W1"].shape == (6, 4) and model.params["b1"].shape == (6,)
    assert model.params["W2"].shape == (1, 6) and model.params["b2"].shape == (1,)
    document_inputs = [[-1, -1, 2.5, 2.5], [6, 4, 2, 6], [-10, 0, 0, -10], [-1, 0, 1, 0.5]]
    grid = [list(v) for v in itertools.product([0, 1, 2, 3], repeat=4)]
    rng = np.random.default_rng(4)
    reals = [list(rng.choice([-1.5, 0.25, 2.0, 7.5, -3.0], 4)) for _ in range(50)]
    for x in document_inputs + grid + reals:
        out = model.forward(x=x)
        close(out["a1"], [float(x[i] == x[j]) for i, j in PAIRS])
        close(out["z2"], [sum(x[i] == x[j] for i, j in PAIRS)])
        at_least_two_equal = len(set(x)) < 4
        assert out["y"][0] == float(at_least_two_equal), x
        assert out["y_distinct"][0] == float(not at_least_two_equal), x
    rows = run_cli("seed004_1_two_equal.nn")
    close(printed(rows, "y"), [1.0])


def test_seed004_1_network_counts():
    rows, params, mults = summary_cli("seed004_1_two_equal.nn")
    hidden = torch_counts(torch.nn.Linear(4, 6), 4)
    out = torch_counts(torch.nn.Linear(6, 1), 6)
    assert params == hidden[0] + out[0] == 6 * 4 + 6 + 6 + 1
    assert rows["z1"][1] == hidden[1] and rows["z2"][1] == out[1]
    assert mults == hidden[1] + out[1]


def test_seed004_2a_dense_parameter_and_multiplication_counts():
    rows, params, mults = summary_cli("seed004_2a_dense_params.nn")
    fifth, last = torch_counts(torch.nn.Linear(4096, 2048), 4096), torch_counts(torch.nn.Linear(2048, 2), 2048)
    assert rows["W5"][0] + rows["b5"][0] == fifth[0] == (4096 + 1) * 2048
    assert rows["W6"][0] + rows["b6"][0] == last[0] == (2048 + 1) * 2
    assert params == fifth[0] + last[0]
    assert rows["a5"][1] == fifth[1] == 4096 * 2048             # one multiplication per weight; biases add
    assert rows["z"][1] == last[1] == 2048 * 2
    assert mults == fifth[1] + last[1]


def test_seed004_2bcd_gradients_match_torch_and_the_closed_forms():
    model = load("seed004_2bcd_two_layer_grad.nn")
    p = torch_params(model)
    d = torch_inputs(model, ["x", "y"])
    g_ = p["V"] @ d["x"]
    h = torch.relu(g_)
    z = p["W"] @ h
    h.retain_grad()
    z.retain_grad()
    J = 0.5 * ((d["y"] - z) ** 2).sum()
    J.backward()
    out, g = model.forward(), model.grad()
    close(out["J"], J)
    for n, t in [("z", z), ("h", h)]:
        close(out[n], t)
        close(g[n], t.grad)
    close(g["W"], p["W"].grad)
    close(g["V"], p["V"].grad)
    assert np.all(out["g"] != 0)
    err = out["z"] - out["y"]
    close(g["z"], err)                                                         # (z - y)'
    close(g["W"], np.outer(err, out["h"]))                                     # (z - y) h'
    close(g["V"], np.outer((err @ out["W"]) * (out["g"] > 0), out["x"]))       # ((z - y)' W)_i r'(g_i) x_j


def test_seed004_3_gradients_and_one_step_match_torch_and_the_formulas():
    model = load("seed004_3_abs_relu_backprop.nn")
    p = torch_params(model)
    d = torch_inputs(model, ["X", "y"])
    z1 = d["X"] @ p["W1"].T + p["b1"]
    a = torch.relu(z1) + torch.relu(-z1)
    z3 = a @ p["w2"] + p["b2"]
    z3.retain_grad()
    J = F.binary_cross_entropy(torch.sigmoid(z3), d["y"])
    J.backward()
    out, g = model.forward(), model.grad()
    close(out["J"], J)
    close(out["a"], np.abs(out["z1"]))
    close(g["z3"], z3.grad)
    for n in ("W1", "b1", "w2", "b2"):
        close(g[n], p[n].grad)
    assert np.all(out["z1"] != 0)
    # the document's formulas, summed over the m examples
    m = len(out["y"])
    delta1 = (out["y_hat"] - out["y"]) / m
    H = lambda v: (v > 0).astype(float)  # noqa: E731
    back = delta1[:, None] * out["w2"] * (H(out["z1"]) - H(-out["z1"]))        # per example, per hidden unit
    close(g["z3"], delta1)
    close(g["W1"], back.T @ out["X"])
    close(g["b1"], back.sum(axis=0))
    close(g["w2"], delta1 @ out["a"])
    close(g["b2"], delta1.sum())
    lr = 0.5
    torch.optim.SGD(list(p.values()), lr=lr).step()
    for n, t in p.items():
        close(model.params[n] - lr * g[n], t)
    model.train()  # the spec's own step
    for n, t in p.items():
        close(model.params[n], t)


def test_seed004_4_logsumexp_identities():
    model = load("seed004_4_logsumexp.nn")
    z, big = T([1.5, -0.3, 2.2, 0.7], True), T([1000.0, 1001.0, 1002.0])
    lse = torch.logsumexp(z, 0)
    (g_lse,) = torch.autograd.grad(lse, z)
    ce = F.cross_entropy(z.view(1, -1), torch.tensor([2]))
    (g_ce,) = torch.autograd.grad(ce, z)
    out = model.forward()
    close(out["CE"], ce)
    close(out["CE_onehot"], ce)
    close(out["lse"], lse)
    close(out["lse_minus_zt"], ce)                           # (a)
    close(out["y_hat"], torch.softmax(z, 0))
    close(model.grad("lse")["z"], g_lse)                     # (b)
    close(model.grad("lse")["z"], out["y_hat"])
    close(model.grad("CE")["z"], g_ce)
    for n in ("shift_max", "shift_neg"):                     # (c)
        close(out[n], lse)
    close(out["lse_big"], torch.logsumexp(big, 0))
    close(out["shift_big"], torch.logsumexp(big, 0))
    assert math.isfinite(out["lse_big"])
    rows = run_cli("seed004_4_logsumexp.nn")
    close(printed(rows, "dlse/dz"), g_lse)


# -- every seed spec --------------------------------------------------------------------

SEED_SPECS = sorted(p.name for p in SPECS.glob("seed*.nn"))


@pytest.mark.parametrize("name", [n for n in SEED_SPECS if n != "seed004_2a_dense_params.nn"])
def test_seed_spec_passes_graphdsl_check(name):
    """Shapes check, and every gradient agrees with central differences (no spec sits on a kink)."""
    result = CliRunner().invoke(main, ["check", str(SPECS / name)])
    assert result.exit_code == 0, result.output


def test_every_seed_spec_is_in_docs_examples():
    listed = (ROOT / "docs" / "examples.md").read_text()
    assert SEED_SPECS and all(f"specs/{n}" in listed for n in SEED_SPECS)
