"""Literal scalars, indexing, and building vectors and matrices from parts."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape, plural
from graphdsl.ir.ops.batching import flat, placed, unbatchable
from graphdsl.ir.ops.registry import no_mults, register

# batch: a scalar has no operands, so it never holds examples
register("scalar", doc="a literal number", shape=lambda *, value: (), ref=lambda *, value: np.float64(value),
         vjp=lambda g, y, value: (), code=lambda args, attrs, in_shapes, out_shape: repr(float(attrs["value"])),
         batch=unbatchable, mults=no_mults, call=None)


def index_shape(x: tuple, *, idx) -> tuple:
    if len(idx) > len(x):
        raise ShapeError(f"{plural(len(idx), 'index', 'indices')} given for a {fmt_shape(x)} value with "
                         f"{plural(len(x), 'axis', 'axes')}")
    kept = []
    for i, n in zip(idx, x):
        if isinstance(i, tuple):
            kept.append(slice_size(i, n))
        elif not 0 <= i < n:
            raise ShapeError(f"index {i} is out of range for size {n} (indices run from 0 to {n - 1}, "
                             f"or -{n} to -1 from the end)")
    return tuple(kept) + x[len(idx):]


def slice_size(part: tuple, n: int) -> int:
    """The entries slice `start:stop:step` takes from an axis of size n; a slice past the end, or
    one that takes nothing, is refused (NumPy would cut it short silently)."""
    start, stop, step = part
    if not 0 <= start < stop <= n:
        raise ShapeError(f"slice {start}:{stop} does not fit an axis of size {n}: a slice takes entries "
                         f"start to stop - 1, from 0 to {n} at most, and at least one of them")
    return len(range(start, stop, step))


def subscripts(idx: tuple) -> str:
    """An index as NumPy and Numba write it: `2, 0:3`, `1:5:2`."""
    return ", ".join(":".join(map(str, i[:2] if i[2] == 1 else i)) if isinstance(i, tuple) else str(i)
                     for i in idx)


def selection(idx: tuple) -> tuple:
    return tuple(slice(*i) if isinstance(i, tuple) else i for i in idx)


def index_batch(node, args: list, flags: list, size: int):
    """The entries an index reads, picked from each example's row by a 0/1 matrix."""
    x = args[0]
    n = int(np.prod(x.shape[1:]))
    read = np.arange(n).reshape(x.shape[1:])[selection(node.kw["idx"])]   # the entries this index reads
    pick = np.zeros((n, read.size))
    pick[np.ravel(read), np.arange(read.size)] = 1.0
    out = flat(x, True) @ x.g_array(pick)
    return out if out.shape == (size,) + node.shape else out.op("reshape", shape=(size,) + node.shape)


register("index", doc="entries of a value: `x[i]`, `W[i, j]`, a row `W[i]`, slices `x[1:3]`, `W[:, j]`; "
                      "indices count from 0", shape=index_shape,
         ref=lambda x, *, idx: np.array(np.asarray(x)[selection(idx)]),
         vjp=lambda g, y, x, idx: (g.op("scatter", shape=x.shape, idx=idx),),
         code=lambda args, attrs, in_shapes, out_shape: f"{args[0]}[{subscripts(attrs['idx'])}]",
         batch=index_batch, mults=no_mults, call=None)


def scatter_shape(g: tuple, *, shape, idx) -> tuple:
    if index_shape(shape, idx=idx) != g:
        raise ShapeError(f"cannot place {fmt_shape(g)} at [{subscripts(idx)}] in {fmt_shape(shape)}")
    return shape


def scatter_ref(g, *, shape, idx):
    out = np.zeros(shape)
    out[selection(idx)] = g
    return out


def scatter_code(args, attrs, in_shapes, out_shape):
    return ["{out} = np.zeros(%s)" % (attrs["shape"],), "{out}[%s] = %s" % (subscripts(attrs["idx"]), args[0])]


register("scatter", doc="zeros with the entries an index reads set (the gradient of indexing)", shape=scatter_shape,
         ref=scatter_ref, vjp=lambda g, y, x, shape, idx: (g.op("index", idx=idx),), code=scatter_code,
         batch=unbatchable, mults=no_mults, call=None)


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


def joined_batch(node, args: list, flags: list, size: int):
    """Each example's items side by side in one row, shaped as the example's result."""
    widths = [int(np.prod(a.shape[f:])) for a, f in zip(args, flags)]
    out = placed(args, flags, widths, sum(widths))
    return out if len(node.shape) == 1 else out.op("reshape", shape=(size,) + node.shape)


register("stack", doc="`[a, b, c]`: scalars into a vector, vectors into the rows of a matrix", shape=stack_shape,
         ref=lambda *xs: np.stack([np.asarray(x) for x in xs]),
         vjp=lambda g, y, *xs: tuple(g.op("index", idx=(i,)) for i in range(len(xs))), code=stack_code,
         batch=joined_batch, mults=no_mults, call=None)


def concat_shape(*items: tuple) -> tuple:
    """Scalars and vectors end to end into a vector, or matrices of one width into one taller matrix."""
    if all(len(s) <= 1 for s in items):
        return (sum(s[0] if s else 1 for s in items),)
    if all(len(s) == 2 for s in items) and len({s[1] for s in items}) == 1:
        return (sum(s[0] for s in items), items[0][1])
    got = ", ".join(fmt_shape(s) for s in items)
    raise ShapeError(f"`[a; b]` joins scalars and vectors into one vector, or matrices with the same number "
                     f"of columns into one matrix (b's rows below a's), not {got}")


def concat_code(args, attrs, in_shapes, out_shape):
    lines, at = [f"{{out}} = np.empty({out_shape})"], 0
    for arg, s in zip(args, in_shapes):
        n = s[0] if s else 1
        lines.append(f"{{out}}[{at}] = {arg}" if not s else f"{{out}}[{at}:{at + n}] = {arg}")
        at += n
    return lines


def concat_vjp(g, y, *xs):
    out, at = [], 0
    for x in xs:
        n = x.shape[0] if x.shape else 1
        out.append(g.op("index", idx=(at,) if not x.shape else ((at, at + n, 1),)))
        at += n
    return tuple(out)


register("concat", doc="`[a; b]`: scalars and vectors joined into one vector, matrices row on row",
         shape=concat_shape, ref=lambda *xs: np.concatenate([np.atleast_1d(x) for x in xs]), vjp=concat_vjp,
         code=concat_code, batch=joined_batch, mults=no_mults, call=None)


def reshape_shape(x: tuple, *, shape) -> tuple:
    if int(np.prod(x)) != int(np.prod(shape)):
        raise ShapeError(f"cannot reshape {fmt_shape(x)} to {fmt_shape(shape)}")
    return shape


def reshape_view(arg: str, shape: tuple) -> str:
    """A view in C order: a transposed operand (an F-order view) is copied first."""
    return f"np.ascontiguousarray({arg}).reshape({shape})"


# code: only a scalar result is written from this template (its one entry, a local); an array
# result is a view of its operand, or a buffer filled each step if that is a scalar
register("reshape", doc="the same entries in another shape, in C order (used to lay out minibatches)",
         shape=reshape_shape, ref=lambda x, *, shape: np.reshape(x, shape),
         vjp=lambda g, y, x, shape: (g.op("reshape", shape=x.shape),), code="{0}.ravel()[0]",
         batch=lambda node, args, flags, size: args[0].op("reshape", shape=(size,) + node.kw["shape"]),
         mults=no_mults, call=None, view=reshape_view)
