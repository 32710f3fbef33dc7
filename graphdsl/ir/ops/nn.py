"""Neural-network ops: the stable softmax family (over the last axis), picking
a class's entry by index, 1-D and 2-D convolution (cross-correlation), max and average pooling,
and the patch matrix and axis swap a minibatch of convolutions runs as."""
from __future__ import annotations

import math
from functools import reduce

import numpy as np

from graphdsl.backend.loops import entry, index, ivars, math_module, nest
from graphdsl.errors import CLASS_INDEX_PROBLEM, ClassIndexError
from graphdsl.ir.shapes import ShapeError, fmt_shape, plural
from graphdsl.ir.ops.batching import Unbatchable, per_row, unbatchable
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


def log_softmax_ref(x):
    """(x - largest) - log(sum(e^(x - largest))): subtracting the log of the sum from the shifted
    entries, never from x, keeps a class's small loss accurate when the scores are large (PyTorch's
    form; x - logsumexp(x) lost 4 digits of log(1 + e^-20) at scores near -5000)."""
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def largest(x: str, row: tuple, rows: int) -> list:
    """`top`, the largest entry of a row, read as `x` at the row loops' indices (`rows` of them)."""
    return ["top = -np.inf", *nest(row, [f"top = max(top, {x})"], rows)]


def exp_in_place(scratch: str, shape: tuple) -> list:
    """e^ of every entry of `scratch` in one flat pass, which LLVM vectorises."""
    n = math.prod(shape)
    return [f"flat = {scratch}.reshape(({n},))", *nest((n,), ["flat[i0] = M.exp(flat[i0])"])]


def log_softmax_loops(out: str, args: list, in_shapes: list, dims: tuple, scratch: str | None = None) -> list:
    """Each row shifted by its largest entry, less the log of the sum of the shifted entries' e^,
    taken as logsumexp_loops takes them: in one flat pass in `scratch` where it is given."""
    idx, rows, last = ", ".join(ivars(len(dims))), len(dims) - 1, dims[-1:]
    x, o = f"{args[0]}[{idx}]", f"{out}[{idx}]"
    shift = [*largest(x, last, rows), *nest(last, [f"{o} = {x} - top"], rows)]
    less_log = ["acc = np.log(acc)", *nest(last, [f"{o} -= acc"], rows)]
    if scratch is None:
        return nest(dims[:-1], [*shift, "acc = 0.0", *nest(last, [f"acc += np.exp({o})"], rows), *less_log])
    kept = f"{scratch}[{idx}]"
    return [*nest(dims[:-1], [*shift, *nest(last, [f"{kept} = {o}"], rows)]), *exp_in_place(scratch, dims),
            *nest(dims[:-1], ["acc = 0.0", *nest(last, [f"acc += {kept}"], rows), *less_log])]


def exp_room(in_shapes: list) -> tuple | None:
    """The scratch of logsumexp and log_softmax: the shifted entries, where there are enough to vectorise."""
    return in_shapes[0] if math_module(in_shapes[0]) == "M" else None


register("log_softmax", doc="x - logsumexp(x) over the last axis, computed stably", shape=last_axis,
         ref=log_softmax_ref, vjp=lambda g, y, x: (g - y.op("exp") * along_last(g, x),),
         emit=log_softmax_loops, batch=per_row, mults=no_mults, call=UNARY, scratch=exp_room)


def logsumexp_loops(out: str, args: list, in_shapes: list, dims: tuple, scratch: str | None = None) -> list:
    """Each row's largest entry, then the log of the sum of e^(x - largest), for stability. With a
    scratch buffer (an input big enough for vecmath, loops.math_module) the e^(x - largest) are
    taken in one flat pass, which LLVM vectorises (W2's 150 rows of 3: 1.5 against 3.0 us);
    without, one number at a time from libm, which is quicker there than vecmath."""
    (s,) = in_shapes
    idx = ", ".join(ivars(len(s)))
    x = f"{args[0]}[{idx}]"
    row = (s[-1],)
    top = largest(x, row, len(dims))
    if scratch is None:
        return nest(dims, [*top, "acc = 0.0", *nest(row, [f"acc += np.exp({x} - top)"], len(dims)),
                           f"{entry(out, dims)} = top + np.log(acc)"])
    kept = f"{scratch}[{idx}]"
    return [*nest(dims, [*top, *nest(row, [f"{kept} = {x} - top"], len(dims)), f"{entry(out, dims)} = top"]),
            *exp_in_place(scratch, s),
            *nest(dims, ["acc = 0.0", *nest(row, [f"acc += {kept}"], len(dims)),
                         f"{entry(out, dims)} += np.log(acc)"])]


