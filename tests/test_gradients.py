"""Every gradient graphdsl computes, checked against two independent references.

For each function a spec may call and each operator, a small spec builds a
scalar loss from it; its gradients must match (a) central differences of the
loss, taken here with a helper of our own, and (b) PyTorch autograd on the same
formula written in torch, and its loss must match torch's value. Inputs are
float64 draws from a seeded Generator, kept away from kinks.

The NumPy engine runs every case; Numba runs NUMBA_CASES, a subset that still
covers every function and operator (see there why not all). Then come the
required special cases (fan-out, broadcasting, kinks, ties, huge logits,
Jacobians, repeated calls), each under both engines, and every spec in specs/
compiled against the reference interpreter.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdsl
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.batch import batched
from graphdsl.errors import SpecError
from graphdsl.frontend.functions import FUNCTIONS
from graphdsl.ir.ops import OPS

SPEC_DIR = Path(__file__).resolve().parents[1] / "specs"
SPECS = sorted(SPEC_DIR.glob("*.nn"))

# Central differences: O(eps^2) truncation plus O(1e-16 / eps) rounding.
FD_EPS, FD_RTOL, FD_ATOL = 1e-6, 1e-6, 1e-8
# Torch computes the same formulas in float64: agreement to rounding.
TORCH_RTOL, TORCH_ATOL = 1e-9, 1e-12


# -- helpers: references computed here, never by graphdsl ---------------------

def central_diff(f: Callable[[dict], float], values: dict, name: str, eps: float = FD_EPS) -> np.ndarray:
    """d f / d values[name] by central differences, one entry at a time."""
    base = np.array(values[name], dtype=np.float64)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        h = eps * max(1.0, abs(base[index]))
        sides = []
        for step in (h, -h):
            moved = base.copy()
            moved[index] += step
            sides.append(f({**values, name: moved}))
        grad[index] = (sides[0] - sides[1]) / (2 * h)
    return grad


def torch_loss_and_grads(fn: Callable, values: dict, index_names=()) -> tuple[float, dict]:
    """fn(**tensors) and its gradient with respect to every non-index tensor (zeros where unused)."""
    tensors = {}
    for name, v in values.items():
        if name in index_names:
            tensors[name] = torch.tensor(np.asarray(v), dtype=torch.long)
        else:
            tensors[name] = tt(v).requires_grad_()
    loss = fn(**tensors)
    diff = [n for n in tensors if n not in index_names]
    grads = torch.autograd.grad(loss, [tensors[n] for n in diff], allow_unused=True)
    out = {n: (np.zeros(np.shape(values[n])) if g is None else g.detach().numpy()) for n, g in zip(diff, grads)}
    return float(loss.detach()), out


def tt(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64))


def assert_close(actual, expected, rtol, atol, what):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def decl(kind: str, name: str, shape: tuple) -> str:
    # Scalars and params need a value in a declaration; the tests always pass their own.
    dims = "" if shape == () else f"[{', '.join(map(str, shape))}]"
    return f"{kind} {name}{dims} = 0" if shape == () or kind == "param" else f"{kind} {name}{dims}"


# -- input samplers ------------------------------------------------------------

@dataclass(frozen=True)
class Arg:
    draw: Callable            # draw(rng) -> np.ndarray
    kind: str = "input"       # how the spec declares it
    index: bool = False       # class indices: long in torch, no gradient, no differences


def normal(*shape):
    return Arg(lambda rng: rng.normal(size=shape))


def positive(*shape):
    """For log, sqrt, a ^ b with b varying, and denominators."""
    return Arg(lambda rng: rng.uniform(0.5, 2.0, size=shape))


def away0(*shape):
    """Either sign, at least 0.3 from 0: clear of the kinks of relu, abs and step."""
    return Arg(lambda rng: rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 1.5, size=shape))


def probs(*shape, kind="input"):
    return Arg(lambda rng: rng.uniform(0.1, 0.9, size=shape), kind)


def labels(classes, *shape):
    return Arg(lambda rng: rng.integers(0, classes, size=shape).astype(np.float64), "target", index=True)


def onehot(classes, *shape):
    return Arg(lambda rng: np.eye(classes)[rng.integers(0, classes, size=shape)], "target")


def soft(classes, *shape):
    """Rows of probabilities: soft targets for softmax_ce."""
    def draw(rng):
        e = rng.uniform(0.1, 1.0, size=shape + (classes,))
        return e / e.sum(axis=-1, keepdims=True)
    return Arg(draw, "target")


def fixed(value, kind="input"):
    return Arg(lambda rng: np.array(value, dtype=np.float64), kind)


# -- the cases -----------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    covers: tuple             # the functions (`sigmoid`) and operators (`op:+`) it tests
    expr: str                 # a scalar loss, in graphdsl
    args: dict                # name -> Arg
    torch: Callable           # the same loss in torch, from tensors named as in args

    def values(self) -> dict:
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return {n: a.draw(rng) for n, a in self.args.items()}

    @property
    def index_names(self) -> tuple:
        return tuple(n for n, a in self.args.items() if a.index)

    @property
    def wrt(self) -> list:
        return [n for n, a in self.args.items() if not a.index]

    def spec(self) -> str:
        values = self.values()
        lines = [decl(a.kind, n, np.shape(values[n])) for n, a in self.args.items()]
        return "\n".join(lines + [f"L = {self.expr}", f"grad L wrt {', '.join(self.wrt)}", ""])


CASES: list[Case] = []


def case(name, covers, expr, args, fn):
    covers = (covers,) if isinstance(covers, str) else tuple(covers)
    CASES.append(Case(name, covers, expr, args, fn))


def wsum(w, y):
    return (w * y).sum()


# Unary functions, on matrices (a weighted sum, so each entry's cotangent differs) and on scalars.
UNARY = {
    "sigmoid": (torch.sigmoid, normal), "tanh": (torch.tanh, normal), "exp": (torch.exp, normal),
    "sin": (torch.sin, normal), "cos": (torch.cos, normal), "softplus": (F.softplus, normal),
    "log": (torch.log, positive), "sqrt": (torch.sqrt, positive),
    "relu": (torch.relu, away0), "abs": (torch.abs, away0),
    "step": (lambda x: (x > 0).double(), away0),
}
for fname, (tfn, draw) in UNARY.items():
    case(f"{fname}_matrix", fname, f"sum(w * {fname}(a))", dict(a=draw(2, 3), w=normal(2, 3)),
         lambda a, w, tfn=tfn: wsum(w, tfn(a)))
    case(f"{fname}_scalar", fname, f"s * {fname}(a)", dict(a=draw(), s=normal()),
         lambda a, s, tfn=tfn: s * tfn(a))
# is_zero and eq are piecewise constant: exact zeros and ties are fair points for differences.
case("is_zero_matrix", "is_zero", "sum(w * is_zero(a))",
     dict(a=fixed([[0.0, 1.5, -0.5], [2.0, 0.0, 0.0]]), w=normal(2, 3)),
     lambda a, w: wsum(w, (a == 0).double()))
case("eq_matrix", "eq", "sum(w * eq(a, b))",
     dict(a=fixed([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), b=fixed([[1.0, 0.0, 3.0], [4.5, 5.0, -6.0]]), w=normal(2, 3)),
     lambda a, b, w: wsum(w, (a == b).double()))
case("eq_scalar_broadcast", "eq", "sum(w * eq(a, 2))", dict(a=fixed([2.0, 1.0, 2.0]), w=normal(3)),
     lambda a, w: wsum(w, (a == 2).double()))

# Binary operators, elementwise on equal shapes.
case("add", "op:+", "sum(w * (a + b))", dict(a=normal(2, 3), b=normal(2, 3), w=normal(2, 3)),
     lambda a, b, w: wsum(w, a + b))
case("sub", "op:-", "sum(w * (a - b))", dict(a=normal(2, 3), b=normal(2, 3), w=normal(2, 3)),
     lambda a, b, w: wsum(w, a - b))
case("mul", "op:*", "sum(w * (a * b))", dict(a=normal(2, 3), b=normal(2, 3), w=normal(2, 3)),
     lambda a, b, w: wsum(w, a * b))
case("div", "op:/", "sum(w * (a / b))", dict(a=normal(2, 3), b=away0(2, 3), w=normal(2, 3)),
     lambda a, b, w: wsum(w, a / b))
case("pow", "op:^", "sum(w * a ^ b)", dict(a=positive(2, 3), b=normal(2, 3), w=normal(2, 3)),
     lambda a, b, w: wsum(w, a ** b))
case("pow_const_exponent", "op:^", "sum(w * a ^ 3) + sum(a ^ 2)", dict(a=normal(4), w=normal(4)),
     lambda a, w: wsum(w, a ** 3) + (a ** 2).sum())
case("pow_const_base", "op:^", "sum(w * 2 ^ a)", dict(a=normal(4), w=normal(4)),
     lambda a, w: wsum(w, 2.0 ** a))
case("pow_scalars", "op:^", "a ^ b", dict(a=positive(), b=normal()), lambda a, b: a ** b)
case("pow_function", "pow", "sum(W * pow(A, 2)) + sum(pow(A, B))", dict(A=positive(2, 2), B=normal(2, 2), W=normal(2, 2)),
     lambda A, B, W: wsum(W, A ** 2) + (A ** B).sum())
case("arith_scalars", ("op:+", "op:-", "op:*", "op:/", "op:^", "op:unary-", "op:juxt"),
     "(a + b) * c - a / c + -b ^ 2 + a b c + c ^ a", dict(a=positive(), b=normal(), c=positive()),
     lambda a, b, c: (a + b) * c - a / c - b ** 2 + a * b * c + c ** a)
case("neg", "op:unary-", "sum(w * -a) + -s", dict(a=normal(2, 3), w=normal(2, 3), s=normal()),
     lambda a, w, s: wsum(w, -a) - s)

# Broadcasting: a scalar and a vector against a matrix, each gradient summed back to its operand.
for sym, tfn, sname in (("+", torch.add, "add"), ("-", torch.sub, "sub"), ("*", torch.mul, "mul"),
                        ("/", torch.div, "div")):
    case(f"broadcast_{sname}_scalar_matrix", f"op:{sym}", f"sum(w * (s {sym} M)) + sum(w * (M {sym} s))",
         dict(s=away0(), M=away0(2, 3), w=normal(2, 3)),
         lambda s, M, w, tfn=tfn: wsum(w, tfn(s, M)) + wsum(w, tfn(M, s)))
    case(f"broadcast_{sname}_vector_matrix", f"op:{sym}", f"sum(w * (v {sym} M)) + sum(w * (M {sym} v))",
         dict(v=away0(3), M=away0(2, 3), w=normal(2, 3)),
         lambda v, M, w, tfn=tfn: wsum(w, tfn(v, M)) + wsum(w, tfn(M, v)))
case("broadcast_pow", "op:^", "sum(w * M ^ s) + sum(w * v ^ M)",
     dict(M=positive(2, 3), s=normal(), v=positive(3), w=normal(2, 3)),
     lambda M, s, v, w: wsum(w, M ** s) + wsum(w, v ** M))
case("broadcast_juxt_scalar", "op:juxt", "sum(w * s M) + sum(2 v)",
     dict(s=normal(), M=normal(2, 3), v=normal(3), w=normal(2, 3)),
     lambda s, M, v, w: wsum(w, s * M) + (2 * v).sum())
case("broadcast_param_rows", "op:+", "sum(w * tanh(P + M))", dict(P=Arg(lambda rng: rng.normal(size=(1, 3)), "param"),
     M=normal(2, 3), w=normal(2, 3)), lambda P, M, w: wsum(w, torch.tanh(P + M)))
case("broadcast_param_cols", "op:*", "sum(w * Q * M)", dict(Q=Arg(lambda rng: rng.normal(size=(2, 1)), "param"),
     M=normal(2, 3), w=normal(2, 3)), lambda Q, M, w: wsum(w, Q * M))

# Matrix products, by `@` and by juxtaposition, and transposes.
case("matmul_matrix_matrix", "op:@", "sum(w * (A @ B))", dict(A=normal(2, 3), B=normal(3, 4), w=normal(2, 4)),
     lambda A, B, w: wsum(w, A @ B))
case("matmul_matrix_vector", "op:@", "sum(u * (W @ x))", dict(W=normal(2, 3), x=normal(3), u=normal(2)),
     lambda W, x, u: wsum(u, W @ x))
case("matmul_vector_matrix", "op:@", "sum(u * (x @ W))", dict(x=normal(2), W=normal(2, 3), u=normal(3)),
     lambda x, W, u: wsum(u, x @ W))
case("matmul_vector_vector", "op:@", "s * (x @ y)", dict(x=normal(3), y=normal(3), s=normal()),
     lambda x, y, s: s * (x @ y))
case("juxt_matrix_matrix", "op:juxt", "sum(w * A B)", dict(A=normal(2, 3), B=normal(3, 2), w=normal(2, 2)),
     lambda A, B, w: wsum(w, A @ B))
case("juxt_matrix_vector", "op:juxt", "sum(u * tanh(W x + b))",
     dict(W=normal(2, 3), x=normal(3), b=normal(2), u=normal(2)),
     lambda W, x, b, u: wsum(u, torch.tanh(W @ x + b)))
case("juxt_vector_matrix", "op:juxt", "sum(u * x' W) + sum(u * x W)", dict(x=normal(2), W=normal(2, 3), u=normal(3)),
     lambda x, W, u: 2 * wsum(u, x @ W))
case("juxt_vector_vector", "op:juxt", "s * x y", dict(x=normal(3), y=normal(3), s=normal()),
     lambda x, y, s: s * (x @ y))
case("transpose_op_matrix", "op:'", "sum(w * W') + sum(u * W' x)",
     dict(W=normal(2, 3), x=normal(2), w=normal(3, 2), u=normal(3)),
     lambda W, x, w, u: wsum(w, W.T) + wsum(u, W.T @ x))
case("transpose_op_vector", "op:'", "sum(u * x') + x' x", dict(x=normal(3), u=normal(3)),
     lambda x, u: wsum(u, x) + x @ x)
case("transpose_function", "transpose", "sum(w * transpose(W)) + sum(u * transpose(x))",
     dict(W=normal(2, 3), w=normal(3, 2), x=normal(2), u=normal(2)),
     lambda W, w, x, u: wsum(w, W.T) + wsum(u, x))
case("outer", "outer", "sum(w * outer(x, y))", dict(x=normal(2), y=normal(3), w=normal(2, 3)),
     lambda x, y, w: wsum(w, torch.outer(x, y)))
case("outer_then_matmul", "outer", "sum(u * outer(x, y) z)", dict(x=normal(2), y=normal(3), z=normal(3), u=normal(2)),
     lambda x, y, z, u: wsum(u, torch.outer(x, y) @ z))
case("dot", "dot", "s * dot(x, y)", dict(x=normal(3), y=normal(3), s=normal()),
     lambda x, y, s: s * torch.dot(x, y))

# Reductions, with and without axis=, on matrices and vectors.
case("sum_all", "sum", "s * sum(M)", dict(M=normal(2, 3), s=normal()), lambda M, s: s * M.sum())
case("sum_axis0", "sum", "sum(u * sum(M, axis=0))", dict(M=normal(2, 3), u=normal(3)),
     lambda M, u: wsum(u, M.sum(dim=0)))
case("sum_axis1", "sum", "sum(u * sum(M, axis=1))", dict(M=normal(2, 3), u=normal(2)),
     lambda M, u: wsum(u, M.sum(dim=1)))
case("sum_vector_axis", "sum", "s * sum(v, axis=0) + sum(v, axis=-1)", dict(v=normal(3), s=normal()),
     lambda v, s: s * v.sum() + v.sum())
case("sum_scalar", "sum", "s * sum(a)", dict(a=normal(), s=normal()), lambda a, s: s * a)
case("mean_all", "mean", "s * mean(M)", dict(M=normal(2, 3), s=normal()), lambda M, s: s * M.mean())
case("mean_axis0", "mean", "sum(u * mean(M, axis=0))", dict(M=normal(2, 3), u=normal(3)),
     lambda M, u: wsum(u, M.mean(dim=0)))
case("mean_axis1", "mean", "sum(u * mean(M, axis=-1))", dict(M=normal(2, 3), u=normal(2)),
     lambda M, u: wsum(u, M.mean(dim=1)))
case("mean_vector", "mean", "s * mean(v) + mean(v, axis=0)", dict(v=normal(4), s=normal()),
     lambda v, s: s * v.mean() + v.mean())
case("max_all", "max", "s * max(M)", dict(M=normal(2, 3), s=normal()), lambda M, s: s * M.amax())
case("max_axis0", "max", "sum(u * max(M, axis=0))", dict(M=normal(3, 3), u=normal(3)),
     lambda M, u: wsum(u, M.amax(dim=0)))
case("max_axis1", "max", "sum(u * max(M, axis=1))", dict(M=normal(2, 4), u=normal(2)),
     lambda M, u: wsum(u, M.amax(dim=1)))
case("min_all", "min", "s * min(M)", dict(M=normal(2, 3), s=normal()), lambda M, s: s * M.amin())
case("min_axis0", "min", "sum(u * min(M, axis=0))", dict(M=normal(3, 3), u=normal(3)),
     lambda M, u: wsum(u, M.amin(dim=0)))
case("min_axis2", "min", "sum(u * min(T, axis=2))", dict(T=normal(2, 3, 4), u=normal(2, 3)),
     lambda T, u: wsum(u, T.amin(dim=2)))
case("min_of_abs", ("min", "abs"), "s * min(abs(v))", dict(v=normal(4), s=normal()),
     lambda v, s: s * v.abs().amin())
case("max_vector", "max", "s * max(v) + max(v, axis=0)", dict(v=normal(4), s=normal()),
     lambda v, s: s * v.amax() + v.amax())

# Indexing, stacking and concatenation.
case("index_vector", "op:x[i]", "x[1] * x[2] + s * x[-1]", dict(x=normal(4), s=normal()),
     lambda x, s: x[1] * x[2] + s * x[-1])
case("index_entry", "op:W[i,j]", "W[1, 2] * W[0, 0] + W[-1, 0]", dict(W=normal(2, 3)),
     lambda W: W[1, 2] * W[0, 0] + W[-1, 0])
case("index_row", "op:W[i]", "sum(u * W[1]) + W[0][2]", dict(W=normal(2, 3), u=normal(3)),
     lambda W, u: wsum(u, W[1]) + W[0][2])
case("stack_scalars", "op:[a, b]", "sum(u * [a, b, a b, 1])", dict(a=normal(), b=normal(), u=normal(4)),
     lambda a, b, u: wsum(u, torch.stack([a, b, a * b, torch.ones((), dtype=torch.float64)])))
case("stack_vectors", "op:[a, b]", "sum(w * [x, y])", dict(x=normal(3), y=normal(3), w=normal(2, 3)),
     lambda x, y, w: wsum(w, torch.stack([x, y])))
case("stack_matrices", "op:[a, b]", "sum(w * [A, A'])", dict(A=normal(2, 2), w=normal(2, 2, 2)),
     lambda A, w: wsum(w, torch.stack([A, A.T])))
# Scalars made by different ops, side by side: under Numba each must be a float, not a 0-d array.
case("stack_scalar_results", ("op:[a, b]", "logsumexp", "softmax_ce"),
     "sum(u * [logsumexp(z), softmax_ce(z, k), sum(z, axis=0), max(z), z[0], z z, mean(z)])",
     dict(z=normal(4), k=labels(4), u=normal(7)),
     lambda z, k, u: wsum(u, torch.stack([torch.logsumexp(z, -1), F.cross_entropy(z, k), z.sum(), z.amax(), z[0],
                                          z @ z, z.mean()])))
case("concat_scalars_vectors", "op:[a; b]", "sum(u * [a; x; y; a b])",
     dict(a=normal(), b=normal(), x=normal(2), y=normal(3), u=normal(7)),
     lambda a, b, x, y, u: wsum(u, torch.cat([a[None], x, y, (a * b)[None]])))
case("concat_used_twice", "op:[a; b]", "sum(u * [x; x]) + x x", dict(x=normal(2), u=normal(4)),
     lambda x, u: wsum(u, torch.cat([x, x])) + x @ x)
case("concat_matrices", "op:[a; b]", "sum(u * [A; B; A'])", dict(A=normal(2, 2), B=normal(1, 2), u=normal(5, 2)),
     lambda A, B, u: wsum(u, torch.cat([A, B, A.T])))
case("slice_vector", "op:x[i:j]", "sum(u * x[1:3]) + s x[::2] x[2:]",
     dict(x=normal(4), u=normal(2), s=normal()),
     lambda x, u, s: wsum(u, x[1:3]) + s * (x[::2] @ x[2:]))
case("slice_matrix", "op:W[i:j, k]", "sum(u * W[:, 1]) + sum(V * W[1:, ::2]) + W[-2:][0, -1]",
     dict(W=normal(3, 4), u=normal(3), V=normal(2, 2)),
     lambda W, u, V: wsum(u, W[:, 1]) + wsum(V, W[1:, ::2]) + W[-2:][0, -1])
case("reshape_flatten", ("reshape", "flatten"), "sum(U * reshape(x, shape=[2, 3])) + s sum(flatten(W') ^ 3)",
     dict(x=normal(6), U=normal(2, 3), W=normal(2, 2), s=normal()),
     lambda x, U, W, s: wsum(U, x.reshape(2, 3)) + s * (W.T.reshape(-1) ** 3).sum())
case("vector_down_columns", "op:W X + b", "sum(U * (W X + b)) + sum(V * (c / X))",
     dict(W=normal(3, 2), X=positive(2, 4), b=normal(3), c=normal(2), U=normal(3, 4), V=normal(2, 4)),
     lambda W, X, b, c, U, V: wsum(U, W @ X + b[:, None]) + wsum(V, c[:, None] / X))

# The softmax family, over the last axis.
case("softmax_vector", "softmax", "sum(u * softmax(z))", dict(z=normal(4), u=normal(4)),
     lambda z, u: wsum(u, torch.softmax(z, -1)))
case("softmax_matrix", "softmax", "sum(w * softmax(Z))", dict(Z=normal(2, 3), w=normal(2, 3)),
     lambda Z, w: wsum(w, torch.softmax(Z, -1)))
case("log_softmax_vector", "log_softmax", "sum(u * log_softmax(z))", dict(z=normal(4), u=normal(4)),
     lambda z, u: wsum(u, torch.log_softmax(z, -1)))
case("log_softmax_matrix", "log_softmax", "sum(w * log_softmax(Z))", dict(Z=normal(2, 3), w=normal(2, 3)),
     lambda Z, w: wsum(w, torch.log_softmax(Z, -1)))
case("logsumexp_vector", "logsumexp", "s * logsumexp(z)", dict(z=normal(4), s=normal()),
     lambda z, s: s * torch.logsumexp(z, -1))
case("logsumexp_matrix", "logsumexp", "sum(u * logsumexp(Z))", dict(Z=normal(3, 4), u=normal(3)),
     lambda Z, u: wsum(u, torch.logsumexp(Z, -1)))

# softmax_ce: class indices and one-hot (or soft) rows, for a vector and for a batch of rows.
case("softmax_ce_vector_index", "softmax_ce", "softmax_ce(z, k)", dict(z=normal(4), k=labels(4)),
     lambda z, k: F.cross_entropy(z, k))
case("softmax_ce_vector_onehot", "softmax_ce", "softmax_ce(z, t)", dict(z=normal(4), t=onehot(4)),
     lambda z, t: F.cross_entropy(z, t))
case("softmax_ce_matrix_index", "softmax_ce", "softmax_ce(Z, k)", dict(Z=normal(3, 4), k=labels(4, 3)),
     lambda Z, k: F.cross_entropy(Z, k))
case("softmax_ce_matrix_onehot", "softmax_ce", "softmax_ce(Z, T)", dict(Z=normal(3, 4), T=onehot(4, 3)),
     lambda Z, T: F.cross_entropy(Z, T))
case("softmax_ce_matrix_soft_sum", "softmax_ce", "softmax_ce(Z, T, reduce=sum)", dict(Z=normal(3, 4), T=soft(4, 3)),
     lambda Z, T: F.cross_entropy(Z, T, reduction="sum"))
case("softmax_ce_matrix_index_sum", "softmax_ce", "softmax_ce(Z, k, reduce=sum)", dict(Z=normal(2, 5), k=labels(5, 2)),
     lambda Z, k: F.cross_entropy(Z, k, reduction="sum"))

# Regression and binary losses, on vectors and matrices, averaged and summed.
for red in ("mean", "sum"):
    case(f"mse_vector_{red}", "mse", f"mse(p, y, reduce={red})", dict(p=normal(4), y=normal(4)),
         lambda p, y, red=red: F.mse_loss(p, y, reduction=red))
    case(f"mse_matrix_{red}", "mse", f"mse(P, Y, reduce={red})", dict(P=normal(2, 3), Y=normal(2, 3)),
         lambda P, Y, red=red: F.mse_loss(P, Y, reduction=red))
    case(f"half_se_matrix_{red}", "half_se", f"half_se(P, Y, reduce={red})", dict(P=normal(2, 3), Y=normal(2, 3)),
         lambda P, Y, red=red: 0.5 * F.mse_loss(P, Y, reduction=red))
    case(f"bce_matrix_{red}", "bce", f"bce(P, Y, reduce={red})", dict(P=probs(2, 3), Y=probs(2, 3, kind="target")),
         lambda P, Y, red=red: F.binary_cross_entropy(P, Y, reduction=red))
    case(f"bce_logits_matrix_{red}", "bce_logits", f"bce_logits(Z, Y, reduce={red})",
         dict(Z=normal(2, 3), Y=probs(2, 3, kind="target")),
         lambda Z, Y, red=red: F.binary_cross_entropy_with_logits(Z, Y, reduction=red))
case("half_se_vector", "half_se", "half_se(p, y)", dict(p=normal(3), y=normal(3)),
     lambda p, y: 0.5 * F.mse_loss(p, y))
case("mse_scalar_target", "mse", "mse(p, y)", dict(p=normal(3), y=normal()),
     lambda p, y: ((p - y) ** 2).mean())
case("losses_scalar", ("mse", "half_se", "bce", "bce_logits"),
     "mse(a, y) + half_se(a, y) + bce(q, y) + bce_logits(a, y)",
     dict(a=normal(), q=probs(), y=probs(kind="target")),
     lambda a, q, y: (a - y) ** 2 + 0.5 * (a - y) ** 2 + F.binary_cross_entropy(q, y)
     + F.binary_cross_entropy_with_logits(a, y))
case("bce_vector", "bce", "bce(sigmoid(z), y)", dict(z=normal(3), y=probs(3, kind="target")),
     lambda z, y: F.binary_cross_entropy(torch.sigmoid(z), y))
case("bce_logits_vector", "bce_logits", "bce_logits(z, y)", dict(z=normal(3), y=probs(3, kind="target")),
     lambda z, y: F.binary_cross_entropy_with_logits(z, y))


def tconv(x, k, stride=1):
    return F.conv1d(x[None, None], k[None, None], stride=stride)[0, 0]


case("conv1d_stride1", "conv1d", "sum(u * conv1d(x, k))", dict(x=normal(7), k=normal(3), u=normal(5)),
     lambda x, k, u: wsum(u, tconv(x, k)))
case("conv1d_stride2", "conv1d", "sum(u * conv1d(x, k, stride=2))", dict(x=normal(9), k=normal(3), u=normal(4)),
     lambda x, k, u: wsum(u, tconv(x, k, 2)))
# (8 - 3) // 2 + 1 = 3 outputs: x[7] is never read, so its gradient is 0.
case("conv1d_stride2_leftover", "conv1d", "sum(u * conv1d(x, k, stride=2)) + b",
     dict(x=normal(8), k=normal(3), u=normal(3), b=normal()),
     lambda x, k, u, b: wsum(u, tconv(x, k, 2)) + b)

def tconv2d(x, k, b=None, stride=1, padding=0):
    return F.conv2d(x[None], k, b, stride=stride, padding=padding)[0]


case("conv2d_bias", "conv2d", "sum(u * conv2d(x, k, b))",
     dict(x=normal(2, 5, 5), k=normal(3, 2, 3, 3), b=normal(3), u=normal(3, 3, 3)),
     lambda x, k, b, u: wsum(u, tconv2d(x, k, b)))
case("conv2d_stride2_padding1", "conv2d", "sum(u * conv2d(x, k, b, stride=2, padding=1))",
     dict(x=normal(2, 5, 5), k=normal(3, 2, 3, 3), b=normal(3), u=normal(3, 3, 3)),
     lambda x, k, b, u: wsum(u, tconv2d(x, k, b, 2, 1)))
# No bias; (7 - 2) // 2 + 1 = 3 rows and (6 - 3) // 2 + 1 = 2 columns: x's last row and column are never read.
case("conv2d_no_bias_leftover", "conv2d", "sum(u * conv2d(x, k, stride=2))",
     dict(x=normal(1, 7, 6), k=normal(2, 1, 2, 3), u=normal(2, 3, 2)),
     lambda x, k, u: wsum(u, tconv2d(x, k, stride=2)))


def pool2d(fn, x, size, stride=None):
    """A torch pooling function on an image [C, H, W] (or a matrix [H, W])."""
    return fn(x.unsqueeze(0), size, stride)[0]


# Windows that tile the image, overlap (stride 1), and leave the last row and column unread (5 x 5 by 2);
# normal draws have no ties, so differences see each window's one largest entry.
case("maxpool2d_tiles", "maxpool2d", "sum(u * maxpool2d(x))", dict(x=normal(2, 4, 4), u=normal(2, 2, 2)),
     lambda x, u: wsum(u, pool2d(F.max_pool2d, x, 2)))
case("maxpool2d_overlap_leftover", "maxpool2d", "sum(u * maxpool2d(x, size=3, stride=1)) + sum(v * maxpool2d(A))",
     dict(x=normal(1, 5, 5), u=normal(1, 3, 3), A=normal(5, 5), v=normal(2, 2)),
     lambda x, u, A, v: wsum(u, pool2d(F.max_pool2d, x, 3, 1)) + wsum(v, pool2d(F.max_pool2d, A, 2)))
case("avgpool2d_tiles", "avgpool2d", "sum(u * avgpool2d(x, size=2))", dict(x=normal(2, 4, 4), u=normal(2, 2, 2)),
     lambda x, u: wsum(u, pool2d(F.avg_pool2d, x, 2)))
case("avgpool2d_overlap_leftover", "avgpool2d", "sum(u * avgpool2d(x, size=2, stride=1)) + sum(v * avgpool2d(A))",
     dict(x=normal(1, 4, 4), u=normal(1, 3, 3), A=normal(5, 5), v=normal(2, 2)),
     lambda x, u, A, v: wsum(u, pool2d(F.avg_pool2d, x, 2, 1)) + wsum(v, pool2d(F.avg_pool2d, A, 2)))
# A small convolutional network: its kernels' gradients through both pools and flatten. The kernels
# are params, so that the case's minibatch graph (test_cases_exercise_every_op) batches the image.
case("conv_pool_flatten", ("conv2d", "maxpool2d", "avgpool2d", "flatten"),
     "sum(u * flatten(avgpool2d(conv2d(maxpool2d(relu(conv2d(x, k, b, padding=1))), q), size=1)))",
     dict(x=normal(1, 6, 6), k=Arg(lambda rng: rng.normal(size=(2, 1, 3, 3)), "param"),
          b=Arg(lambda rng: rng.normal(size=2), "param"), q=Arg(lambda rng: rng.normal(size=(3, 2, 2, 2)), "param"),
          u=normal(12)),
     lambda x, k, b, q, u: wsum(u, F.avg_pool2d(F.conv2d(F.max_pool2d(torch.relu(tconv2d(x, k, b, padding=1)), 2),
                                                           q), 1).flatten()))

# Every operator the language has; adding one without a case above fails test_cases_cover_language.
OPERATORS = ("op:+", "op:-", "op:*", "op:/", "op:^", "op:@", "op:juxt", "op:unary-", "op:'",
             "op:x[i]", "op:W[i,j]", "op:W[i]", "op:x[i:j]", "op:W[i:j, k]", "op:[a, b]", "op:[a; b]",
             "op:W X + b")
BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


# -- references for a case, computed once --------------------------------------

@lru_cache(maxsize=None)
def numpy_model(name: str):
    return graphdsl.compile(BY_NAME[name].spec(), engine="numpy")


@lru_cache(maxsize=None)
def references(name: str) -> tuple[dict, float, dict, dict]:
    """(inputs, torch loss, torch gradients, central differences) for one case."""
    c = BY_NAME[name]
    values = c.values()
    loss, tgrads = torch_loss_and_grads(c.torch, values, c.index_names)
    model = numpy_model(name)
    f = lambda vals: float(model.forward(**vals)["L"])  # noqa: E731
    fd = {n: central_diff(f, values, n) for n in c.wrt}
    return values, loss, tgrads, fd


def check_gradients(c: Case, grads: dict):
    values, _, tgrads, fd = references(c.name)
    for n in c.args:
        got = grads[n]
        if n in c.index_names:
            assert_close(got, np.zeros(np.shape(values[n])), 0, 0, f"{c.name}: class indices `{n}` get no gradient")
            continue
        assert_close(got, tgrads[n], TORCH_RTOL, TORCH_ATOL, f"{c.name}: d/d{n} vs torch")
        assert_close(got, fd[n], FD_RTOL, FD_ATOL, f"{c.name}: d/d{n} vs central differences")


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_case_numpy_engine(name):
    c = BY_NAME[name]
    values, loss, _, _ = references(name)
    model = numpy_model(name)
    assert_close(model.forward(**values)["L"], loss, TORCH_RTOL, TORCH_ATOL, f"{name}: loss vs torch")
    check_gradients(c, model.grad(**values))


# Numba compiles each spec in ~0.1-2 s, and a kernel holding many cases compiles far more
# slowly than the cases apart (LLVM's optimiser is superlinear in function size), so Numba
# runs this subset, one small gradient kernel each: every function and operator, scalar
# variants where they exist. test_ops checks each op's array code against its reference, and
# the tests below and test_spec_numba_equals_numpy run composed specs under Numba.
NUMBA_CASES = (
    "sigmoid_scalar", "tanh_scalar", "exp_scalar", "sin_scalar", "cos_scalar", "softplus_scalar",
    "log_scalar", "sqrt_scalar", "step_scalar", "relu_matrix", "abs_matrix", "is_zero_matrix",
    "eq_scalar_broadcast", "arith_scalars", "pow_function", "neg", "pow_const_exponent",
    "matmul_matrix_matrix", "juxt_matrix_vector", "transpose_op_vector", "transpose_function", "outer", "dot",
    "sum_axis1", "mean_axis0", "max_axis0", "min_axis2", "min_of_abs", "index_vector", "index_entry", "index_row",
    "stack_scalars", "stack_vectors", "stack_scalar_results", "concat_scalars_vectors",
    "concat_matrices", "slice_vector", "slice_matrix", "reshape_flatten", "vector_down_columns",
    "softmax_matrix", "log_softmax_vector", "logsumexp_matrix", "softmax_ce_vector_index",
    "softmax_ce_matrix_onehot", "losses_scalar", "mse_scalar_target", "conv1d_stride1", "conv1d_stride2_leftover",
    "conv2d_stride2_padding1", "conv2d_no_bias_leftover", "maxpool2d_overlap_leftover", "avgpool2d_overlap_leftover",
    "conv_pool_flatten",
)


@pytest.mark.parametrize("name", NUMBA_CASES)
def test_case_numba_engine(name):
    values = references(name)[0]
    check_gradients(BY_NAME[name], graphdsl.compile(BY_NAME[name].spec(), engine="numba").grad(**values))


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_softmax_ce_keeps_a_small_loss_accurate_at_large_scores(engine):
    """Scores near -5000 whose right class leads by 20: each row's loss is log(1 + e^-20 + ...), about
    2e-9, which logsumexp(z) - z[k] computed to 4 digits. Against PyTorch's cross_entropy, to
    12 digits, with class indices and one-hot rows, for a row (3 scores) and a batch (4 x 3:
    enough for the vectorised pass)."""
    Z = np.array([[-5000.0, -5020.0, -5030.0], [-5025.0, -5005.0, -5040.0], [7990.0, 7970.0, 8010.0],
                  [3e4, 3e4 - 25.0, 3e4 - 21.0]])
    k = Z.argmax(axis=1).astype(np.float64)
    spec = ("input Z[4, 3]\ninput z[3]\ntarget k[4]\ntarget T[4, 3]\ntarget c\n"
            "a = softmax_ce(Z, k)\nb = softmax_ce(Z, T)\nd = softmax_ce(z, c)\nshow a, b, d\n")
    got = graphdsl.compile(spec, engine=engine).forward(Z=Z, z=Z[1], k=k, T=np.eye(3)[k.astype(int)], c=k[1])
    rows = F.cross_entropy(torch.tensor(Z), torch.tensor(k).long(), reduction="none")
    assert 1e-10 < rows.min() and rows.max() < 1e-8  # the losses are as small as intended
    for name, want in (("a", rows.mean()), ("b", rows.mean()), ("d", rows[1])):
        np.testing.assert_allclose(got[name], want.item(), rtol=1e-12, atol=0, err_msg=name)


# -- coverage: every function, operator and op has a gradient test ------------

def test_cases_cover_language():
    covered = {x for c in CASES for x in c.covers}
    assert set(FUNCTIONS) - covered == set(), "functions without a gradient case"
    assert set(OPERATORS) - covered == set(), "operators without a gradient case"
    assert covered - set(FUNCTIONS) - set(OPERATORS) == set(), "cases cover unknown names"
    under_numba = {x for name in NUMBA_CASES for x in BY_NAME[name].covers}
    assert (set(FUNCTIONS) | set(OPERATORS)) - under_numba == set(), "not run under Numba by NUMBA_CASES"


def minibatch_ops(spec, wrt: list) -> tuple:
    """(forward, backward) ops of the case's graph rewritten for minibatches of 2 and differentiated
    as a training step is (`reshape` arises only there, and conv2d's `im2col` and its gradient)."""
    data = [spec.graph.names[n] for n in spec.names_of("input", "target")]
    try:
        g, new = batched(spec.graph, data, [spec.graph.names["L"]], 2)
    except SpecError:  # an op with no minibatch rule
        return set(), set()
    forward = len(g.nodes)
    backward(g, g.add("sum", [new[spec.graph.names["L"]]]), [new[spec.graph.names[n]] for n in wrt])
    return {n.op for n in g.nodes[:forward]}, {n.op for n in g.nodes[forward:]}


def test_cases_exercise_every_op():
    """Every registry op appears in some case's forward or backward graph, and backward-only ops
    only in backward graphs (expand, scatter, onehot, sign have rules but arise from other rules)."""
    forward_ops, backward_ops = set(), set()
    for c in CASES:
        spec = numpy_model(c.name).spec
        forward_ops |= {n.op for n in spec.graph.nodes}
        g = spec.graph.copy()
        backward(g, g.names["L"], [g.names[n] for n in c.wrt])
        backward_ops |= {n.op for n in g.nodes[len(spec.graph.nodes):]}
        batched_forward, batched_backward = minibatch_ops(spec, c.wrt)
        forward_ops |= batched_forward
        backward_ops |= batched_backward
    leaf_kinds = {"input", "target", "param", "const"}
    assert set(OPS) - forward_ops - backward_ops == set(), "ops no gradient case builds"
    assert {n for n, op in OPS.items() if op.backward_only} & forward_ops == set()
    assert forward_ops - set(OPS) - leaf_kinds == set()


# -- required specific cases ---------------------------------------------------

ENGINES = ("numpy", "numba")


def compile_spec(text, engine):
    return graphdsl.compile(text, engine=engine)


@lru_cache(maxsize=None)
def numpy_twin(text):
    """The reference interpreter for a spec, for central differences."""
    return graphdsl.compile(text, engine="numpy")


@pytest.mark.parametrize("engine", ENGINES)
def test_fan_out_sums_cotangents(engine):
    model = compile_spec("input a[3]\nb = a + a\nc = b + b\nL = sum(c)\ngrad L wrt a\n", engine)
    a = np.array([0.3, -1.2, 2.0])
    grads = model.grad(a=a)
    _, tg = torch_loss_and_grads(lambda a: ((a + a) + (a + a)).sum(), {"a": a})
    assert_close(grads["a"], tg["a"], 0, 0, "torch")
    assert_close(grads["a"], [4.0, 4.0, 4.0], 0, 0, "d sum(c) / d a")
    assert_close(grads["b"], [2.0, 2.0, 2.0], 0, 0, "d sum(c) / d b")
    assert_close(grads["c"], [1.0, 1.0, 1.0], 0, 0, "d sum(c) / d c")


TWO_BRANCHES = """
input x[3]
param W[2, 3] = [[0.5, -1, 0.25], [1.5, 0.5, -2]]
h = tanh(W x)
L = sum(h * h) + sum(sin(h)) + h[0]
grad L wrt W, x, h
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_value_used_in_two_branches(engine):
    model = compile_spec(TWO_BRANCHES, engine)
    x = np.array([0.7, -0.4, 1.1])
    W = model.params["W"].copy()
    grads = model.grad(x=x)

    tx, tW = tt(x).requires_grad_(), tt(W).requires_grad_()
    h = torch.tanh(tW @ tx)
    h.retain_grad()
    L = (h * h).sum() + torch.sin(h).sum() + h[0]
    L.backward()
    assert_close(grads["W"], tW.grad.numpy(), TORCH_RTOL, TORCH_ATOL, "d/dW vs torch")
    assert_close(grads["x"], tx.grad.numpy(), TORCH_RTOL, TORCH_ATOL, "d/dx vs torch")
    assert_close(grads["h"], h.grad.numpy(), TORCH_RTOL, TORCH_ATOL, "d/dh (both branches summed) vs torch")

    f = lambda v: float(numpy_twin(TWO_BRANCHES).forward(**v)["L"])  # noqa: E731
    assert_close(grads["x"], central_diff(f, {"x": x, "W": W}, "x"), FD_RTOL, FD_ATOL, "d/dx vs differences")
    assert_close(grads["W"], central_diff(f, {"x": x, "W": W}, "W"), FD_RTOL, FD_ATOL, "d/dW vs differences")


BROADCAST = """
input s = 0
input v[3]
input M[2, 3]
input w[2, 3]
L = sum(w * (s M + v)) + sum(M / v - s)
grad L wrt s, v, M
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_broadcast_gradients_sum_back_to_operand_shape(engine):
    rng = np.random.default_rng(7)
    values = {"s": 1.7, "v": away0(3).draw(rng), "M": rng.normal(size=(2, 3)), "w": rng.normal(size=(2, 3))}
    grads = compile_spec(BROADCAST, engine).grad(**values)
    fn = lambda s, v, M, w: wsum(w, s * M + v) + (M / v - s).sum()  # noqa: E731
    _, tg = torch_loss_and_grads(fn, values)
    assert np.shape(grads["s"]) == () and grads["v"].shape == (3,) and grads["M"].shape == (2, 3)
    for n in ("s", "v", "M", "w"):
        assert_close(grads[n], tg[n], TORCH_RTOL, TORCH_ATOL, f"d/d{n} vs torch")
    f = lambda vals: float(numpy_twin(BROADCAST).forward(**vals)["L"])  # noqa: E731
    for n in ("s", "v"):
        assert_close(grads[n], central_diff(f, values, n), FD_RTOL, FD_ATOL, f"d/d{n} vs differences")


KINKS = """
input x[5] = [-1.5, 0, 0, 2, -0.5]
input a[3] = [1, 2, 3]
input b[3] = [1, 0, 3]
Lx = sum(relu(x)) + sum(abs(x)) + sum(x * step(x)) + sum(step(x)) + sum(is_zero(x)) + sum(x * is_zero(x))
L = Lx + sum(eq(a, b)) + sum(a * eq(a, b))
grad L wrt x, a, b
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_kinks_and_indicators(engine):
    """relu'(0) = abs'(0) = 0 as in torch; step, is_zero and eq are constant almost everywhere:
    zero gradient, even at their jumps; the gradient of x * step(x) is step(x)."""
    model = compile_spec(KINKS, engine)
    grads = model.grad()
    x, a, b = np.array([-1.5, 0, 0, 2, -0.5]), np.array([1.0, 2, 3]), np.array([1.0, 0, 3])
    fn = lambda x, a, b: (torch.relu(x).sum() + x.abs().sum() + (x * (x > 0)).sum() + (x > 0).sum()  # noqa: E731
                          + (x == 0).sum() + (x * (x == 0)).sum() + (a == b).sum() + (a * (a == b)).sum())
    loss, tg = torch_loss_and_grads(fn, {"x": x, "a": a, "b": b})
    assert_close(model.forward()["L"], loss, 0, 0, "loss vs torch")
    assert_close(grads["x"], tg["x"], 0, 0, "d/dx vs torch")
    # relu' + abs' + step (from x * step(x)) + is_zero (from x * is_zero(x)); the indicators add 0
    assert_close(grads["x"], [-1, 1, 1, 3, -1], 0, 0, "d/dx")
    assert_close(grads["a"], tg["a"], 0, 0, "d/da vs torch")
    assert_close(grads["a"], [1, 0, 1], 0, 0, "d/da: only a * eq(a, b) contributes")
    assert_close(grads["b"], [0, 0, 0], 0, 0, "d/db: eq has zero gradient")


TIES = """
input v[4] = [1, 3, 3, 2]
input M[2, 3] = [[5, 5, 1], [2, 7, 7]]
input N[3, 2] = [[4, 1], [4, 1], [0, 1]]
L = max(v) + sum(max(M, axis=1) * [1, 2]) + sum(max(N, axis=0) * [3, 5]) + max(N)
grad L wrt v, M, N
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_max_ties_share_gradient_evenly(engine):
    grads = compile_spec(TIES, engine).grad()
    fn = lambda v, M, N: (v.amax() + wsum(M.amax(dim=1), tt([1.0, 2.0]))  # noqa: E731
                          + wsum(N.amax(dim=0), tt([3.0, 5.0])) + N.amax())
    values = {"v": [1.0, 3, 3, 2], "M": [[5.0, 5, 1], [2, 7, 7]], "N": [[4.0, 1], [4, 1], [0, 1]]}
    _, tg = torch_loss_and_grads(fn, values)
    for n in ("v", "M", "N"):
        assert_close(grads[n], tg[n], TORCH_RTOL, TORCH_ATOL, f"d/d{n} vs torch.amax")
    assert_close(grads["v"], [0, 0.5, 0.5, 0], 0, 0, "a tie of two shares the gradient evenly")
    # column 0 of N: a tie of two (weight 3) plus max(N) = 4 twice; column 1: a tie of three (weight 5)
    assert_close(grads["N"], [[2, 5 / 3], [2, 5 / 3], [0, 5 / 3]], 1e-15, 0, "ties along axis 0 and overall")


STABLE = """
input z[3] = [1000, 1001, 1002]
input Z[2, 3] = [[1000, 1001, 1002], [-1000, -1001, -1002]]
target k = 2
target t[3] = [0, 1, 0]
target K[2] = [0, 2]
input u[3]
L1 = softmax_ce(z, k)
L2 = softmax_ce(z, t)
L3 = softmax_ce(Z, K)
L4 = logsumexp(z)
L5 = sum(u * log_softmax(z))
L = L1 + L2 + L3 + L4 + L5
grad L wrt z, Z, u, t
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_stable_softmax_family_on_huge_logits(engine):
    model = compile_spec(STABLE, engine)
    u = np.array([0.3, -0.2, 1.0])
    values, grads = model.forward(u=u), model.grad(u=u)
    torch_terms = {
        "L1": lambda z, Z, u, t, k, K: F.cross_entropy(z, k),
        "L2": lambda z, Z, u, t, k, K: F.cross_entropy(z, t),
        "L3": lambda z, Z, u, t, k, K: F.cross_entropy(Z, K),
        "L4": lambda z, Z, u, t, k, K: torch.logsumexp(z, -1),
        "L5": lambda z, Z, u, t, k, K: wsum(u, torch.log_softmax(z, -1)),
    }
    inputs = {"z": [1000.0, 1001, 1002], "Z": [[1000.0, 1001, 1002], [-1000, -1001, -1002]], "u": u,
              "t": [0.0, 1, 0], "k": 2, "K": [0, 2]}
    for term, fn in torch_terms.items():
        loss, _ = torch_loss_and_grads(fn, inputs, ("k", "K"))
        assert np.isfinite(values[term]), term
        assert_close(values[term], loss, TORCH_RTOL, TORCH_ATOL, f"{term} vs torch")
    _, tg = torch_loss_and_grads(lambda **kw: sum(fn(**kw) for fn in torch_terms.values()), inputs, ("k", "K"))
    for n in ("z", "Z", "u", "t"):
        assert np.all(np.isfinite(grads[n])), n
        assert_close(grads[n], tg[n], TORCH_RTOL, TORCH_ATOL, f"d/d{n} vs torch")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("loss, z, y", [
    ("bce_logits(z, y, reduce=sum)", [800, -800, 800, -800], [1, 0, 0, 1]),
    # computed as the logits form: bce on sigmoid(z) rounded to 0 or 1 would be inf
    ("bce(sigmoid(z), y, reduce=sum)", [40, -40, 0.5, -2], [0, 1, 1, 0]),
])
def test_binary_cross_entropy_of_saturated_logits_is_finite_and_matches_torch(engine, loss, z, y):
    model = compile_spec(f"input z[4] = {z}\ntarget y[4] = {y}\nL = {loss}\ngrad L wrt z, y\n", engine)
    value, grads = model.forward()["L"], model.grad()
    want, tg = torch_loss_and_grads(lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="sum"),
                                    {"z": [float(v) for v in z], "y": [float(v) for v in y]})
    assert want > 80  # the saturated terms, each about |z|
    assert np.isfinite(value) and np.all(np.isfinite(grads["z"])) and np.all(np.isfinite(grads["y"]))
    assert_close(value, want, TORCH_RTOL, TORCH_ATOL, "loss vs torch")
    assert_close(grads["z"], tg["z"], TORCH_RTOL, TORCH_ATOL, "d/dz vs torch")
    assert_close(grads["y"], tg["y"], TORCH_RTOL, TORCH_ATOL, "d/dy vs torch")


@pytest.mark.parametrize("engine", ENGINES)
def test_bce_of_a_named_sigmoid_keeps_its_gradient(engine):
    """A named probability is a node of the graph: dL/dp is bce's own, -y/p + (1-y)/(1-p)."""
    model = compile_spec("input z = 0.5\ntarget y = 1\np = sigmoid(z)\nL = bce(p, y)\ngrad L wrt p, z\n", engine)
    p = 1 / (1 + np.exp(-0.5))
    grads = model.grad()
    assert_close(grads["p"], -1 / p, 1e-12, 0.0, "dL/dp")
    assert_close(grads["z"], p - 1, 1e-12, 0.0, "dL/dz")


DIV0 = """
input a = 1
input b = 0
input u[2] = [1, -1]
input v[2] = [0, 2]
q = a / b
L = sigmoid(q) + sum(u / v)
grad L wrt a, b, u, v
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_division_by_zero_is_inf_not_an_error(engine):
    """A scalar divided by zero is inf, and its gradients inf or nan, as in torch and NumPy;
    compiled code must not raise Python's ZeroDivisionError."""
    model = compile_spec(DIV0, engine)
    values, grads = model.forward(), model.grad()
    inputs = {"a": 1.0, "b": 0.0, "u": [1.0, -1.0], "v": [0.0, 2.0]}
    loss, tg = torch_loss_and_grads(lambda a, b, u, v: torch.sigmoid(a / b) + (u / v).sum(), inputs)
    np.testing.assert_array_equal(values["q"], np.inf)
    np.testing.assert_array_equal(values["L"], loss)
    for n in inputs:
        np.testing.assert_array_equal(grads[n], tg[n], err_msg=n)


JACOBIAN = SPEC_DIR / "jacobian.nn"
LAYER = """
input x[3]
param W[2, 3] = [[0.5, -1, 0.25], [1.5, 0.5, -2]]
param b[2] = [0.1, -0.3]
y = tanh(W x + b)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_jacobian_matches_torch(engine):
    model = graphdsl.load(JACOBIAN, engine=engine)
    for x in ([1.0, 2.0], [-0.3, 0.8]):
        jac = model.jacobian("f", "x", x=x)
        expected = torch.autograd.functional.jacobian(
            lambda x: torch.stack([torch.sin(torch.pi * x[1]) / torch.pi, x[1] ** 2 * torch.exp(x[0] - 1),
                                   x[0] * x[1]]),
            tt(x))
        assert_close(jac, expected.numpy(), TORCH_RTOL, TORCH_ATOL, f"d f / d x at {x}")

    layer = compile_spec(LAYER, engine)
    x = np.array([0.4, -1.0, 0.9])
    W, b = layer.params["W"], layer.params["b"]
    tW, tb, tx = tt(W), tt(b), tt(x)
    assert_close(layer.jacobian("y", "x", x=x),
                 torch.autograd.functional.jacobian(lambda x: torch.tanh(tW @ x + tb), tx).numpy(),
                 TORCH_RTOL, TORCH_ATOL, "d y / d x")
    assert_close(layer.jacobian("y", "W", x=x),
                 torch.autograd.functional.jacobian(lambda W: torch.tanh(W @ tx + tb), tW).numpy(),
                 TORCH_RTOL, TORCH_ATOL, "d y / d W, shaped [2, 2, 3]")


@pytest.mark.parametrize("engine", ENGINES)
def test_repeated_calls_do_not_accumulate(engine):
    model = graphdsl.load(SPEC_DIR / "backprop_2_2_1.nn", engine=engine)
    params = {n: v.copy() for n, v in model.params.items()}
    first = model.grad()
    second = model.grad()
    model.grad(x=[0.5, -2.0])
    model.forward(x=[3.0, 1.0])
    third = model.grad()
    for n in first:
        np.testing.assert_array_equal(second[n], first[n], err_msg=n)
        np.testing.assert_array_equal(third[n], first[n], err_msg=n)
    for n in params:
        np.testing.assert_array_equal(model.params[n], params[n], err_msg=f"param {n} changed")


# -- compiled kernels equal the reference interpreter -------------------------

def assert_same(numba_out: dict, numpy_out: dict, what: str):
    assert numba_out.keys() == numpy_out.keys(), what
    for n in numpy_out:
        assert_close(numba_out[n], numpy_out[n], 1e-12, 0, f"{what}: {n}")


def unvalued_inputs(model) -> dict:
    """An example for the inputs and targets a training spec leaves to its data: class 0 for
    class indices, standard normal draws otherwise."""
    g, rng = model.spec.graph, np.random.default_rng(0)
    missing = [n for n in model.spec.names_of("input", "target") if g.names[n] not in g.values]
    return {n: np.zeros(g.nodes[g.names[n]].shape) if n in model.class_indices
            else rng.normal(size=g.nodes[g.names[n]].shape) for n in missing}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_numba_equals_numpy(path):
    compiled, reference = graphdsl.load(path, engine="numba"), graphdsl.load(path, engine="numpy")
    examples = unvalued_inputs(reference)
    assert_same(compiled.forward(**examples), reference.forward(**examples), "forward")
    if reference.loss is not None:
        assert_same(compiled.grad(**examples), reference.grad(**examples), "grad")
    for r in reference.spec.requests:
        if r.kind == "jacobian":
            inputs = {} if r.at is None else {r.names[1]: r.at}
            assert_close(compiled.jacobian(*r.names, **inputs), reference.jacobian(*r.names, **inputs),
                         1e-12, 0, f"jacobian {r.names}")


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_power_gradients_at_a_zero_base_are_their_limits(engine):
    """At x = 0: x^0 has slope 0 and x^1 slope 1 (b x^(b-1) would be 0 * inf and 1 * 0^0), and
    d(x^b)/db is 0 for b >= 0 (a^b log a would be 0 * log 0), as in PyTorch."""
    spec = "param x = 0\nparam b = 2\nparam c = 0\nparam d = 1\nL = x ^ 0 + x ^ b + 3 * x ^ c + x ^ d\ngrad L wrt x, b, c, d\n"
    got = graphdsl.compile(spec, engine=engine).grad()
    x, b, c, d = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.0, 2.0, 0.0, 1.0))
    (x ** 0 + x ** b + 3 * x ** c + x ** d).backward()
    for name, leaf in zip("xbcd", (x, b, c, d)):
        assert got[name] == leaf.grad.item(), (name, got[name], leaf.grad.item())
    assert got["x"] == 1.0  # only x^d has a slope at 0


def test_a_power_at_a_zero_base_leaves_no_value_that_is_not_finite():
    """--detect-anomaly walks every value of the gradient: 0^2's gradient needs none that is inf or nan."""
    from graphdsl.tools.anomaly import detect_anomaly

    model = graphdsl.compile("param a[2] = [0, 1]\nparam b = 2\ny = sum(a ^ b)\ngrad y wrt a, b\n", engine="numpy")
    assert detect_anomaly(model) is None
    assert list(model.grad()["a"]) == [0.0, 2.0] and model.grad()["b"] == np.log(1.0)  # 0^2 log 0 is 0; 1^2 log 1 = 0


def test_gradcheck_fails_a_finite_gradient_against_an_infinite_difference():
    """0^b jumps at b = 0: the difference quotient is -inf, which no finite gradient agrees with."""
    from graphdsl.tools.gradcheck import gradcheck

    model = graphdsl.compile("param a = 0\nparam b = 0\ny = a ^ b\ngrad y wrt b\n", engine="numpy")
    errors, bad = gradcheck(model)
    assert [m.name for m in bad] == ["b"] and errors["b"] == np.inf
