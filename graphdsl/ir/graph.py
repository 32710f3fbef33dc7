"""The graph IR: nodes in topological order, each with an op, argument ids, static attrs and a shape.

Forward and backward graphs are the same kind of object, so one shape checker,
one printer, one interpreter and one code generator serve both directions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphdsl.errors import Span
from graphdsl.ir.ops import OPS
from graphdsl.ir.shapes import fmt_shape

LEAF_KINDS = ("input", "target", "param", "const")


@dataclass(frozen=True)
class Node:
    id: int
    op: str
    args: tuple
    attrs: tuple  # sorted (key, value) pairs: hashable, printable, emitted as literals
    shape: tuple
    span: Span | None = None

    @property
    def kw(self) -> dict:
        return dict(self.attrs)

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_KINDS


@dataclass
class Graph:
    nodes: list = field(default_factory=list)
    names: dict = field(default_factory=dict)   # user name -> node id
    values: dict = field(default_factory=dict)  # leaf id -> np.ndarray (params, defaults, consts)

    def add(self, op: str, args=(), attrs=None, span: Span | None = None) -> int:
        attrs = tuple(sorted((attrs or {}).items()))
        shapes = [self.nodes[a].shape for a in args]
        shape = tuple(OPS[op].shape(*shapes, **dict(attrs)))
        node = Node(len(self.nodes), op, tuple(args), attrs, shape, span)
        self.nodes.append(node)
        return node.id

    def leaf(self, kind: str, value: np.ndarray | None, shape: tuple, span: Span | None = None) -> int:
        node = Node(len(self.nodes), kind, (), (), tuple(shape), span)
        self.nodes.append(node)
        if value is not None:
            self.values[node.id] = value
        return node.id

    def copy(self) -> "Graph":
        """A graph to add nodes to, leaving this one as it is (nodes are immutable, so shared)."""
        return Graph(list(self.nodes), dict(self.names), dict(self.values))

    def leaves(self, kind: str | None = None) -> list:
        return [n for n in self.nodes if n.is_leaf and (kind is None or n.op == kind)]

    def name_of(self, node_id: int) -> str | None:
        for name, nid in self.names.items():
            if nid == node_id:
                return name
        return None

    def ancestors(self, outputs) -> set:
        """Ids of every node the outputs depend on, the outputs included."""
        seen, stack = set(), list(outputs)
        while stack:
            nid = stack.pop()
            if nid not in seen:
                seen.add(nid)
                stack.extend(self.nodes[nid].args)
        return seen

    def pretty(self) -> str:
        """One line a node: `%3 = matmul(%1, %2) [2]  # z`."""
        names = {v: k for k, v in self.names.items()}
        rows = []
        for n in self.nodes:
            parts = [f"%{a}" for a in n.args] + [f"{k}={v}" for k, v in n.attrs]
            label = f"  # {names[n.id]}" if n.id in names else ""
            rows.append(f"%{n.id} = {n.op}({', '.join(parts)}) {fmt_shape(n.shape)}{label}")
        return "\n".join(rows)
