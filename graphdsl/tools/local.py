"""Local derivatives entry by entry, for `graphdsl explain`: d child[j] / d parent[i] between
named nodes, taken with the child's other named inputs held fixed, as a number and a formula.

Both come from autodiff, run on the child's own expression alone (a graph whose leaves stand for
the named nodes it reads), with the child's cotangent seeded one entry at a time:
the numbers by the NumPy interpreter, the formula by running the same backward nodes on entries
written as formulas (`Expr`). Which child entries depend on which parent entry is found by putting
NaN into that parent entry alone and seeing where it spreads in the child."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphdsl.ir.formula import ATOM, Expr, apply, written
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.interpret import evaluate
from graphdsl.tools.formats import one_line
from graphdsl.tools.report import own_nodes

WRITTEN = 20_000  # formulas are written only while the arrays a backward pass holds have fewer entries
SHORT = 40        # a forward value's entry longer than this is written as its node's expression, indexed


def entry_text(name: str, shape: tuple, index: tuple) -> str:
    """`W[0, 1]` for an entry of a matrix, `x[2]` of a vector, the name alone for a scalar."""
    return f"{name}[{', '.join(map(str, index))}]" if shape else name


def entries(text: str, binding: int, shape: tuple) -> np.ndarray:
    """An array of Exprs, each entry of a value written `text` (bracketed where it binds looser
    than an index: `(W_h @ x)[0]`)."""
    base = text if binding == ATOM else f"({text})"
    found = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        found[index] = Expr(entry_text(base, shape, index)) if shape else Expr(text, binding)
    return found


def numbers(value) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    return np.vectorize(Expr.of, otypes=[object])(value) if value.size else value.astype(object)


@dataclass(frozen=True)
class Local:
    """d child[j] / d parent[i]: its value, and its formula where it is more than a number."""

    value: float
    formula: str | None


@dataclass
class Own:
    """A named node's own expression as a graph of its own: a leaf for each named node it reads
    (and each constant), then its unnamed nodes, then whatever backward passes add."""

    graph: Graph
    ids: dict      # original node id -> id here
    leaves: dict   # leaf id here -> its value
    names: dict    # id here -> the text it is written by: a name, or a constant's value
    forward: int   # ids from here on are backward nodes

    @property
    def output(self) -> int:
        return self.forward - 1


class Locals:
    """The local derivatives of a model's named nodes at its current values, entry by entry."""

    def __init__(self, model):
        self.graph = model.spec.graph
        values = model.forward()
        self.values = {nid: np.asarray(values[name], dtype=np.float64) for name, nid in self.graph.names.items()}
        self.owns = {}
        self.cache = {}  # (child, id) -> that node's entries as Exprs, alike for every seed

    def own(self, child: int) -> Own:
        if child not in self.owns:
            g = self.graph
            own, reads = own_nodes(g, child)
            small, ids, leaves, names = Graph(), {}, {}, {}
            for nid in sorted(own + reads):  # ids are in computation order: args come first
                node = g.nodes[nid]
                if nid in reads or node.is_leaf:
                    ids[nid] = small.leaf("input", None, node.shape)
                    leaves[ids[nid]] = self.values[nid] if nid in self.values else np.asarray(g.values[nid], float)
                    names[ids[nid]] = g.name_of(nid) or one_line(leaves[ids[nid]])
                else:
                    ids[nid] = small.add(node.op, [ids[a] for a in node.args], node.kw)
            names[ids[child]] = g.name_of(child)  # the child's value, which backward rules may reuse
            self.owns[child] = Own(small, ids, leaves, names, len(small.nodes))
        return self.owns[child]

    def depends(self, child: int, parent: int, entry: int) -> list:
        """The entries of `child` that read entry `entry` of `parent`: where a NaN put there spreads
        (an entry that is NaN already counts too, so that no path is lost)."""
        own = self.own(child)
        probe = own.leaves[own.ids[parent]].copy()
        probe.flat[entry] = np.nan
        found = evaluate(own.graph, {**own.leaves, own.ids[parent]: probe}, [own.output])
        return np.flatnonzero(np.isnan(np.ravel(found[own.output]))).tolist()

    def rows(self, child: int, columns: dict, wanted: list) -> dict:
        """{(parent, i, j): Local} for each child entry j in `wanted` and each entry i of a parent
        that `columns` (parent -> its entries) lists."""
        own = self.own(child)
        shape = own.graph.nodes[own.output].shape
        seed = own.graph.leaf("input", None, shape)
        grads = backward(own.graph, own.output, [own.ids[p] for p in columns], seed=seed)
        needed = sorted(own.graph.ancestors(list(grads.values())))
        formulas = sum(int(np.prod(own.graph.nodes[n].shape)) for n in needed) <= WRITTEN
        found = {}
        for j in wanted:
            onehot = np.zeros(shape)
            onehot.flat[j] = 1.0
            numeric = evaluate(own.graph, {**own.leaves, seed: onehot}, needed)
            symbolic = self.symbolic(child, needed, numeric) if formulas else {}
            for p, entries_of_p in columns.items():
                gid = grads[own.ids[p]]
                values = np.ravel(numeric[gid])
                exprs = np.ravel(symbolic[gid]) if gid in symbolic else np.full(values.shape, None)
                for i in entries_of_p:
                    shown = exprs[i] is not None and exprs[i].value is None  # a number says it all
                    found[p, i, j] = Local(float(values[i]), exprs[i].text if shown else None)
        return found

    def symbolic(self, child: int, ids: list, numeric: dict) -> dict:
        """Each node of `ids` as an array of Exprs: a named node by its name, a forward node by
        `written`, a backward node by `formulas`, or by its numbers where that cannot be done."""
        own, found = self.own(child), {}
        for nid in ids:
            node = own.graph.nodes[nid]
            if (child, nid) in self.cache:
                found[nid] = self.cache[child, nid]
            elif nid in own.names:
                found[nid] = self.cache[child, nid] = entries(own.names[nid], ATOM, node.shape)
            elif node.is_leaf:
                found[nid] = numbers(numeric[nid])  # the seed
            elif nid < own.forward:  # alike for every seed
                found[nid] = self.cache[child, nid] = written_entries(own, node, [found[a] for a in node.args])
            else:
                exprs = formulas(node, [found[a] for a in node.args])
                found[nid] = exprs if exprs is not None else numbers(numeric[nid])
        return found


