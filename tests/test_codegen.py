"""What the code generator emits: fused elementwise chains, transposes folded into products,
and loops for the softmax family. Values are checked against NumPy computed here."""
import numpy as np
import pytest

import graphdsl
from graphdsl.backend import codegen
from graphdsl.backend import train_loop as loopgen
from graphdsl.backend.runtime import kernels as K
from graphdsl.backend.runtime import step as T
from graphdsl.ir.graph import Graph
from graphdsl.ir.sym import Sym
from graphdsl.training.plan import data_leaves, make_plan


def test_an_elementwise_chain_is_one_loop_nest_with_one_buffer():
    model = graphdsl.compile("input x[2, 3]\ninput b[3]\ny = exp(-x) * 2 + sigmoid(x + b)\n")
    source = model.source("forward")
    assert source.count("for i0 ") == 1, source
    assert source.count("np.empty(") == 1, source  # y's buffer only: the steps between are locals
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]])
    b = np.array([0.1, -0.2, 0.3])
    want = np.exp(-x) * 2 + 1 / (1 + np.exp(-(x + b)))
    np.testing.assert_allclose(model.forward(x=x, b=b)["y"], want, rtol=1e-15)


def test_a_value_read_twice_keeps_its_buffer():
    model = graphdsl.compile("input x[4]\nh = tanh(x)\ny = h * h + h\n")
    x = np.array([-2.0, -0.5, 0.25, 3.0])
    np.testing.assert_allclose(model.forward(x=x)["y"], np.tanh(x) ** 2 + np.tanh(x), rtol=1e-15)


def test_a_broadcast_value_is_not_recomputed_per_copy():
    # exp(v) is a [3] vector read by a [2, 3] sum: fused, it would run once per row
    source = graphdsl.compile("input v[3]\ninput m[2, 3]\ny = m + exp(v)\n").source("forward")
    assert source.count(".exp(") == 1 and source.count("for i0 ") == 2, source


def test_the_transpose_of_a_product_is_the_product_of_transposes():
    g = Graph()
    a = Sym(g, g.leaf("input", None, (2, 3)))
    b = Sym(g, g.leaf("input", None, (3, 4)))
    t = (a @ b).T
    node = g.nodes[t.id]
    assert node.op == "matmul" and node.shape == (4, 2)
    left, right = (g.nodes[i] for i in node.args)
    assert (left.op, left.args, right.op, right.args) == ("transpose", (b.id,), "transpose", (a.id,))
    assert a.T.T.id == a.id
    v = Sym(g, g.leaf("input", None, (3,)))
    assert v.T.id == v.id  # a vector is its own transpose


def test_a_forward_product_is_not_computed_again_for_its_transpose():
    """In z = V (W x), V's gradient reads (W x)' : a view of the forward product, not x' W' again."""
    model = graphdsl.compile("input x[3]\ntarget y[2]\nparam W[4, 3] = xavier(seed=0)\n"
                             "param V[2, 4] = xavier(seed=1)\nz = V (W x)\nL = mse(z, y)\n"
                             "data x = [[1, 2, 3], [0, 1, 0], [1, 0, 0], [2, 1, 0]], "
                             "y = [[0, 1], [1, 0], [0, 0], [1, 1]]\n"
                             "minimize L using sgd(lr=0.1), epochs=1, batch=4\n")
    plan = make_plan(model.spec, model.spec.training, data_leaves(model.spec, model.spec.graph.names["L"]), 4, [], [])
    needed = plan.graph.ancestors(plan.outputs)
    products = [n for n in plan.graph.nodes if n.id in needed and n.op == "matmul"]
    assert len(products) == 5  # 2 forward; dV, dH and dW backward


def test_softmax_cross_entropy_loops_match_numpy():
    """logsumexp, pick and (in the gradient) onehot are written as loops over class rows."""
    model = graphdsl.compile("input z[3, 4]\ntarget k[3]\nl = logsumexp(z)\nL = softmax_ce(z, k, reduce=sum)\n")
    z = np.array([[1.0, 2.0, 3.0, 4.0], [-1000.0, 0.0, 5.0, 1.0], [800.0, 799.0, 0.5, -3.0]])
    k = np.array([3.0, 0.0, 1.0])
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    np.testing.assert_allclose(model.forward(z=z, k=k)["l"], lse, rtol=1e-15)
    np.testing.assert_allclose(model.forward(z=z, k=k)["L"], np.sum(lse - z[[0, 1, 2], [3, 0, 1]]), rtol=1e-14)
    softmax = np.exp(z - lse[:, None])
    np.testing.assert_allclose(model.grad("L", z=z, k=k)["z"], softmax - np.eye(4)[[3, 0, 1]], rtol=1e-13, atol=1e-300)


