"""Minibatch graphs (graphdsl/transforms/batch.py): B examples at once must give, example by example,
exactly what the one-example graph gives.

For each spec, the batched graph runs on the NumPy interpreter with B examples stacked on a
leading axis; every named value of example b must equal `model.forward` on example b alone
(the reference interpreter, engine="numpy"). Gradients of the summed loss must equal the sum of
the per-example gradients. Ops that have no minibatch rule must be refused with a SpecError that
points at the spec and suggests `batch=1`.
"""
import textwrap

import numpy as np
import pytest

import graphdsl
from graphdsl import SpecError
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.batch import batched
from graphdsl.transforms.interpret import evaluate
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.ops.batching import unbatchable
from graphdsl.ir.sym import Sym
from graphdsl.training.trainer import Trainer

RTOL = ATOL = 1e-12
B = 4


def spec(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def examples(model, fixed: dict, seed: int) -> dict:
    """B examples for every input and target: the fixed ones, or uniform draws in [0.2, 1.5)."""
    g = model.spec.graph
    rng = np.random.default_rng(seed)
    out = {}
    for name in model.spec.names_of("input", "target"):
        shape = g.nodes[g.names[name]].shape
        out[name] = np.asarray(fixed[name], dtype=float) if name in fixed else rng.uniform(0.2, 1.5, (B,) + shape)
        assert out[name].shape == (B,) + shape
    return out


def batched_values(model, data: dict, names: list) -> tuple:
    """(values of `names` from the batched graph, the batched graph)."""
    g0 = model.spec.graph
    leaves = [g0.names[n] for n in data]
    g, new = batched(g0, leaves, [g0.names[n] for n in names], B)
    values = {leaf.id: g.values.get(leaf.id) for leaf in g.leaves()}
    values.update({new[g0.names[n]]: v for n, v in data.items()})
    values.update({new[g0.names[p]]: v for p, v in model.params.items()})
    found = evaluate(g, values, [new[g0.names[n]] for n in names])
    return {n: found[new[g0.names[n]]] for n in names}, g


def check_against_per_example(text: str, fixed: dict | None = None, seed: int = 0) -> set:
    """Asserts batched == per-example for every computed name; returns the ops the spec's data reach."""
    model = graphdsl.compile(spec(text), engine="numpy")
    data = examples(model, fixed or {}, seed)
    names = model.spec.names_of("node")
    got, g = batched_values(model, data, names)
    for b in range(B):
        want = model.forward(**{n: v[b] for n, v in data.items()})
        for n in names:
            assert np.shape(got[n]) == (B,) + np.shape(want[n]), n
            np.testing.assert_allclose(got[n][b], want[n], rtol=RTOL, atol=ATOL, err_msg=f"{n}, example {b}")
    return data_ops(model)


def data_ops(model) -> set:
    """Ops of the one-example graph that depend on an input or target: those a batch rewrites."""
    g = model.spec.graph
    leaves = {g.names[n] for n in model.spec.names_of("input", "target")}
    reached = set(leaves)
    for node in g.nodes:
        if any(a in reached for a in node.args):
            reached.add(node.id)
    return {g.nodes[i].op for i in reached - leaves}


ELEMENTWISE = """
    input s
    input x[3]
    input A[2, 3]
    param w[3] = [0.5, -1, 2]
    param P[2, 3] = [[1, 2, 3], [4, 5, 6]]
    param C[2, 1] = [[10], [-10]]
    y = s * x + w / (1 + s^2) - x * w
    q = x - s
    e = eq(x, s)
    pw = (x * x + 1)^s
    M = P + x
    N = A * s + C
    R = A / (x + 3) - w
    u = [-x[0], exp(s), log(s + 1), sin(s), cos(s), sqrt(s + 1), abs(s - 1), sigmoid(s), tanh(s), \
         relu(s - 1), step(s - 1), is_zero(s - 1), softplus(s)]
    v = relu(x - 1) + step(x - 1) + is_zero(x - 1) + abs(x - 1) + softplus(-x)
"""
# Some examples sit exactly on the kinks (s = 1, x = 1) and on ties (x == s).
ELEMENTWISE_DATA = {
    "s": [0.5, 1.0, 0.0, 2.0],
    "x": [[0.5, 1, 2], [1, 1, 0.3], [0, -1, 0.5], [2, 0.2, 2]],
}

PRODUCTS = """
    input x[3]
    input u[3]
    input A[2, 3]
    param W[2, 3] = [[1, -2, 0.5], [0.3, 0.7, -1]]
    param W2[3, 2] = [[1, 2], [3, 4], [5, 6]]
    param v[3] = [1, -1, 2]
    param M[3, 4] = [[1, 2, 3, 4], [0, 1, 0, 1], [2, 0, -1, 1]]
    param r[2] = [0.5, 2]
    a = W x
    a2 = W @ x
    b = x' W2
    b2 = x W2
    c = x u
    c2 = dot(x, u)
    c3 = x' u
    d = A v
    f = A M
    f2 = A @ M
    o1 = outer(x, u)
    o2 = outer(r, x)
    o3 = outer(x, r)
    xt = x'
    t2 = transpose(x)
"""

REDUCTIONS = """
    input x[3]
    input A[2, 3]
    s1 = sum(x)
    s2 = sum(A, axis=0)
    s3 = sum(A, axis=1)
    s4 = sum(A)
    s5 = mean(A, axis=-1)
    s6 = mean(x)
    m1 = max(x)
    m2 = max(A)
    m3 = max(x, axis=0)
    m4 = max(x, axis=-1)
    n1 = min(A)
    n2 = min(A, axis=1)
    n3 = min(x, axis=0)
"""

INDEXING = """
    input x[3]
    input A[2, 3]
    input s
    param W[2, 3] = [[1, -2, 0.5], [0.3, 0.7, -1]]
    param v[3] = [1, -1, 2]
    i1 = x[0]
    i2 = x[-1]
    i3 = A[1]
    i4 = A[1, 2]
    i5 = (W x)[1]
    i6 = A[-1, 0]
    i7 = sigmoid(x)[2]
    st1 = [x[0], 2 x[1], 0]
    st2 = [x, v]
    st3 = [x, 2 x, v]
    st4 = [s, 1]
    st5 = [A[0], v]
    cc1 = [1; x]
    cc2 = [x[0]; x; v; 3]
    cc3 = [s; s]
    cc4 = [v; s]
    sl1 = x[1:]
    sl2 = A[:, 1:3]
    sl3 = A[-1, ::2]
    cc5 = [A; W; [v]]
    rs1 = reshape(A, shape=[3, 2])
    rs2 = flatten(A) + 1
    col = A + x[1:]
"""

SOFTMAX = """
    input x[3]
    input A[2, 3]
    sm1 = softmax(x)
    sm2 = log_softmax(A)
    sm3 = logsumexp(x)
    sm4 = logsumexp(A)
    sm5 = softmax(A)
    sm6 = log_softmax(x)
"""

LOSSES = """
    input x[3]
    input A[2, 3]
    target k
    target kk[2]
    target t[3]
    target y
    param W[3, 3] = [[1, -2, 0.5], [0.3, 0.7, -1], [0, 1, 1]]
    z = W x
    L1 = softmax_ce(z, k)
    L2 = softmax_ce(z, t)
    L3 = softmax_ce(A, kk)
    L4 = softmax_ce(A, kk, reduce=sum)
    L5 = mse(z, t)
    L6 = half_se(z, t, reduce=sum)
    L7 = bce(sigmoid(z[0]), y)
    L8 = bce_logits(z, y)
    L9 = mean((A - x) * (A - x))  # a row broadcast, written out: mse refuses a target of another shape
"""
LOSSES_DATA = {
    "k": [0, 2, 1, 2],
    "kk": [[0, 2], [1, 1], [2, 0], [0, 0]],
    "t": np.eye(3)[[1, 0, 2, 2]],
    "y": [1, 0, 0, 1],
}

CONVOLUTION = """
    input x[2, 5, 5]
    input A[4, 4]
    param K[3, 2, 3, 3] = he(seed=1)
    param c[3] = [0.1, -0.2, 0.3]
    param K2[2, 3, 2, 2] = he(seed=2)
    z1 = conv2d(x, K, c, padding=1)
    z2 = conv2d(x, K, stride=2)
    z3 = conv2d(maxpool2d(z1, size=2), K2)
    m1 = maxpool2d(relu(z1), size=3, stride=1)
    m2 = maxpool2d(A)
    a1 = avgpool2d(z1, size=2, stride=1)
    a2 = avgpool2d(x, size=3, stride=2)
    f = flatten(z3) + 1
"""
# Pools of all-zero windows after the ReLU, and ties: example 1's image is constant.
CONVOLUTION_DATA = {"x": np.stack([np.random.default_rng(4).uniform(-1, 1, (2, 5, 5)), np.ones((2, 5, 5)),
                                   np.random.default_rng(5).uniform(-1, 1, (2, 5, 5)), -np.ones((2, 5, 5))])}

CASES = {
    "elementwise": (ELEMENTWISE, ELEMENTWISE_DATA),
    "products": (PRODUCTS, {}),
    "reductions": (REDUCTIONS, {"x": [[1, 3, 3], [0.5, 0.2, 0.1], [2, 2, 2], [0.3, 0.9, 0.4]]}),
    "indexing": (INDEXING, {}),
    "softmax": (SOFTMAX, {"A": [[[1, 2, 3], [0, 0, 0]], [[1000, 1, 2], [-3, 5, 5]], [[0.1, 0.2, 0.3], [1, 1, 1]],
                                [[2, 2, 1], [0.5, 0.5, 0.5]]]}),
    "losses": (LOSSES, LOSSES_DATA),
    "convolution": (CONVOLUTION, CONVOLUTION_DATA),
}


@pytest.mark.parametrize("case", CASES)
def test_batched_values_equal_per_example_values(case):
    text, fixed = CASES[case]
    check_against_per_example(text, fixed)


def test_the_specs_reach_every_op_that_has_a_rule():
    """Every op with a minibatch rule is met by some spec above, or by the hand-built graphs below
    (`sign` and `reshape` have no spec syntax; `onehot` appears only in softmax_ce's gradient)."""
    reached = set()
    for text, fixed in CASES.values():
        reached |= data_ops(graphdsl.compile(spec(text), engine="numpy"))
    by_hand = {"sign", "reshape", "onehot"}
    rules = {name for name, op in OPS.items() if op.batch is not unbatchable}
    assert rules - reached <= by_hand, rules - reached - by_hand


def test_a_broadcast_per_example_scalar_keeps_its_example():
    """x * s with s a per-example scalar: row b of the batch is scaled by s[b], not by the whole of s."""
    model = graphdsl.compile("input s\ninput x[3]\ny = s * x\n", engine="numpy")
    got, _ = batched_values(model, {"s": np.array([1.0, 2, 3, 4]), "x": np.ones((B, 3))}, ["y"])
    np.testing.assert_array_equal(got["y"], [[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]])


# -- graphs built by hand: ops without spec syntax -------------------------------------------


def by_hand(build, shape, seed=3):
    """Batched vs per-example for a graph made with the registry: build(x) -> outputs."""
    g = Graph()
    x = g.leaf("input", None, shape)
    outs = [o.id for o in build(Sym(g, x))]
    gb, new = batched(g, [x], outs, B)
    data = np.random.default_rng(seed).uniform(-2, 2, (B,) + shape)
    data[0].flat[0] = 0.0   # sign(0) = 0
    found = evaluate(gb, {**gb.values, new[x]: data}, [new[o] for o in outs])
    for b in range(B):
        want = evaluate(g, {**g.values, x: data[b]}, outs)
        for o in outs:
            np.testing.assert_allclose(found[new[o]][b], want[o], rtol=RTOL, atol=ATOL)


def test_sign_batches():
    by_hand(lambda x: [x.op("sign"), x.op("sign") * x], (3,))


def test_reshape_batches():
    def build(x):
        r = x.op("reshape", shape=(2, 3))
        return [r, r.op("sum", axis=0), r.op("reshape", shape=(3, 2)) @ x.g_array(np.arange(6.0).reshape(2, 3)),
                r.op("reshape", shape=(6,))]
    by_hand(build, (6,))


# -- gradients through a batched graph --------------------------------------------------------

GRADIENTS = """
    input x[3]
    input s
    target k
    param W[3, 3] = [[1, -2, 0.5], [0.3, 0.7, -1], [0, 1, 1]]
    param b[3] = [0.1, 0.2, 0.3]
    param V[3, 4] = [[1, 2, 3, 4], [0, 1, 0, 1], [2, 0, -1, 1]]
    param u[2] = [0.5, -0.5]
    h = tanh(W x + b) * s
    q = [h[0]; x; s]
    y = h' V
    z = [sum(outer(u, h), axis=0)[1], max(q), logsumexp(h), y[2], (x x) s]
    L = softmax_ce(W h, k) + sum(z) + sum(softmax(y) * y) + mse(h, x)
"""


def test_gradient_of_the_summed_batch_is_the_sum_of_per_example_gradients():
    """The training step differentiates the batched graph; softmax_ce's gradient there uses `onehot`."""
    model = graphdsl.compile(spec(GRADIENTS), engine="numpy")
    data = examples(model, {"k": [0, 2, 1, 2]}, seed=1)
    g0 = model.spec.graph
    loss = g0.names["L"]
    g, new = batched(g0, [g0.names[n] for n in data], [loss], B)
    params = model.spec.names_of("param")
    grads = backward(g, Sym(g, new[loss]).op("sum").id, [new[g0.names[p]] for p in params])
    assert "onehot" in {n.op for n in g.nodes}
    values = {leaf.id: g.values.get(leaf.id) for leaf in g.leaves()}
    values.update({new[g0.names[n]]: v for n, v in data.items()})
    found = evaluate(g, values, [grads[new[g0.names[p]]] for p in params])
    per_example = [model.grad("L", **{n: v[b] for n, v in data.items()}) for b in range(B)]
    for p in params:
        want = sum(e[p] for e in per_example)
        np.testing.assert_allclose(found[grads[new[g0.names[p]]]], want, rtol=RTOL, atol=ATOL, err_msg=p)


def test_values_that_do_not_depend_on_data_are_not_batched():
    model = graphdsl.compile("input x[2]\nparam W[2, 2] = [[1, 2], [3, 4]]\nG = W' W\nz = G x\n", engine="numpy")
    g0 = model.spec.graph
    g, new = batched(g0, [g0.names["x"]], [g0.names["z"]], B)
    assert g.nodes[new[g0.names["G"]]].shape == (2, 2)
    assert g.nodes[new[g0.names["z"]]].shape == (B, 2)
    assert g.nodes[new[g0.names["W"]]].shape == (2, 2)


# -- ops without a rule -----------------------------------------------------------------------

NO_RULE = {
    "conv1d": ("input x[4]\ntarget t[3]\nparam k[2] = [1, -1]\nz = conv1d(x, k)\nL = mse(z, t)\n"
               "data x = [[1, 2, 3, 4], [0, 1, 0, 1]], t = [[0, 0, 0], [1, 1, 1]]\n",
               "`conv1d`", 4, "z = conv1d(x, k)"),
    "transposed matrix": ("input A[2, 2]\ntarget t[2]\nparam W[2, 2] = [[1, 0], [0, 1]]\nz = W A'\n"
                          "L = mse(sum(z, axis=0), t)\n"
                          "data A = [[[1, 2], [3, 4]], [[0, 1], [1, 0]]], t = [[0, 0], [1, 1]]\n",
                          "a transposed per-example matrix", 4, "z = W A'"),
    "vector times per-example matrix": ("input A[2, 2]\ntarget t[2]\nparam v[2] = [1, 2]\nz = v' A\nL = mse(z, t)\n"
                                        "data A = [[[1, 2], [3, 4]], [[0, 1], [1, 0]]], t = [[0, 0], [1, 1]]\n",
                                        "a product with a per-example matrix on the right", 4, "z = v' A"),
    "per-example matrix times per-example vector": (
        "input A[2, 2]\ninput x[2]\ntarget t[2]\nparam v[2] = [1, 2]\nz = A (x + v)\nL = mse(z, t)\n"
        "data A = [[[1, 2], [3, 4]], [[0, 1], [1, 0]]], x = [[1, 1], [2, 2]], t = [[0, 0], [1, 1]]\n",
        "per-example", 5, "z = A (x + v)"),
    "max along an axis of a matrix": ("input A[2, 2]\ntarget t[2]\nz = max(A, axis=1)\nparam w[2] = [1, 1]\n"
                                      "L = mse(w * z, t)\n"
                                      "data A = [[[1, 2], [3, 4]], [[0, 1], [1, 0]]], t = [[0, 0], [1, 1]]\n",
                                      "max along an axis of a per-example matrix", 3, "z = max(A, axis=1)"),
    "per-example kernels": ("input x[1, 3, 3]\ninput k[1, 1, 2, 2]\ntarget t[1, 2, 2]\nz = conv2d(x, k)\n"
                            "L = mse(z, t)\n"
                            "data x = [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], [[[0, 1, 0], [1, 0, 1], [0, 1, 0]]]], "
                            "k = [[[[[1, 0], [0, 1]]]], [[[[0, 1], [1, 0]]]]], "
                            "t = [[[[0, 0], [0, 0]]], [[[1, 1], [1, 1]]]]\n",
                            "kernels that differ from example to example", 4, "z = conv2d(x, k)"),
    "constant class index": ("input x[2]\nparam W[2, 2] = [[1, 0], [0, 1]]\nz = W x\nL = softmax_ce(z, 1)\n"
                             "data x = [[1, 2], [3, 4]]\n",
                             "a class index that is the same for every example", 4, "L = softmax_ce(z, 1)"),
}


def refusal(case: str) -> SpecError:
    text = NO_RULE[case][0] + "minimize L using sgd(lr=0.1), batch=2\n"
    model = graphdsl.compile(text, filename="net.nn", engine="numpy")
    with pytest.raises(SpecError) as info:
        model.train()
    return info.value


@pytest.mark.parametrize("case", NO_RULE)
def test_an_op_without_a_rule_is_refused_with_a_hint_to_train_one_example_a_step(case):
    _, why, _, _ = NO_RULE[case]
    err = refusal(case)
    assert "this cannot be trained in minibatches yet" in err.message
    assert why in err.message
    assert err.hint == "train one example a step with `batch=1`"


@pytest.mark.parametrize("case", ["transposed matrix", "vector times per-example matrix",
                                  "per-example matrix times per-example vector"])
def test_an_op_without_a_rule_is_refused_at_its_line(case):
    _, _, line, _ = NO_RULE[case]
    assert refusal(case).line == line


@pytest.mark.parametrize("case", NO_RULE)
def test_an_op_without_a_rule_is_refused_like_a_compiler_error(case):
    _, _, line, source = NO_RULE[case]
    text = str(refusal(case))
    assert text.startswith(f"net.nn:{line}:"), text
    assert f"\n    {source}\n" in text, text


def test_the_same_ops_train_one_example_a_step():
    """batch=1 needs no rule: the refused specs build their step graph with one example."""
    for case in NO_RULE:
        text = NO_RULE[case][0] + "minimize L using sgd(lr=0.1), batch=1\n"
        model = graphdsl.compile(text, filename="net.nn", engine="numpy")
        Trainer(model, model.spec.training)   # builds the plan; compiling is left to the training tests
