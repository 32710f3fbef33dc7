"""The op registry: for every op its shape rule, backward rule, NumPy reference and code template.

It is the single source of truth for what an op means. Rules sit side by side,
as in micrograd, but as data: the interpreter runs `ref`, the code generator
emits `code`, autodiff calls `vjp`, and shape checking calls `shape`.

- shape(*arg_shapes, **attrs) -> shape, or raise ShapeError
- ref(*arrays, **attrs) -> np.ndarray
- code(args, attrs, in_shapes, out_shape) -> an expression string, or a list of
  statements assigning `{out}` (a few ops need loops or several lines); None for the
  ops whose loops `loops.LOOPS` writes (products, sums, broadcasts, logsumexp, pick, onehot)
- vjp(g, y, *args, **attrs) -> one cotangent (a Sym) or None per argument, where
  g is the cotangent of the output, y the output and args the inputs, all Syms.
  An op with vjp=None is used only in backward graphs (`backward_only`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..ir import Graph, ShapeError, fmt_shape, plural  # noqa: F401  (re-exported for op modules)


@dataclass(frozen=True)
class Op:
    name: str
    shape: Callable
    ref: Callable
    code: Callable | None
    vjp: Callable | None
    doc: str
    backward_only: bool = False
    elementwise: bool = False  # `code` then also works on single numbers, so it can run in loops


OPS: dict[str, Op] = {}


VECTOR_MIN = 8  # entries from which generated loops take exp and tanh from graphdsl.vecmath


def math_module(shape: tuple) -> str:
    """Where generated code takes exp and tanh from (`{math}` in a template): graphdsl.vecmath
    for arrays big enough that LLVM vectorises their loops, NumPy's libm calls for scalars and
    tiny arrays, since libm is quicker one number at a time. (A long sum runs in order and is not
    vectorised; there vecmath costs about what libm does.)"""
    return "M" if math.prod(shape) >= VECTOR_MIN else "np"


def register(name, *, shape, ref, code, vjp=None, doc, backward_only=False, elementwise=False):
    if isinstance(code, str):
        template = code
        code = lambda args, attrs, in_shapes, out_shape: template.format(  # noqa: E731
            *args, **attrs, math=math_module(out_shape))
    OPS[name] = Op(name, shape, ref, code, vjp, doc, backward_only, elementwise)


class Sym:
    """A node being built, with arithmetic, so backward rules read like maths."""

    __slots__ = ("g", "id")

    def __init__(self, graph: Graph, node_id: int):
        self.g, self.id = graph, node_id

    @property
    def shape(self) -> tuple:
        return self.g.nodes[self.id].shape

    def _lift(self, other) -> "Sym":
        return other if isinstance(other, Sym) else self.g_const(float(other))

    def g_const(self, value: float) -> "Sym":
        return Sym(self.g, self.g.add("scalar", attrs={"value": value}))

    def g_array(self, value) -> "Sym":
        """A constant array, held as a const leaf of the graph."""
        return Sym(self.g, self.g.leaf("const", value, value.shape))

    def op(self, name: str, *args, **attrs) -> "Sym":
        ids = [self.id] + [self._lift(a).id for a in args]
        return Sym(self.g, self.g.add(name, ids, attrs))

    def __add__(self, o): return self.op("add", o)
    def __radd__(self, o): return self._lift(o).op("add", self)
    def __sub__(self, o): return self.op("sub", o)
    def __rsub__(self, o): return self._lift(o).op("sub", self)
    def __mul__(self, o): return self.op("mul", o)
    def __rmul__(self, o): return self._lift(o).op("mul", self)
    def __truediv__(self, o): return self.op("div", o)
    def __rtruediv__(self, o): return self._lift(o).op("div", self)
    def __pow__(self, o): return self.op("pow", o)
    def __neg__(self): return self.op("neg")
    def __matmul__(self, o): return self.op("matmul", o)

    @property
    def T(self) -> "Sym":
        """The transpose, folded: (A')' = A and (A B)' = B' A', so that a weight gradient is one
        product written in the weight's own layout; a vector is its own transpose. A product
        something already reads (a forward value) is kept and viewed transposed, not computed again."""
        node = self.g.nodes[self.id]
        if len(self.shape) < 2:
            return self
        if node.op == "transpose":
            return Sym(self.g, node.args[0])
        if (node.op == "matmul" and all(len(self.g.nodes[a].shape) == 2 for a in node.args)
                and not any(self.id in n.args for n in self.g.nodes)):
            a, b = (Sym(self.g, x) for x in node.args)
            return b.T @ a.T
        return self.op("transpose")


# Importing the op families fills OPS.
from . import elementwise, linalg, reduce, structure, nn  # noqa: E402,F401