register("logsumexp", doc="log(sum(e^x)) over the last axis, max-shifted for stability",
         shape=lambda x: last_axis(x)[:-1], ref=lse_ref,
         vjp=lambda g, y, x: (g.op("expand", shape=x.shape, axis=len(x.shape) - 1)
                              * (x - y.op("expand", shape=x.shape, axis=len(x.shape) - 1)).op("exp"),),
         emit=logsumexp_loops, batch=per_row, mults=no_mults, call=UNARY, scratch=exp_room)


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


# The 1-D convolutions loop over the kernel's few taps, each a whole-array operation over the
# outputs: the interpreter trains with them, and a loop over the outputs ran 20 times slower.
def conv1d_ref(x, k, *, stride):
    m = (len(x) - len(k)) // stride + 1
    return sum(k[j] * x[j:j + stride * (m - 1) + 1:stride] for j in range(len(k)))


def conv1d_dx_ref(g, k, *, n, stride):
    dx = np.zeros(n)
    for j in range(len(k)):
        dx[j:j + stride * (len(g) - 1) + 1:stride] += g * k[j]
    return dx


def conv1d_dk_ref(g, x, *, d, stride):
    return np.array([np.dot(g, x[j:j + stride * (len(g) - 1) + 1:stride]) for j in range(d)])


register("conv1d", doc="valid 1-D cross-correlation z_i = sum_j k_j x_(i*stride+j); add a bias yourself",
         shape=conv1d_shape, ref=conv1d_ref,
         vjp=lambda g, y, x, k, stride: (g.op("conv1d_dx", k, n=x.shape[0], stride=stride),
                                          g.op("conv1d_dk", x, d=k.shape[0], stride=stride)),
         code="K.conv1d({0}, {1}, {stride})", batch=unbatchable,
         mults=lambda args, out: math.prod(out) * args[1][0],  # a kernel's taps per output
         call=Call(("x", "k"), {"stride": ("int", 1)}))
register("conv1d_dx", doc="gradient of conv1d with respect to its signal", shape=lambda g, k, *, n, stride: (n,),
         ref=conv1d_dx_ref, vjp=None, code="K.conv1d_dx({0}, {1}, {n}, {stride})", batch=unbatchable,
         mults=lambda args, out: math.prod(args[0]) * args[1][0], call=None)  # each output's gradient by each tap
register("conv1d_dk", doc="gradient of conv1d with respect to its kernel", shape=lambda g, x, *, d, stride: (d,),
         ref=conv1d_dk_ref, vjp=None, code="K.conv1d_dk({0}, {1}, {d}, {stride})", batch=unbatchable,
         mults=lambda args, out: math.prod(args[0]) * out[0], call=None)


def conv2d_shape(x: tuple, k: tuple, *, stride, padding) -> tuple:
    if len(x) != 3 or len(k) != 4:
        one_channel = " (an image of one channel is [1, height, width])" if len(x) == 2 else ""
        raise ShapeError("needs an image [channels, height, width] and kernels [count, channels, height, width], "
                         f"not {fmt_shape(x)} and {fmt_shape(k)}{one_channel}")
    if k[1] != x[0]:
        raise ShapeError(f"the image has {plural(x[0], 'channel')} but the kernels have {plural(k[1], 'channel')}")
    return (k[0],) + window_counts(x, k[2:], stride, padding, "the kernels ({} by {}) are")


def window_counts(x: tuple, window: tuple, stride: int, padding: int, what: str = "the window ({} by {}) is") -> tuple:
    """(rows, columns) of the window positions over the last two axes of x, zero-padded; `what`
    names the window in the error where it does not fit."""
    height, width = x[-2] + 2 * padding, x[-1] + 2 * padding
    if window[0] > height or window[1] > width:
        image = f"the image padded to {height} by {width}" if padding else f"the image ({height} by {width})"
        raise ShapeError(f"{what.format(*window)} larger than {image}")
    return (height - window[0]) // stride + 1, (width - window[1]) // stride + 1


def windows(x, height, width, stride, padding):
    """The patch of x under each window position, over its last two axes (zero-padded), as a view
    shaped [..., Ho, Wo, height, width]."""
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2)
    view = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(-2, -1))
    return view[..., ::stride, ::stride, :, :]


def tap(x, i: int, j: int, stride: int, rows: int, cols: int):
    """The entries of x [..., H, W] at tap (i, j) of each of rows x cols windows: a view [..., rows, cols]."""
    return x[..., i:i + stride * rows:stride, j:j + stride * cols:stride]


def unwindows(taps, height, width, stride, padding):
    """The adjoint of `windows`: x [..., height, width] holding the sum of the values `taps`
    [..., Ho, Wo, kh, kw] gives each window tap at the entry it covers."""
    rows, cols, kh, kw = taps.shape[-4:]
    x = np.zeros(taps.shape[:-4] + (height + 2 * padding, width + 2 * padding))
    for i, j in np.ndindex(kh, kw):
        tap(x, i, j, stride, rows, cols)[...] += taps[..., i, j]
    return x[..., padding:padding + height, padding:padding + width]


