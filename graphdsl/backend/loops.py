"""Explicit loop nests for generated code, for the ops that run hot in training.

Every shape is known when code is generated, so an op becomes plain loops with
constant trip counts writing into a buffer made once: Numba compiles those
quickly and runs them without allocating. Large matrix products go to BLAS.
An operand is a buffer's name, or a fused value: a function of the loop indices
giving the statements that compute it in place (see codegen.operand).
"""
from __future__ import annotations

import math

VECTOR_MIN = 8  # entries from which generated loops take exp and tanh from graphdsl.backend.runtime.vecmath


def math_module(shape: tuple) -> str:
    """Where generated code takes exp and tanh from (`{math}` in a template): graphdsl.backend.runtime.vecmath
    for arrays big enough that LLVM vectorises their loops, NumPy's libm calls for scalars and
    tiny arrays, since libm is quicker one number at a time. (A long sum runs in order and is not
    vectorised; there vecmath costs about what libm does.)"""
    return "M" if math.prod(shape) >= VECTOR_MIN else "np"


BLAS_MIN = 4096  # multiply-adds from which a BLAS call (K.dot) beats a plain loop


def point(shape: tuple, idx: list) -> list:
    """The indices at which a value of `shape` is read from inside loops over `idx` (broadcasting:
    the trailing indices, 0 along size-1 axes)."""
    return ["0" if d == 1 else i for d, i in zip(shape, idx[len(idx) - len(shape):])]


def index(name: str, shape: tuple, idx: list) -> str:
    """`name[i0, i1]` for a value of `shape` read at the trailing loop indices (broadcasting)."""
    return name if shape == () else f"{name}[{', '.join(point(shape, idx))}]"


def read(arg, shape: tuple, idx: list) -> tuple:
    """(statements, expression) giving operand `arg` at loop indices `idx`: an entry of the buffer
    it names, or, for a fused operand (a function of its own indices), its value computed here."""
    return ([], index(arg, shape, idx)) if isinstance(arg, str) else arg(point(shape, idx))


def read_all(args: list, shapes: list, idx: list) -> tuple:
    stmts, values = [], []
    for arg, shape in zip(args, shapes):
        made, value = read(arg, shape, idx)
        stmts += made
        values.append(value)
    return stmts, values


def nest(shape: tuple, body: list, first: int = 0) -> list:
    """Loops over every index of `shape` (variables i<first>, i<first+1>, ...) around `body`."""
    lines = []
    for depth, size in enumerate(shape):
        lines.append("    " * depth + f"for i{first + depth} in range({size}):")
    return lines + ["    " * len(shape) + stmt for stmt in body]


def ivars(rank: int, first: int = 0) -> list:
    return [f"i{first + k}" for k in range(rank)]


def elementwise(formula, out: str, args: list, in_shapes: list, shape: tuple) -> list:
    """out = formula(operand values), entry by entry; `formula` maps value expressions to one."""
    idx = ivars(len(shape))
    stmts, values = read_all(args, in_shapes, idx)
    return nest(shape, stmts + [f"{index(out, shape, idx)} = {formula(values)}"])


def accumulate(out: str, summand: tuple, over: tuple, first: int) -> list:
    """out = the sum of `summand` ((statements, expression)) over the indices of `over` (a local
    sum, so out may be a scalar)."""
    stmts, value = summand
    return ["acc = 0.0", *nest(over, stmts + [f"acc += {value}"], first), f"{out} = acc"]


def entry(out: str, dims: tuple) -> str:
    """The entry of `out` (of shape `dims`) at the outer loop indices; a scalar is a local."""
    return out if dims == () else f"{out}[{', '.join(ivars(len(dims)))}]"


def blas(in_shapes: list, dims: tuple) -> bool:
    """Whether a matrix product of operands shaped `in_shapes` is worth a BLAS call."""
    sa, sb = in_shapes
    return math.prod(sa) * (sb[-1] if len(sb) == 2 else 1) >= BLAS_MIN and dims != ()