def written_entries(own: Own, node, args: list) -> np.ndarray:
    """A forward node's entries: each written out where that is short (`W[0, 0] * x[0] + W[0, 1] *
    x[1]`, `sigmoid(z[0])`), else the node's own expression indexed (`(W @ x)[0]`)."""
    exprs = formulas(node, args)
    if exprs is not None and all(len(e.text) <= SHORT for e in exprs.flat):
        return exprs
    return entries(*written(own.graph, node.id, own.names), node.shape)


def formulas(node, args: list) -> np.ndarray | None:
    """A computed node's entries as Exprs: elementwise ops entry by entry, other ops by their NumPy
    reference on arrays of Exprs; None where that fails or gives something else."""
    op = OPS[node.op]
    if node.op == "scalar":
        return np.asarray(Expr.of(node.kw["value"]), dtype=object)
    try:
        if op.elementwise:
            if node.kw:
                return None  # settings of an elementwise op are not written
            found = np.frompyfunc(lambda *xs: apply(node.op, list(xs)), len(args), 1)(*args)
        else:
            found = op.ref(*args, **node.kw)
        found = np.asarray(found, dtype=object)
    except Exception:  # an op whose reference needs real numbers (a max, a comparison)
        return None
    return found if found.shape == node.shape and all(isinstance(x, Expr) for x in found.flat) else None