def conv2d_ref(x, k, *, stride, padding):
    return np.einsum("fcij,chwij->fhw", k, windows(x, *k.shape[2:], stride, padding), optimize=True)


def conv2d_dx_ref(g, k, *, height, width, stride, padding):
    cols = k.reshape(k.shape[0], -1).T @ g.reshape(g.shape[0], -1)
    return col2im_ref(cols, window=k.shape[2:], stride=stride, padding=padding, shape=(k.shape[1], height, width))


def conv2d_dk_ref(g, x, *, height, width, stride, padding):
    return np.einsum("fhw,chwij->fcij", g, windows(x, height, width, stride, padding), optimize=True)


def conv2d_vjp(g, y, x, k, stride, padding):
    return (g.op("conv2d_dx", k, height=x.shape[1], width=x.shape[2], stride=stride, padding=padding),
            g.op("conv2d_dk", x, height=k.shape[2], width=k.shape[3], stride=stride, padding=padding))


def conv2d_batch(node, args: list, flags: list, size: int):
    """The whole batch in one BLAS product: every example's patches side by side as the columns of
    one matrix (im2col), [F, C kh kw] @ [C kh kw, B Ho Wo], then the examples moved to the front.
    Each step then runs in buffers made once, where a kernel per image would allocate."""
    (x, k), (_, per_example_kernels) = args, flags
    if per_example_kernels:
        raise Unbatchable("kernels that differ from example to example")
    count, channels, kh, kw = k.shape
    _, rows, cols = node.shape
    patches = x.op("im2col", window=(kh, kw), stride=node.kw["stride"], padding=node.kw["padding"])
    z = k.op("reshape", shape=(count, channels * kh * kw)) @ patches
    z = z.op("reshape", shape=(count, size, rows * cols)).op("swap01")
    return z.op("reshape", shape=(size, count, rows, cols))


def call_kernel(name: str, *attrs: str):
    """An emitter calling helper K.<name>(operands..., attrs..., out), which fills the buffer `out`."""
    def emit(out: str, args: list, in_shapes: list, dims: tuple, **kw) -> list:
        return [f"K.{name}({', '.join([*args, *(str(kw[a]) for a in attrs), out])})"]
    return emit


# call: a spec calls conv2d through the function of that name, which adds an optional bias
register("conv2d", doc="z[f, i, j] = sum_(c,p,q) k[f, c, p, q] x[c, i*stride + p, j*stride + q]: "
                       "cross-correlation, x zero-padded",
         shape=conv2d_shape, ref=conv2d_ref, vjp=conv2d_vjp, emit=call_kernel("conv2d", "stride", "padding"),
         batch=conv2d_batch,
         mults=lambda args, out: math.prod(out) * math.prod(args[1][1:]),  # F Ho Wo outputs, each C kh kw
         call=None)
register("conv2d_dx", doc="gradient of conv2d with respect to its image",
         shape=lambda g, k, *, height, width, stride, padding: (k[1], height, width), ref=conv2d_dx_ref, vjp=None,
         emit=call_kernel("conv2d_dx", "stride", "padding"), batch=unbatchable,
         mults=lambda args, out: math.prod(args[0]) * math.prod(args[1][1:]), call=None)  # as conv2d's
register("conv2d_dk", doc="gradient of conv2d with respect to its kernels",
         shape=lambda g, x, *, height, width, stride, padding: (g[0], x[0], height, width), ref=conv2d_dk_ref,
         vjp=None, emit=call_kernel("conv2d_dk", "stride", "padding"), batch=unbatchable,
         mults=lambda args, out: math.prod(args[0]) * math.prod(out[1:]), call=None)


def im2col_shape(x: tuple, *, window, stride, padding) -> tuple:
    if len(x) < 3:
        raise ShapeError(f"needs images [..., channels, height, width], not {fmt_shape(x)}")
    rows, cols = window_counts(x, window, stride, padding)
    return (x[-3] * window[0] * window[1], math.prod(x[:-3]) * rows * cols)


def im2col_ref(x, *, window, stride, padding):
    patches = windows(x.reshape((-1,) + x.shape[-3:]), *window, stride, padding)  # [N, C, Ho, Wo, kh, kw]
    return patches.transpose(1, 4, 5, 0, 2, 3).reshape(x.shape[-3] * window[0] * window[1], -1)


def col2im_ref(g, *, window, stride, padding, shape):
    taps = g.reshape(shape[-3], *window, -1, *window_counts(shape, window, stride, padding))  # [C, kh, kw, N, Ho, Wo]
    return unwindows(taps.transpose(3, 0, 4, 5, 1, 2), *shape[-2:], stride, padding).reshape(shape)


