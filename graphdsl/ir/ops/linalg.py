"""Matrix products and transposes. Vectors are 1-D and act as columns: `W x`
is a matrix times a vector, `x' W` (= `x W`) a vector times a matrix."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape, plural
from graphdsl.ir.ops.registry import register

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


register("matmul", shape=matmul_shape, ref=np.matmul, code=None, vjp=matmul_vjp,
         doc="matrix product (`A B`, `W x`, `x' W`, `u v` for a dot product)")


# code: only a scalar reaches it; generated code views an array's transpose (codegen.view)
register("transpose", shape=lambda x: x[::-1], ref=np.transpose, code="{0}",
         vjp=lambda g, y, x: (g.T,),
         doc="transpose; a vector is its own transpose")


def outer_shape(a: tuple, b: tuple) -> tuple:
    if len(a) != 1 or len(b) != 1:
        raise ShapeError(f"an outer product needs two vectors, not {fmt_shape(a)} and {fmt_shape(b)}")
    return a + b


register("outer", shape=outer_shape, ref=np.outer, code=None,
         vjp=lambda g, y, a, b: (g @ b, a @ g), doc="outer product u v' of two vectors")
