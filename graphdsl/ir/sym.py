"""Sym: a node being built, with arithmetic, so backward and minibatch rules read like maths."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphdsl.ir.graph import Graph


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