def test_a_param_scalar_joined_with_a_minibatch_trains():
    """`[s; x]` reshapes the scalar s inside the batched step: d(sum(q * q))/ds = 2s for every
    example, so each of the 2 x 2 SGD steps multiplies s by 1 - 0.01 * 2."""
    model = graphdsl.compile("input x[2]\ntarget t\nparam s = 0.5\nq = [s; x]\nL = sum(q * q) - t\n"
                             "data x = [[1, 2], [3, 4], [5, 6]], t = [1, 2, 3]\n"
                             "minimize L using sgd(lr=0.01), epochs=2, batch=2\n")
    model.train()
    np.testing.assert_allclose(model.params["s"], 0.5 * 0.98 ** 4, rtol=1e-15)


def test_a_same_shape_nest_runs_over_one_flat_index():
    """Loops over buffers of one shape become a single loop LLVM vectorises along memory; a
    broadcast operand, a view or an input (of unknown layout) keeps the nest."""
    model = graphdsl.compile("input x[2, 3]\ninput b[3]\nh = tanh(x)\ny = h * h + exp(h)\n"
                             "z = h + b\nw = h' * 2\n")
    source = model.source("forward")
    assert source.count("for i0 in range(6):") == 1, source  # y only
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]])
    b = np.array([0.1, -0.2, 0.3])
    h = np.tanh(x)
    out = model.forward(x=x, b=b)
    np.testing.assert_allclose(out["y"], h * h + np.exp(h), rtol=1e-15)
    np.testing.assert_allclose(out["z"], h + b, rtol=1e-15)
    np.testing.assert_allclose(out["w"], h.T * 2, rtol=1e-15)


def test_a_value_one_node_reads_twice_is_computed_once():
    """`a + a` differentiates to `g + g` at every level: fusing a value into a reader that uses it
    twice would copy its whole chain into each use, doubling the training loop at every level."""
    lines = ["input x[3]", "param w[3] = [1, 2, 3]", "a0 = w * x"]
    lines += [f"a{i + 1} = a{i} + a{i}" for i in range(8)]
    lines += ["L = sum(a8)", "data x = [[0.5, -1, 2]]", "minimize L using sgd(lr=0.1), epochs=1"]
    model = graphdsl.compile("\n".join(lines) + "\n")
    train = model.spec.training
    plan = make_plan(model.spec, train, data_leaves(model.spec, model.spec.graph.names["L"]), None, [], [])
    assert len(loopgen.train_loop(plan).splitlines()) < 200  # 802 lines when the chains were copied
    model.train()
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(model.params["w"], [1, 2, 3] - 0.1 * 2 ** 8 * x, rtol=1e-15)  # L = 256 w.x


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-14)])
def test_dot_add_adds_a_scaled_product_for_either_order_of_each_operand(dtype, rtol):
    """K.dot_add(a, b, c, alpha) is c += alpha a b, with a and b in C or Fortran order (a
    transposed buffer is a Fortran-order view)."""
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(5, 7)), rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    for first in (a, np.asfortranarray(a)):
        for second in (b, np.asfortranarray(b)):
            out = c.astype(dtype)
            K.dot_add(first.astype(dtype), second.astype(dtype), out, -0.25)
            np.testing.assert_allclose(out, c - 0.25 * a @ b, rtol=rtol, atol=rtol)



