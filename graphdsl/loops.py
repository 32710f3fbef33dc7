"""Explicit loop nests for generated code, for the ops that run hot in training.

Every shape is known when code is generated, so an op becomes plain loops with
constant trip counts writing into a buffer made once: Numba compiles those
quickly and runs them without allocating. Large matrix products go to BLAS.
"""
from __future__ import annotations

import numpy as np

BLAS_MIN = 4096  # multiply-adds from which np.dot (BLAS) beats a plain loop


def index(name: str, shape: tuple, idx: list) -> str:
    """`name[i0, i1]` for a value of `shape` read at the trailing loop indices (broadcasting)."""
    if shape == ():
        return name
    idx = idx[len(idx) - len(shape):]
    return f"{name}[{', '.join('0' if d == 1 else i for d, i in zip(shape, idx))}]"


def nest(shape: tuple, body: list, first: int = 0) -> list:
    """Loops over every index of `shape` (variables i<first>, i<first+1>, ...) around `body`."""
    lines = []
    for depth, size in enumerate(shape):
        lines.append("    " * depth + f"for i{first + depth} in range({size}):")
    return lines + ["    " * len(shape) + stmt for stmt in body]


def ivars(rank: int, first: int = 0) -> list:
    return [f"i{first + k}" for k in range(rank)]


def elementwise(code, out: str, args: list, in_shapes: list, shape: tuple) -> list:
    idx = ivars(len(shape))
    expr = code([index(a, s, idx) for a, s in zip(args, in_shapes)], {}, in_shapes, ())
    return nest(shape, [f"{index(out, shape, idx)} = {expr}"])


def accumulate(out: str, value: str, over: tuple, first: int) -> list:
    """out = the sum of `value` over the indices of `over` (a local sum, so out may be a scalar)."""
    return ["acc = 0.0", *nest(over, [f"acc += {value}"], first), f"{out} = acc"]


def matmul(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    a, b = args
    sa, sb = in_shapes
    inner = sa[-1]
    if int(np.prod(sa)) * (sb[-1] if len(sb) == 2 else 1) >= BLAS_MIN and dims != ():
        return [f"np.dot({a}, {b}, {out})"]
    rows, cols = ivars(len(sa) - 1), ivars(len(sb) - 1, len(sa) - 1)
    k = f"i{len(dims)}"
    value = f"{a}[{', '.join(rows + [k])}] * {b}[{', '.join([k] + cols)}]"
    target = out if dims == () else f"{out}[{', '.join(rows + cols)}]"
    return nest(dims, accumulate(target, value, (inner,), len(dims)))


def outer(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    return nest(dims, [f"{out}[i0, i1] = {args[0]}[i0] * {args[1]}[i1]"])


def total(out: str, args: list, in_shapes: list, dims: tuple, axis=None) -> list:
    """sum: of everything into a scalar, or along one axis."""
    (s,) = in_shapes
    if axis is None or dims == ():
        return accumulate(out, index(args[0], s, ivars(len(s))), s, 0)
    kept = ivars(len(dims))
    full = kept[:axis] + [f"i{len(dims)}"] + kept[axis:]
    return nest(dims, accumulate(f"{out}[{', '.join(kept)}]", f"{args[0]}[{', '.join(full)}]",
                                  (s[axis],), len(dims)))


def expand(out: str, args: list, in_shapes: list, dims: tuple, axis=None, **_) -> list:
    idx = ivars(len(dims))
    source = args[0] if axis is None else index(args[0], in_shapes[0], idx[:axis] + idx[axis + 1:])
    return nest(dims, [f"{out}[{', '.join(idx)}] = {source}"])


def unbroadcast(out: str, args: list, in_shapes: list, dims: tuple, **_) -> list:
    """Sum a broadcast value back to its operand's shape `dims`: zero it, then add every entry where it came from."""
    (s,) = in_shapes
    if dims == ():
        return total(out, args, in_shapes, dims)
    idx = ivars(len(s))
    return [f"{out}[...] = 0.0", *nest(s, [f"{index(out, dims, idx)} += {args[0]}[{', '.join(idx)}]"])]


# op -> loop emitter(out, args, in_shapes, out_shape, **attrs)
LOOPS = {
    "matmul": matmul,
    "outer": outer,
    "sum": total,
    "expand": expand,
    "unbroadcast": unbroadcast,
}
