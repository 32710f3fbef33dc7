"""Reductions (sum, max) and the two shape-restoring ops their gradients need."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.ops.registry import register


def check_axis(shape: tuple, axis) -> None:
    if axis is not None and not 0 <= axis < len(shape):
        raise ShapeError(f"axis {axis} does not exist in a {fmt_shape(shape)} value "
                         f"(it has {len(shape)} {'axis' if len(shape) == 1 else 'axes'})")


def reduced(shape: tuple, axis=None) -> tuple:
    check_axis(shape, axis)
    return () if axis is None else shape[:axis] + shape[axis + 1:]


register("sum", shape=reduced, ref=lambda x, axis=None: np.sum(x, axis=axis), code=None,
         vjp=lambda g, y, x, axis=None: (g.op("expand", shape=x.shape, axis=axis),),
         doc="sum of all entries, or along one axis")


def max_vjp(g, y, x, axis=None):
    # Ties share the gradient evenly, as in JAX and PyTorch's amax.
    mask = x.op("eq", y.op("expand", shape=x.shape, axis=axis))
    count = mask.op("sum", axis=axis).op("expand", shape=x.shape, axis=axis)
    return (g.op("expand", shape=x.shape, axis=axis) * mask / count,)


def max_code(args, attrs, in_shapes, out_shape):
    axis = attrs.get("axis")
    if axis is None or len(in_shapes[0]) == 1:
        return f"np.max({args[0]})"
    return f"K.max_axis({args[0]}, {axis})"


def max_shape(x: tuple, axis=None) -> tuple:
    if axis is not None and len(x) > 2:
        raise ShapeError("max along an axis works on vectors and matrices")
    return reduced(x, axis)


register("max", shape=max_shape, ref=lambda x, axis=None: np.max(x, axis=axis), code=max_code,
         vjp=max_vjp, doc="largest entry, or largest along one axis; ties share the gradient")


def expand_shape(g: tuple, *, shape, axis=None) -> tuple:
    if reduced(shape, axis) != g:
        raise ShapeError(f"cannot expand {fmt_shape(g)} to {fmt_shape(shape)}")
    return shape


def expand_ref(g, *, shape, axis=None):
    return np.broadcast_to(g if axis is None else np.expand_dims(g, axis), shape).copy()


register("expand", shape=expand_shape, ref=expand_ref, code=None,
         vjp=lambda g, y, x, shape, axis=None: (g.op("sum", axis=axis),),
         doc="copy a reduced value back along the reduced axis (the gradient of sum)")


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


register("unbroadcast", shape=unbroadcast_shape, ref=unbroadcast_ref, code=None,
         vjp=None, backward_only=True, doc="sum a broadcast cotangent back to its operand's shape")
