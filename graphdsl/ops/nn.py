"""Neural-network ops: the stable softmax family (over the last axis), picking
a class's entry by index, and 1-D convolution (cross-correlation)."""
from __future__ import annotations

import numpy as np

from ..errors import CLASS_INDEX_PROBLEM, ClassIndexError
from . import ShapeError, fmt_shape, register


def last_axis(x: tuple, **_) -> tuple:
    if not x:
        raise ShapeError("needs a vector or matrix, not a scalar")
    return x


def lse_ref(x):
    m = np.max(x, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def softmax_ref(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def along_last(g, x):
    """Sum g over the last axis and copy it back, as `sum(g, keepdims)` would."""
    last = len(x.shape) - 1
    return g.op("sum", axis=last).op("expand", shape=x.shape, axis=last)


register("softmax", shape=last_axis, ref=softmax_ref, code="K.softmax({0})",
         vjp=lambda g, y, x: (y * (g - along_last(g * y, x)),),
         doc="e^x / sum(e^x) over the last axis, max-shifted for stability")
register("log_softmax", shape=last_axis, ref=lambda x: x - lse_ref(x)[..., None],
         code="K.log_softmax({0})", vjp=lambda g, y, x: (g - y.op("exp") * along_last(g, x),),
         doc="x - logsumexp(x) over the last axis, computed stably")


def logsumexp_code(args, attrs, in_shapes, out_shape):
    # A vector's logsumexp is a scalar, so a float, like every scalar in generated code.
    if len(in_shapes[0]) == 1:
        return f"K.logsumexp_row({args[0]})"
    return f"K.logsumexp({args[0]})"


register("logsumexp", shape=lambda x: last_axis(x)[:-1], ref=lse_ref, code=logsumexp_code,
         vjp=lambda g, y, x: (g.op("expand", shape=x.shape, axis=len(x.shape) - 1)
                              * (x - y.op("expand", shape=x.shape, axis=len(x.shape) - 1)).op("exp"),),
         doc="log(sum(e^x)) over the last axis, max-shifted for stability")


def pick_shape(z: tuple, k: tuple) -> tuple:
    if not z or z[:-1] != k:
        want = fmt_shape(z[:-1]) if z else "a vector or matrix of scores"
        raise ShapeError(f"class indices {fmt_shape(k)} do not fit scores {fmt_shape(z)} "
                         f"(expected indices of shape {want})")
    return k


def not_class_indices(k, classes: int) -> np.ndarray:
    """Where k is not a whole number from 0 to classes - 1."""
    k = np.asarray(k)
    return (k != np.round(k)) | (k < 0) | (k >= classes)


def class_indices(k, classes: int) -> np.ndarray:
    if np.any(not_class_indices(k, classes)):
        raise ClassIndexError(CLASS_INDEX_PROBLEM)
    return np.asarray(k).astype(np.int64)


def pick_ref(z, k):
    k = class_indices(k, z.shape[-1])
    return np.take_along_axis(z, k[..., None], axis=-1)[..., 0]


def pick_code(args, attrs, in_shapes, out_shape):
    if len(in_shapes[0]) == 1:
        return f"{args[0]}[K.class_index({args[1]}, {in_shapes[0][0]})]"
    return f"K.pick({args[0]}, {args[1]})"


register("pick", shape=pick_shape, ref=pick_ref, code=pick_code,
         vjp=lambda g, y, z, k: (k.op("onehot", classes=z.shape[-1])
                                 * g.op("expand", shape=z.shape, axis=len(z.shape) - 1), None),
         doc="z[k] along the last axis, for class indices k")


def onehot_ref(k, *, classes):
    return np.eye(classes)[class_indices(k, classes)]


def onehot_code(args, attrs, in_shapes, out_shape):
    if in_shapes[0] == ():
        return f"K.onehot_row({args[0]}, {attrs['classes']})"
    return f"K.onehot({args[0]}, {attrs['classes']})"


register("onehot", shape=lambda k, *, classes: k + (classes,), ref=onehot_ref, code=onehot_code, vjp=lambda g, y, k, classes: (None,),
         doc="one-hot rows for class indices; zero gradient")


def conv1d_shape(x: tuple, k: tuple, *, stride) -> tuple:
    if len(x) != 1 or len(k) != 1:
        raise ShapeError(f"conv1d takes a vector signal and a vector kernel, not {fmt_shape(x)} and {fmt_shape(k)}")
    if k[0] > x[0]:
        raise ShapeError(f"the kernel ({k[0]} taps) is longer than the signal ({x[0]} entries)")
    return ((x[0] - k[0]) // stride + 1,)


def conv1d_ref(x, k, *, stride):
    m = (len(x) - len(k)) // stride + 1
    return np.array([np.dot(k, x[i * stride:i * stride + len(k)]) for i in range(m)])


def conv1d_dx_ref(g, k, *, n, stride):
    dx = np.zeros(n)
    for i, gi in enumerate(g):
        dx[i * stride:i * stride + len(k)] += gi * k
    return dx


def conv1d_dk_ref(g, x, *, d, stride):
    return np.array([sum(g[i] * x[i * stride + j] for i in range(len(g))) for j in range(d)])


register("conv1d", shape=conv1d_shape, ref=conv1d_ref, code="K.conv1d({0}, {1}, {stride})",
         vjp=lambda g, y, x, k, stride: (g.op("conv1d_dx", k, n=x.shape[0], stride=stride),
                                          g.op("conv1d_dk", x, d=k.shape[0], stride=stride)),
         doc="z_i = sum_j k_j x_(i*stride + j): valid cross-correlation, no padding")
register("conv1d_dx", shape=lambda g, k, *, n, stride: (n,), ref=conv1d_dx_ref,
         code="K.conv1d_dx({0}, {1}, {n}, {stride})", backward_only=True,
         doc="gradient of conv1d with respect to its signal")
register("conv1d_dk", shape=lambda g, x, *, d, stride: (d,), ref=conv1d_dk_ref,
         code="K.conv1d_dk({0}, {1}, {d}, {stride})", backward_only=True,
         doc="gradient of conv1d with respect to its kernel")
