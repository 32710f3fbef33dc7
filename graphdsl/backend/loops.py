"""The primitives loop nests in generated code are built from: the op families' loop emitters
(an op's `emit`) and codegen's elementwise loops use them.

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


def accumulate(out: str, summand: tuple, over: tuple, first: int, start: str = "0.0", combine: str | None = None) -> list:
    """out = the sum of `summand` ((statements, expression)) over the indices of `over`, or its fold
    by `combine(acc, value)` from `start` (a local, so out may be a scalar)."""
    stmts, value = summand
    step = f"acc += {value}" if combine is None else f"acc = {combine}(acc, {value})"
    return [f"acc = {start}", *nest(over, stmts + [step], first), f"{out} = acc"]


def entry(out: str, dims: tuple) -> str:
    """The entry of `out` (of shape `dims`) at the outer loop indices; a scalar is a local."""
    return out if dims == () else f"{out}[{', '.join(ivars(len(dims)))}]"


def blas(in_shapes: list, dims: tuple) -> bool:
    """Whether a matrix product of operands shaped `in_shapes` is worth a BLAS call."""
    sa, sb = in_shapes
    return math.prod(sa) * (sb[-1] if len(sb) == 2 else 1) >= BLAS_MIN and dims != ()
