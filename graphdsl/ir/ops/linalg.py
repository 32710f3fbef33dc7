"""Matrix products and transposes. Vectors are 1-D and act as columns: `W x`
is a matrix times a vector, `x' W` (= `x W`) a vector times a matrix."""
from __future__ import annotations

import math

import numpy as np

from graphdsl.backend.loops import accumulate, blas, entry, ivars, nest
from graphdsl.ir.shapes import ShapeError, fmt_shape, plural
from graphdsl.ir.ops.batching import Unbatchable
from graphdsl.ir.ops.registry import UNARY, Call, mult_per_entry, no_mults, register

KIND = {1: "vector", 2: "matrix"}


def matmul_shape(a: tuple, b: tuple) -> tuple:
    if len(a) not in KIND or len(b) not in KIND:
        raise ShapeError(f"a matrix product needs vectors or matrices, not {fmt_shape(a)} and {fmt_shape(b)}")
    inner_a = a[-1]
    inner_b = b[0]
    if inner_a != inner_b:
        left = f"the {KIND[len(a)]} {fmt_shape(a)} has {plural(inner_a, 'column') if len(a) == 2 else plural(inner_a, 'entry', 'entries')}"
        right = f"the {KIND[len(b)]} {fmt_shape(b)} has {plural(inner_b, 'row') if len(b) == 2 else plural(inner_b, 'entry', 'entries')}"
        raise ShapeError(f"{left} but {right}")
    return a[:-1] + b[1:]


def matmul_vjp(g, y, a, b):
    ra, rb = len(a.shape), len(b.shape)
    if ra == 2 and rb == 2:
        return g @ b.T, a.T @ g
    if ra == 2:
        return g.op("outer", b), a.T @ g
    if rb == 2:
        return b @ g, a.op("outer", g)
    return g * b, g * a


def matmul_loops(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    a, b = args
    sa, sb = in_shapes
    inner = sa[-1]
    if blas(in_shapes, dims):
        return [f"K.dot({a}, {b}, {out})"]
    rows, cols = ivars(len(sa) - 1), ivars(len(sb) - 1, len(sa) - 1)
    k = f"i{len(dims)}"
    value = f"{a}[{', '.join(rows + [k])}] * {b}[{', '.join([k] + cols)}]"
    return nest(dims, accumulate(entry(out, dims), ([], value), (inner,), len(dims)))


def matmul_batch(node, args: list, flags: list, size: int):
    """One product for the whole batch where the per-example operand is a vector (or the left matrix)."""
    (a, b), (ba, bb) = args, flags
    ra, rb = len(a.shape) - ba, len(b.shape) - bb
    if ba and bb:
        if ra == rb == 1:
            return (a * b).op("sum", axis=1)
        raise Unbatchable("a product of two per-example matrices")
    if bb:
        if rb != 1:
            raise Unbatchable("a product with a per-example matrix on the right")
        return b @ a.T   # W x for each row x: X W'
    if ra == 1:
        return a @ b                                        # x' W for each row x: X W
    rows = a.op("reshape", shape=(a.shape[0] * a.shape[1], a.shape[2]))
    out = rows @ b                                          # A b for each matrix A: stack them
    return out.op("reshape", shape=(a.shape[0], a.shape[1]) + b.shape[1:])


register("matmul", doc="matrix product (`A B`, `W x`, `x' W`, `u v` for a dot product)",
         shape=matmul_shape, ref=np.matmul, vjp=matmul_vjp, emit=matmul_loops, batch=matmul_batch,
         mults=lambda args, out: math.prod(out) * args[0][-1],  # m x k times k x n: m n k
         call=None, infix="@", blas=True)


def transpose_batch(node, args: list, flags: list, size: int):
    if len(node.shape) > 1:
        raise Unbatchable("a transposed per-example matrix")
    return args[0]


# code: only a scalar reaches it; an array's transpose is a view (the transpose of a C array
# reads in F order)
register("transpose", doc="transpose; a vector is its own transpose",
         shape=lambda x: x[::-1], ref=np.transpose, vjp=lambda g, y, x: (g.T,), code="{0}",
         batch=transpose_batch, mults=no_mults, call=UNARY, view=lambda arg, shape: f"{arg}.T")


def outer_shape(a: tuple, b: tuple) -> tuple:
    if len(a) != 1 or len(b) != 1:
        raise ShapeError(f"an outer product needs two vectors, not {fmt_shape(a)} and {fmt_shape(b)}")
    return a + b


def outer_loops(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    return nest(dims, [f"{out}[i0, i1] = {args[0]}[i0] * {args[1]}[i1]"])


def outer_batch(node, args: list, flags: list, size: int):
    u, v = args
    u = u.op("reshape", shape=u.shape + (1,))
    v = v.op("reshape", shape=v.shape[:1] + (1,) + v.shape[1:]) if flags[1] else v
    return u * v


register("outer", doc="outer product u v'", shape=outer_shape, ref=np.outer,
         vjp=lambda g, y, a, b: (g @ b, a @ g), emit=outer_loops, batch=outer_batch,
         mults=mult_per_entry, call=Call(("u", "v")))
