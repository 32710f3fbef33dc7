"""Literal scalars, indexing, and building vectors and matrices from parts."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape, plural
from graphdsl.ir.ops.registry import register

register("scalar", shape=lambda *, value: (), ref=lambda *, value: np.float64(value),
         code=lambda args, attrs, in_shapes, out_shape: repr(float(attrs["value"])),
         vjp=lambda g, y, value: (), doc="a literal number")


def index_shape(x: tuple, *, idx) -> tuple:
    if len(idx) > len(x):
        raise ShapeError(f"{plural(len(idx), 'index', 'indices')} given for a {fmt_shape(x)} value with "
                         f"{plural(len(x), 'axis', 'axes')}")
    for i, n in zip(idx, x):
        if not 0 <= i < n:
            raise ShapeError(f"index {i} is out of range for size {n} (indices run from 0 to {n - 1}, "
                             f"or -{n} to -1 from the end)")
    return x[len(idx):]


def index_code(args, attrs, in_shapes, out_shape):
    return f"{args[0]}[{', '.join(map(str, attrs['idx']))}]"


register("index", shape=index_shape, ref=lambda x, *, idx: np.asarray(x)[idx], code=index_code,
         vjp=lambda g, y, x, idx: (g.op("scatter", shape=x.shape, idx=idx),),
         doc="one entry `x[i]`, `W[i, j]`, or a row `W[i]`; indices count from 0")


def scatter_shape(g: tuple, *, shape, idx) -> tuple:
    if index_shape(shape, idx=idx) != g:
        raise ShapeError(f"cannot place {fmt_shape(g)} at {list(idx)} in {fmt_shape(shape)}")
    return shape


def scatter_ref(g, *, shape, idx):
    out = np.zeros(shape)
    out[idx] = g
    return out


def scatter_code(args, attrs, in_shapes, out_shape):
    idx = ", ".join(map(str, attrs["idx"]))
    return ["{out} = np.zeros(%s)" % (attrs["shape"],), "{out}[%s] = %s" % (idx, args[0])]


register("scatter", shape=scatter_shape, ref=scatter_ref, code=scatter_code,
         vjp=lambda g, y, x, shape, idx: (g.op("index", idx=idx),),
         doc="zeros with one entry or row set (the gradient of indexing)")


def stack_shape(*items: tuple) -> tuple:
    first = items[0]
    for i, s in enumerate(items[1:], 2):
        if s != first:
            raise ShapeError(f"item 1 is {fmt_shape(first)} but item {i} is {fmt_shape(s)}; "
                             "stacked items must have the same shape")
    return (len(items),) + first


def stack_code(args, attrs, in_shapes, out_shape):
    if in_shapes[0] == ():
        return f"np.array([{', '.join(args)}])"
    return f"np.stack(({', '.join(args)},))"


register("stack", shape=stack_shape, ref=lambda *xs: np.stack([np.asarray(x) for x in xs]),
         code=stack_code, vjp=lambda g, y, *xs: tuple(g.op("index", idx=(i,)) for i in range(len(xs))),
         doc="`[a, b, c]`: scalars into a vector, vectors into the rows of a matrix")


def concat_shape(*items: tuple) -> tuple:
    for i, s in enumerate(items, 1):
        if len(s) > 1:
            raise ShapeError(f"item {i} is {fmt_shape(s)}; `[a; b]` joins scalars and vectors only")
    return (sum(s[0] if s else 1 for s in items),)


def concat_code(args, attrs, in_shapes, out_shape):
    lines, at = [f"{{out}} = np.empty({out_shape[0]})"], 0
    for arg, s in zip(args, in_shapes):
        n = s[0] if s else 1
        lines.append(f"{{out}}[{at}] = {arg}" if not s else f"{{out}}[{at}:{at + n}] = {arg}")
        at += n
    return lines


def concat_vjp(g, y, *xs):
    out, at = [], 0
    for x in xs:
        n = x.shape[0] if x.shape else 1
        out.append(g.op("index", idx=(at,)) if not x.shape else g.op("slice", start=at, stop=at + n))
        at += n
    return tuple(out)


register("concat", shape=concat_shape, ref=lambda *xs: np.concatenate([np.atleast_1d(x) for x in xs]),
         code=concat_code, vjp=concat_vjp, doc="`[a; b]`: scalars and vectors joined into one vector")


def slice_shape(x: tuple, *, start, stop) -> tuple:
    if len(x) != 1 or not 0 <= start <= stop <= x[0]:
        raise ShapeError(f"cannot take entries {start} to {stop} of {fmt_shape(x)}")
    return (stop - start,)


register("slice", shape=slice_shape, ref=lambda x, *, start, stop: x[start:stop].copy(),
         code="{0}[{start}:{stop}].copy()", vjp=None, backward_only=True,
         doc="entries start to stop of a vector (the gradient of `[a; b]`)")


def reshape_shape(x: tuple, *, shape) -> tuple:
    if int(np.prod(x)) != int(np.prod(shape)):
        raise ShapeError(f"cannot reshape {fmt_shape(x)} to {fmt_shape(shape)}")
    return shape


# code: only a scalar result is written from this template (its one entry, a local); an array
# result is a view of its operand (codegen.view), or a buffer filled each step if that is a scalar
register("reshape", shape=reshape_shape, ref=lambda x, *, shape: np.reshape(x, shape),
         code="{0}.ravel()[0]",
         vjp=lambda g, y, x, shape: (g.op("reshape", shape=x.shape),),
         doc="the same entries in another shape, in C order (used to lay out minibatches)")
