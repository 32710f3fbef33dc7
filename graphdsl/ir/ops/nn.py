"""Neural-network ops: the stable softmax family (over the last axis), picking
a class's entry by index, and 1-D and 2-D convolution (cross-correlation)."""
from __future__ import annotations

import math

import numpy as np

from graphdsl.backend.loops import entry, index, ivars, math_module, nest
from graphdsl.errors import CLASS_INDEX_PROBLEM, ClassIndexError
from graphdsl.ir.shapes import ShapeError, fmt_shape, plural
from graphdsl.ir.ops.batching import per_row, unbatchable
from graphdsl.ir.ops.registry import UNARY, Call, no_mults, register


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


register("softmax", doc="e^x / sum(e^x) over the last axis, max-shifted for stability", shape=last_axis,
         ref=softmax_ref, vjp=lambda g, y, x: (y * (g - along_last(g * y, x)),), code="K.softmax({0})",
         batch=per_row, mults=no_mults, call=UNARY)
register("log_softmax", doc="x - logsumexp(x) over the last axis, computed stably", shape=last_axis,
         ref=lambda x: x - lse_ref(x)[..., None], vjp=lambda g, y, x: (g - y.op("exp") * along_last(g, x),),
         code="K.log_softmax({0})", batch=per_row, mults=no_mults, call=UNARY)