def matmul(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    a, b = args
    sa, sb = in_shapes
    inner = sa[-1]
    if blas(in_shapes, dims):
        return [f"K.dot({a}, {b}, {out})"]
    rows, cols = ivars(len(sa) - 1), ivars(len(sb) - 1, len(sa) - 1)
    k = f"i{len(dims)}"
    value = f"{a}[{', '.join(rows + [k])}] * {b}[{', '.join([k] + cols)}]"
    return nest(dims, accumulate(entry(out, dims), ([], value), (inner,), len(dims)))


def outer(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    return nest(dims, [f"{out}[i0, i1] = {args[0]}[i0] * {args[1]}[i1]"])


def total(out: str, args: list, in_shapes: list, dims: tuple, axis=None) -> list:
    """sum: of everything into a scalar, or along one axis."""
    (s,) = in_shapes
    if axis is None or dims == ():
        return accumulate(out, read(args[0], s, ivars(len(s))), s, 0)
    kept = ivars(len(dims))
    full = kept[:axis] + [f"i{len(dims)}"] + kept[axis:]
    return nest(dims, accumulate(entry(out, dims), read(args[0], s, full), (s[axis],), len(dims)))


def reduced(idx: list, axis) -> list:
    """Where an expanded value reads its source: every index but `axis` (none for a scalar)."""
    return idx if axis is None else idx[:axis] + idx[axis + 1:]


def expand(out: str, args: list, in_shapes: list, dims: tuple, axis=None, **_) -> list:
    stmts, source = read(args[0], in_shapes[0], reduced(ivars(len(dims)), axis))
    return nest(dims, stmts + [f"{entry(out, dims)} = {source}"])


def unbroadcast(out: str, args: list, in_shapes: list, dims: tuple, **_) -> list:
    """Sum a broadcast value back to its operand's shape `dims`: zero it, then add every entry where it came from."""
    (s,) = in_shapes
    if dims == ():
        return total(out, args, in_shapes, dims)
    idx = ivars(len(s))
    stmts, value = read(args[0], s, idx)
    return [f"{out}[...] = 0.0", *nest(s, stmts + [f"{index(out, dims, idx)} += {value}"])]


def logsumexp(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    """log(sum(e^x)) along the last axis, shifted by each row's largest entry for stability. A
    short row is unrolled and vectorised across rows, so exp comes from vecmath (W2's 3-class
    rows ran 10% slower an epoch with libm's)."""
    (s,) = in_shapes
    x = f"{args[0]}[{', '.join(ivars(len(s)))}]"
    row = (s[-1],)
    return nest(dims, ["top = -np.inf", *nest(row, [f"top = max(top, {x})"], len(dims)),
                       "acc = 0.0", *nest(row, [f"acc += {math_module(s)}.exp({x} - top)"], len(dims)),
                       f"{entry(out, dims)} = top + np.log(acc)"])


def pick(out: str, args: list, in_shapes: list, dims: tuple) -> list:
    """z[..., k] along the last axis; K.class_index stops at an index that is not a class."""
    (z, k), (sz, sk) = args, in_shapes
    rows = ivars(len(dims))
    cls = f"K.class_index({index(k, sk, rows)}, {sz[-1]})"
    return nest(dims, [f"{entry(out, dims)} = {z}[{', '.join(rows + [cls])}]"])


def onehot(out: str, args: list, in_shapes: list, dims: tuple, classes: int) -> list:
    """One-hot rows for class indices (checked by K.class_index)."""
    rows = ivars(len(dims) - 1)
    j = f"i{len(rows)}"
    fill = nest((classes,), [f"{out}[{', '.join(rows + [j])}] = 1.0 if {j} == cls else 0.0"], len(rows))
    return nest(dims[:-1], [f"cls = K.class_index({index(args[0], in_shapes[0], rows)}, {classes})", *fill])


# op -> loop emitter(out, args, in_shapes, out_shape, **attrs)
LOOPS = {
    "matmul": matmul,
    "outer": outer,
    "sum": total,
    "expand": expand,
    "unbroadcast": unbroadcast,
    "logsumexp": logsumexp,
    "pick": pick,
    "onehot": onehot,
}