def test_a_product_fits_while_its_operands_norms_rule_out_overflow():
    """Two float32 matrices of 1e19s: every entry finite, but each product entry is 4 x 1e38,
    above float32's largest (3.4e38); with 1e18s in the first it is 4e37 and fits. nan and inf
    never fit."""
    a, b = np.full((3, 4), 1e19, np.float32), np.full((4, 2), 1e19, np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite((a @ b)[0, 0])
    assert not T.product_fits(T.norm(a), T.norm(np.ascontiguousarray(b.T)), a)  # b's memory in any order
    assert T.product_fits(T.norm(a / 10), T.norm(b), a) and np.isfinite(a / 10 @ b).all()
    for bad in (np.nan, np.inf):
        b[1, 1] = bad
        assert not T.product_fits(T.norm(a / 10), T.norm(b), a)


def test_hits_count_rows_whose_argmax_is_the_class_as_numpy_picks_it():
    """Ties go to the first largest score and a nan row to its first nan, as np.argmax picks;
    padded rows (weight 0) never count; one-hot targets count as their class indices."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, c = rng.integers(1, 6), rng.integers(2, 5)
        scores = rng.integers(-2, 3, size=(n, c)).astype(float)  # small integers: many ties
        scores[rng.random((n, c)) < 0.15] = np.nan
        target = rng.integers(0, c, size=n).astype(float)
        weights = (rng.random(n) > 0.2).astype(float)
        want = sum(1 for i in range(n) if weights[i] > 0 and np.argmax(scores[i]) == target[i])
        assert T.hits_argmax(scores, target, weights) == want
        assert T.hits_argmax(scores, np.eye(c)[target.astype(int)], weights) == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_gather_returns_the_norm_of_the_rows_it_copied(dtype):
    """take's norm bounds the gathered batch's Frobenius norm from above, within the rounding of
    summing a row of 6 squares in the dtype (inf where a square overflows the dtype), so the check
    of a product that reads the batch needs no pass of its own."""
    source = np.random.default_rng(0).normal(size=(9, 2, 3)).astype(dtype)
    ids, out = np.array([4, 0, 4, 8]), np.full((4, 2, 3), np.nan, dtype)  # what was there never counts
    norm = T.take(source, ids, out)
    np.testing.assert_array_equal(out, source[ids])
    exact, eps = np.linalg.norm(source[ids].astype(np.float64)), np.finfo(dtype).eps
    assert exact <= norm <= exact * (1 + 2 * 6 * eps)
    if dtype == np.float32:  # a row whose squares fit float32 but whose sum does not: summed again in float64
        source[0] = np.sqrt(np.finfo(dtype).max) / 2
        exact = np.linalg.norm(source[ids].astype(np.float64))
        assert exact <= T.take(source, ids, out) <= exact * (1 + 2 * 6 * eps)
    source[0, 1, 2] = np.finfo(dtype).max / 2
    assert T.take(source, ids, out) == np.inf

LAYERS = """\
input x[40]
target k
param W1[64, 40] = xavier()
param W2[3, 64] = xavier()
{body}
L = softmax_ce(z, k)
minimize L using sgd(lr=0.3), epochs=1, batch=32
"""


def fused_params(body: str) -> set:
    """The params plain SGD updates inside their gradient's product, by name."""
    spec = graphdsl.compile(LAYERS.format(body=body)).spec
    plan = make_plan(spec, spec.training, data_leaves(spec, spec.graph.names["L"]), 32, [], [])
    names = dict(zip(plan.params, spec.names_of("param")))
    fused = loopgen.sgd_products(plan)
    assert loopgen.train_loop(plan, fuse=True).count("K.dot_add(") == len(fused)
    assert "K.dot_add(" not in loopgen.train_loop(plan)
    return {names[p] for p in fused}


def test_plain_sgd_updates_weights_in_their_gradient_products_but_not_from_a_params_values():
    """A layer's weight gradient is a product of buffers, fused; the gradient of a factor of the
    product of two params reads the other param, which an earlier update may have changed."""
    assert fused_params("z = W2 relu(W1 x)") == {"W1", "W2"}
    assert fused_params("z = (W2 W1) x") == set()


def test_the_check_of_a_product_that_reads_a_minibatch_takes_its_norm_from_the_gather():
    """W1's gradient is dz' x: its check makes no pass over x, whose gather measured it."""
    spec = graphdsl.compile(LAYERS.format(body="z = W2 relu(W1 x)")).spec
    plan = make_plan(spec, spec.training, data_leaves(spec, spec.graph.names["L"]), 32, [], [])
    source, x = loopgen.train_loop(plan, fuse=True), codegen.var(spec.graph.names["x"])
    assert f"norm_{x} = T.take(" in source and f"T.norm({x})" not in source
    assert source.count("T.product_fits(") == 2 and source.count(f"norm_{x}") == 3  # set before the loop, made, read


def test_a_plain_update_is_a_loop_in_the_step():
    """Plain SGD subtracts lr * grad in loops of constant length: always where products are fused,
    and where momentum and weight decay are 0 otherwise (the loop still calls T.sgd for the rest)."""
    spec = graphdsl.compile(LAYERS.format(body="z = W2 tanh(W1 x)")).spec
    plan = make_plan(spec, spec.training, data_leaves(spec, spec.graph.names["L"]), 2, [], [])
    fused, unfused = loopgen.train_loop(plan, fuse=True), loopgen.train_loop(plan)
    assert "T.sgd(" not in fused and "theta[i0] -= hyper[0] * grad[i0]" in fused
    assert "if hyper[1] == 0.0 and hyper[2] == 0.0:" in unfused and "T.sgd(" in unfused


def test_a_step_with_every_param_frozen_trains_nothing_and_reports_the_loss():
    """No param left to update: the step has no update at all (an empty plain-update branch was a
    syntax error), and the compiled loop's losses are the fixed network's."""
    model = graphdsl.compile("input x[2]\ntarget y\nparam w[2] = [0.5, -1]\nL = (w x - y)^2\n"
                             "minimize L using sgd(lr=0.1), epochs=8, freeze=[w]", engine="numba")
    xs, ys = np.random.default_rng(0).normal(size=(6, 2)), np.arange(6.0)
    history = model.train({"x": xs, "y": ys})  # 48 steps, compiled
    np.testing.assert_array_equal(model.params["w"], [0.5, -1])
    np.testing.assert_allclose(history["loss"], [np.mean((xs @ [0.5, -1] - ys) ** 2)] * 8, rtol=1e-12)