# batch: im2col and swap01 are made only by conv2d's minibatch rule, in a graph already batched
register("im2col", doc="the patches under a window, one column per position of every image (x [..., C, H, W]) "
                       "and one row per channel and tap, zero-padded",
         shape=im2col_shape, ref=im2col_ref,
         vjp=lambda g, y, x, window, stride, padding: (
             g.op("col2im", window=window, stride=stride, padding=padding, shape=x.shape),),
         emit=call_kernel("im2col", "window", "stride", "padding"), batch=unbatchable, mults=no_mults, call=None)
register("col2im", doc="gradient of im2col: each patch entry added back to the image entry it came from",
         shape=lambda g, *, window, stride, padding, shape: shape, ref=col2im_ref, vjp=None,
         emit=call_kernel("col2im", "window", "stride", "padding"), batch=unbatchable, mults=no_mults, call=None)


def swap_shape(x: tuple) -> tuple:
    if len(x) < 2:
        raise ShapeError(f"needs two axes or more, not {fmt_shape(x)}")
    return (x[1], x[0]) + x[2:]


register("swap01", doc="the first two axes exchanged, x [A, B, ...] to [B, A, ...], into a buffer of its own",
         shape=swap_shape, ref=lambda x: np.swapaxes(x, 0, 1), vjp=lambda g, y, x: (g.op("swap01"),),
         emit=call_kernel("swap01"), batch=unbatchable, mults=no_mults, call=None)


def pool_shape(x: tuple, *, size, stride) -> tuple:
    if len(x) < 2:
        raise ShapeError(f"needs an image [channels, height, width] (or a matrix [height, width]), not {fmt_shape(x)}")
    return x[:-2] + window_counts(x, (size, size), stride, 0)


def pooled(fold):
    """A pooling op's reference: `fold` (np.maximum, np.add) over the taps of every window at once,
    tap by tap: a reduction over the last two axes of a window view is much slower."""
    def ref(x, *, size, stride):
        rows, cols = window_counts(x.shape, (size, size), stride, 0)
        return reduce(fold, (tap(x, i, j, stride, rows, cols) for i, j in np.ndindex(size, size)))
    return ref


def maxpool_dx_ref(g, x, *, size, stride):
    """g sent to the first largest entry of each window, row by row (PyTorch's and JAX's choice)."""
    taps = windows(x, size, size, stride, 0)
    first = np.argmax(taps.reshape(g.shape + (size * size,)), axis=-1)
    chosen = (np.arange(size * size) == first[..., None]).reshape(taps.shape)
    return unwindows(g[..., None, None] * chosen, *x.shape[-2:], stride, 0)


# batch: per_row, since pooling works plane by plane over the last two axes: the batch is one more
# leading axis. call: a spec calls each pooling op through a function of its name, whose stride
# defaults to the window's size. The gradient of max pooling goes to one entry of a window, not
# shared between ties as max's is, so that training follows PyTorch's and JAX's step for step
register("maxpool2d", doc="the largest entry of each size x size window, moved by stride, over the last two axes",
         shape=pool_shape, ref=pooled(np.maximum),
         vjp=lambda g, y, x, size, stride: (g.op("maxpool2d_dx", x, size=size, stride=stride),),
         emit=call_kernel("maxpool2d", "size", "stride"), batch=per_row, mults=no_mults, call=None)
register("maxpool2d_dx", doc="gradient of maxpool2d: each window's gradient to its first largest entry",
         shape=lambda g, x, *, size, stride: x, ref=maxpool_dx_ref, vjp=None,
         emit=call_kernel("maxpool2d_dx", "size", "stride"), batch=unbatchable, mults=no_mults, call=None)


window_sums = pooled(np.add)


def avgpool_dx_ref(g, *, size, stride, height, width):
    return unwindows(np.broadcast_to(g[..., None, None] / (size * size), g.shape + (size, size)), height, width,
                     stride, 0)


register("avgpool2d", doc="the mean of each size x size window, moved by stride, over the last two axes",
         shape=pool_shape, ref=lambda x, *, size, stride: window_sums(x, size=size, stride=stride) / (size * size),
         vjp=lambda g, y, x, size, stride: (
             g.op("avgpool2d_dx", size=size, stride=stride, height=x.shape[-2], width=x.shape[-1]),),
         emit=call_kernel("avgpool2d", "size", "stride"), batch=per_row, mults=no_mults, call=None)
register("avgpool2d_dx", doc="gradient of avgpool2d: each window's gradient shared equally by its entries",
         shape=lambda g, *, size, stride, height, width: g[:-2] + (height, width), ref=avgpool_dx_ref, vjp=None,
         emit=call_kernel("avgpool2d_dx", "size", "stride"), batch=unbatchable, mults=no_mults, call=None)