def logsumexp_loops(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    """Each row's largest entry, then the log of the sum of e^(x - largest), for stability. A
    short row is unrolled and vectorised across rows, so exp comes from vecmath by the size of
    the whole input, not of a row."""
    (s,) = in_shapes
    x = f"{args[0]}[{', '.join(ivars(len(s)))}]"
    row = (s[-1],)
    return nest(dims, ["top = -np.inf", *nest(row, [f"top = max(top, {x})"], len(dims)),
                       "acc = 0.0", *nest(row, [f"acc += {math_module(s)}.exp({x} - top)"], len(dims)),
                       f"{entry(out, dims)} = top + np.log(acc)"])


register("logsumexp", doc="log(sum(e^x)) over the last axis, max-shifted for stability",
         shape=lambda x: last_axis(x)[:-1], ref=lse_ref,
         vjp=lambda g, y, x: (g.op("expand", shape=x.shape, axis=len(x.shape) - 1)
                              * (x - y.op("expand", shape=x.shape, axis=len(x.shape) - 1)).op("exp"),),
         emit=logsumexp_loops, batch=per_row, mults=no_mults, call=UNARY)


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


def pick_loops(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    """z[..., k] along the last axis; K.class_index stops at an index that is not a class."""
    (z, k), (sz, sk) = args, in_shapes
    rows = ivars(len(dims))
    cls = f"K.class_index({index(k, sk, rows)}, {sz[-1]})"
    return nest(dims, [f"{entry(out, dims)} = {z}[{', '.join(rows + [cls])}]"])


register("pick", doc="z[k] along the last axis, for class indices k", shape=pick_shape, ref=pick_ref,
         vjp=lambda g, y, z, k: (k.op("onehot", classes=z.shape[-1])
                                 * g.op("expand", shape=z.shape, axis=len(z.shape) - 1), None),
         emit=pick_loops, batch=per_row, mults=no_mults, call=None, class_index=1)


def onehot_ref(k, *, classes):
    return np.eye(classes)[class_indices(k, classes)]


def onehot_loops(out: str, args: list, in_shapes: list, dims: tuple, classes: int) -> list:
    """One-hot rows for class indices (checked by K.class_index)."""
    rows = ivars(len(dims) - 1)
    j = f"i{len(rows)}"
    fill = nest((classes,), [f"{out}[{', '.join(rows + [j])}] = 1.0 if {j} == cls else 0.0"], len(rows))
    return nest(dims[:-1], [f"cls = K.class_index({index(args[0], in_shapes[0], rows)}, {classes})", *fill])


register("onehot", doc="one-hot rows for class indices; zero gradient", shape=lambda k, *, classes: k + (classes,),
         ref=onehot_ref, vjp=lambda g, y, k, classes: (None,), emit=onehot_loops, batch=per_row, mults=no_mults,
         call=None)


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


register("conv1d", doc="valid 1-D cross-correlation z_i = sum_j k_j x_(i*stride+j); add a bias yourself",
         shape=conv1d_shape, ref=conv1d_ref,
         vjp=lambda g, y, x, k, stride: (g.op("conv1d_dx", k, n=x.shape[0], stride=stride),
                                          g.op("conv1d_dk", x, d=k.shape[0], stride=stride)),
         code="K.conv1d({0}, {1}, {stride})", batch=unbatchable,
         mults=lambda args, out: math.prod(out) * args[1][0],  # a kernel's taps per output
         call=Call(("x", "k"), {"stride": ("int", 1)}))
register("conv1d_dx", doc="gradient of conv1d with respect to its signal", shape=lambda g, k, *, n, stride: (n,),
         ref=conv1d_dx_ref, vjp=None, code="K.conv1d_dx({0}, {1}, {n}, {stride})", batch=unbatchable,
         mults=no_mults, call=None)
register("conv1d_dk", doc="gradient of conv1d with respect to its kernel", shape=lambda g, x, *, d, stride: (d,),
         ref=conv1d_dk_ref, vjp=None, code="K.conv1d_dk({0}, {1}, {d}, {stride})", batch=unbatchable,
         mults=no_mults, call=None)


def conv2d_shape(x: tuple, k: tuple, *, stride, padding) -> tuple:
    if len(x) != 3 or len(k) != 4:
        one_channel = " (an image of one channel is [1, height, width])" if len(x) == 2 else ""
        raise ShapeError("needs an image [channels, height, width] and kernels [count, channels, height, width], "
                         f"not {fmt_shape(x)} and {fmt_shape(k)}{one_channel}")
    if k[1] != x[0]:
        raise ShapeError(f"the image has {plural(x[0], 'channel')} but the kernels have {plural(k[1], 'channel')}")
    height, width = x[1] + 2 * padding, x[2] + 2 * padding
    if k[2] > height or k[3] > width:
        image = f"the image padded to {height} by {width}" if padding else f"the image ({height} by {width})"
        raise ShapeError(f"the kernels ({k[2]} by {k[3]}) are larger than {image}")
    return (k[0], (height - k[2]) // stride + 1, (width - k[3]) // stride + 1)


def windows(x, height, width, stride, padding):
    """The patch of x under each output position, as a view shaped [C, Ho, Wo, height, width]."""
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    return np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))[:, ::stride, ::stride]


def conv2d_ref(x, k, *, stride, padding):
    return np.einsum("fcij,chwij->fhw", k, windows(x, *k.shape[2:], stride, padding), optimize=True)


def conv2d_dx_ref(g, k, *, height, width, stride, padding):
    dx = np.zeros((k.shape[1], height + 2 * padding, width + 2 * padding))
    rows, cols = g.shape[1:]
    for i, j in np.ndindex(*k.shape[2:]):  # each kernel tap sends g back to the inputs it read
        dx[:, i:i + stride * rows:stride, j:j + stride * cols:stride] += np.einsum("fc,fhw->chw", k[:, :, i, j], g)
    return dx[:, padding:padding + height, padding:padding + width]


def conv2d_dk_ref(g, x, *, height, width, stride, padding):
    return np.einsum("fhw,chwij->fcij", g, windows(x, height, width, stride, padding), optimize=True)


def conv2d_vjp(g, y, x, k, stride, padding):
    return (g.op("conv2d_dx", k, height=x.shape[1], width=x.shape[2], stride=stride, padding=padding),
            g.op("conv2d_dk", x, height=k.shape[2], width=k.shape[3], stride=stride, padding=padding))


# call: a spec calls conv2d through the function of that name, which adds an optional bias
register("conv2d", doc="z[f, i, j] = sum_(c,p,q) k[f, c, p, q] x[c, i*stride + p, j*stride + q]: "
                       "cross-correlation, x zero-padded",
         shape=conv2d_shape, ref=conv2d_ref, vjp=conv2d_vjp, code="K.conv2d({0}, {1}, {stride}, {padding})",
         batch=unbatchable,
         mults=lambda args, out: math.prod(out) * math.prod(args[1][1:]),  # F Ho Wo outputs, each C kh kw
         call=None)
register("conv2d_dx", doc="gradient of conv2d with respect to its image",
         shape=lambda g, k, *, height, width, stride, padding: (k[1], height, width), ref=conv2d_dx_ref, vjp=None,
         code="K.conv2d_dx({0}, {1}, {height}, {width}, {stride}, {padding})", batch=unbatchable,
         mults=no_mults, call=None)
register("conv2d_dk", doc="gradient of conv2d with respect to its kernels",
         shape=lambda g, x, *, height, width, stride, padding: (g[0], x[0], height, width), ref=conv2d_dk_ref,
         vjp=None, code="K.conv2d_dk({0}, {1}, {height}, {width}, {stride}, {padding})", batch=unbatchable,
         mults=no_mults, call=None)
