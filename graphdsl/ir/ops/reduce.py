"""Reductions (sum, max, min) and the two shape-restoring ops their gradients need."""
from __future__ import annotations

from functools import partial

import numpy as np

from graphdsl.backend.loops import accumulate, entry, index, ivars, nest, read
from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.ops.batching import Unbatchable, flat, unbatchable
from graphdsl.ir.ops.registry import Call, no_mults, register

ALONG_AXIS = Call(("x",), {"axis": ("axis", None)})  # `sum(x)`, or `sum(x, axis=k)`


def check_axis(shape: tuple, axis) -> None:
    if axis is not None and not 0 <= axis < len(shape):
        raise ShapeError(f"axis {axis} does not exist in a {fmt_shape(shape)} value "
                         f"(it has {len(shape)} {'axis' if len(shape) == 1 else 'axes'}, counted from 0; "
                         f"axis=-1 is the last)")


def reduced(shape: tuple, axis=None) -> tuple:
    check_axis(shape, axis)
    return () if axis is None else shape[:axis] + shape[axis + 1:]


def reduce_loops(out: str, args: list, in_shapes: list, dims: tuple, axis=None, start: str = "0.0",
                 combine: str | None = None) -> list:
    """A sum (or a fold by `combine` from `start`) of everything into a scalar, or along one axis."""
    (s,) = in_shapes
    if axis is None or dims == ():
        return accumulate(out, read(args[0], s, ivars(len(s))), s, 0, start, combine)
    kept = ivars(len(dims))
    full = kept[:axis] + [f"i{len(dims)}"] + kept[axis:]
    return nest(dims, accumulate(entry(out, dims), read(args[0], s, full), (s[axis],), len(dims), start, combine))


def reduction_batch(node, args: list, flags: list, size: int):
    """Each example's entries, or its axis, are one axis further in."""
    axis = node.kw.get("axis")
    if axis is None:
        return flat(args[0], True).op(node.op, axis=1)
    return args[0].op(node.op, axis=axis + 1)


register("sum", doc="sum of all entries, or along axis=k", shape=reduced,
         ref=lambda x, axis=None: np.sum(x, axis=axis),
         vjp=lambda g, y, x, axis=None: (g.op("expand", shape=x.shape, axis=axis),),
         emit=reduce_loops, batch=reduction_batch, mults=no_mults, call=ALONG_AXIS, reads_fused=True)


def extreme_vjp(g, y, x, axis=None):
    """Of max and min: ties share the gradient evenly, as in JAX and PyTorch's amax and amin."""
    mask = x.op("eq", y.op("expand", shape=x.shape, axis=axis))
    count = mask.op("sum", axis=axis).op("expand", shape=x.shape, axis=axis)
    return (g.op("expand", shape=x.shape, axis=axis) * mask / count,)


def max_batch(node, args: list, flags: list, size: int):
    """Refuses max along an axis of a per-example matrix, which tests/test_batch.py's NO_RULE holds
    refused; its loops would batch it as min's do."""
    if node.kw.get("axis") is not None and len(node.shape) > 0:
        raise Unbatchable("max along an axis of a per-example matrix")
    return reduction_batch(node, args, flags, size)


# np.maximum and np.minimum keep a nan, as np.max and np.min do
register("max", doc="largest entry, or along axis=k; ties share the gradient", shape=reduced,
         ref=lambda x, axis=None: np.max(x, axis=axis), vjp=extreme_vjp,
         emit=partial(reduce_loops, start="-np.inf", combine="np.maximum"), batch=max_batch, mults=no_mults,
         call=ALONG_AXIS, reads_fused=True)
register("min", doc="smallest entry, or along axis=k; ties share the gradient", shape=reduced,
         ref=lambda x, axis=None: np.min(x, axis=axis), vjp=extreme_vjp,
         emit=partial(reduce_loops, start="np.inf", combine="np.minimum"), batch=reduction_batch, mults=no_mults,
         call=ALONG_AXIS, reads_fused=True)


def expand_shape(g: tuple, *, shape, axis=None) -> tuple:
    if reduced(shape, axis) != g:
        raise ShapeError(f"cannot expand {fmt_shape(g)} to {fmt_shape(shape)}")
    return shape


def expand_ref(g, *, shape, axis=None):
    return np.broadcast_to(g if axis is None else np.expand_dims(g, axis), shape).copy()


def expand_read(args: list, in_shapes: list, idx: list, axis=None, **_) -> tuple:
    """Its operand's entry for loop indices `idx`: every index but `axis` (none for a scalar)."""
    return read(args[0], in_shapes[0], idx if axis is None else idx[:axis] + idx[axis + 1:])


def expand_loops(out: str, args: list, in_shapes: list, dims: tuple, **attrs) -> list:
    stmts, value = expand_read(args, in_shapes, ivars(len(dims)), **attrs)
    return nest(dims, stmts + [f"{entry(out, dims)} = {value}"])


register("expand", doc="copy a reduced value back along the reduced axis (the gradient of sum)",
         shape=expand_shape, ref=expand_ref, vjp=lambda g, y, x, shape, axis=None: (g.op("sum", axis=axis),),
         emit=expand_loops, batch=unbatchable, mults=no_mults, call=None, reads_fused=True,
         fused_read=expand_read)


def summed_axes(big: tuple, small: tuple) -> list:
    """Axes of `big` that NumPy broadcasting created from `small`."""
    lead = len(big) - len(small)
    return list(range(lead)) + [lead + i for i, d in enumerate(small) if d == 1 and big[lead + i] != 1]


def unbroadcast_shape(g: tuple, *, shape) -> tuple:
    if np.broadcast_shapes(g, shape) != g:
        raise ShapeError(f"{fmt_shape(shape)} does not broadcast to {fmt_shape(g)}")
    return shape


def unbroadcast_ref(g, *, shape):
    return np.sum(g, axis=tuple(summed_axes(g.shape, shape))).reshape(shape)


def unbroadcast_loops(out: str, args: list, in_shapes: list, dims: tuple, **_) -> list:
    """Zero `out` (of the operand's shape `dims`), then add every entry where it came from."""
    (s,) = in_shapes
    if dims == ():
        return reduce_loops(out, args, in_shapes, dims)
    idx = ivars(len(s))
    stmts, value = read(args[0], s, idx)
    return [f"{out}[...] = 0.0", *nest(s, stmts + [f"{index(out, dims, idx)} += {value}"])]


register("unbroadcast", doc="sum a broadcast cotangent back to its operand's shape", shape=unbroadcast_shape,
         ref=unbroadcast_ref, vjp=None, emit=unbroadcast_loops, batch=unbatchable, mults=no_mults, call=None, reads_fused=True)
