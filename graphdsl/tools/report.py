"""Readable answers for people, in each of the formats (tools/formats.py): value tables,
gradient tables, the model summary, and the tables a notebook shows for values and a History."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphdsl.frontend.spec import Spec
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.shapes import fmt_shape
from graphdsl.tools.formats import Table, dumps, fmt_value, html_table, json_value, one_line, plain


def table(title: str, rows, precision: int = 6, fmt: str = "text") -> str:
    """A titled list of values, name by name (`graphdsl run`'s tables); rows are (name, value).
    Text puts name and shape on the left and the value, indented, on the right."""
    rows = list(rows)
    if fmt == "json":
        return dumps({"title": title, "rows": [{"name": name, **json_value(v)} for name, v in rows]})
    if fmt == "text":
        return "\n".join([title, *plain([[f"{name} {fmt_shape(np.shape(v))}", fmt_value(v, precision)]
                                         for name, v in rows])])
    found = Table(title, ["name", "shape", "value"], [[name, fmt_shape(np.shape(v)), v] for name, v in rows])
    return found.markdown(precision) if fmt == "markdown" else found.latex(precision)


class Values(dict):
    """Values by name, as Model.forward and Model.grad return them: a dict, which a notebook shows
    as a table of names, shapes and values."""

    def _repr_html_(self) -> str:
        return html_table(["name", "shape", "value"],
                          [[name, fmt_shape(np.shape(v)), one_line(v)] for name, v in self.items()])


def size(shape: tuple) -> int:
    return int(np.prod(shape, dtype=np.int64))


def own_nodes(graph: Graph, nid: int) -> tuple[list, list]:
    """What a named node computes itself: (its node and the unnamed nodes feeding it, the named
    nodes it reads). The walk stops at named nodes, so each node belongs to one name."""
    named = set(graph.names.values())
    own, reads, seen, stack = [], [], set(), [nid]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n != nid and n in named:
            reads.append(n)
        else:
            own.append(n)
            stack.extend(graph.nodes[n].args)
    return own, reads


def multiplications(graph: Graph, nid: int) -> int:
    """The multiplications a named node's own expression takes (each op's `mults`)."""
    count = 0
    for n in own_nodes(graph, nid)[0]:
        node = graph.nodes[n]
        if not node.is_leaf:
            count += OPS[node.op].mults([graph.nodes[a].shape for a in node.args], node.shape)
    return count


@dataclass(frozen=True)
class Row:
    name: str
    made_by: str   # the declaration kind, function or op that made it
    shape: tuple
    params: int
    mults: int
    frozen: bool   # a param training leaves as it is (`freeze=`)


@dataclass(frozen=True)
class Summary:
    """Each named node with its op, shape, parameter count and multiplications, then the totals, in
    the layout of Keras' and torchinfo's summaries. str() is the text; a notebook shows a table."""

    spec: str
    rows: tuple

    @property
    def total(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def trainable(self) -> int:
        return sum(r.params for r in self.rows if not r.frozen)

    @property
    def multiplications(self) -> int:
        return sum(r.mults for r in self.rows)

    def totals(self) -> list:
        return [("Total params", self.total), ("Trainable params", self.trainable),
                ("Non-trainable params", self.total - self.trainable),
                ("Total multiplications (forward pass)", self.multiplications)]

    def cells(self) -> list:
        return [[r.name, r.made_by + (", frozen" if r.frozen else ""), fmt_shape(r.shape),
                 f"{r.params:,}" if r.params else "", f"{r.mults:,}" if r.mults else ""] for r in self.rows]

    def render(self, fmt: str = "text") -> str:
        headers = ["name", "op", "shape", "params", "multiplications"]
        if fmt == "json":
            return dumps({"spec": self.spec, "rows": [
                {"name": r.name, "op": r.made_by, "shape": list(r.shape), "params": r.params,
                 "multiplications": r.mults, "trainable": None if r.made_by != "param" else not r.frozen}
                for r in self.rows], "total_params": self.total, "trainable_params": self.trainable,
                "non_trainable_params": self.total - self.trainable, "multiplications": self.multiplications})
        totals = [f"{key}: {n:,}" for key, n in self.totals()]
        if fmt == "text":
            lines = plain([headers, *self.cells()], indent="", right=(3, 4))
            rule = "=" * max(map(len, lines + totals))
            return "\n".join([f"Spec: {self.spec}", rule, lines[0], rule, *lines[1:], rule, *totals, rule])
        if fmt == "markdown":
            return Table(f"Spec: {self.spec}", headers, self.cells(), right=(3, 4),
                         notes=["\n".join(f"- {line}" for line in totals)]).markdown()
        return Table(f"Spec: {self.spec}", headers, self.cells(), right=(3, 4), notes=totals).latex()

    def __str__(self) -> str:
        return self.render()

    __repr__ = __str__  # the layout, not <Summary object>, where a console echoes the result

    def _repr_html_(self) -> str:
        totals = "".join(f"<li>{key}: {n:,}</li>" for key, n in self.totals())
        return (html_table(["name", "op", "shape", "params", "multiplications"], self.cells())
                + f"<ul>{totals}</ul>")


def summary(spec: Spec) -> Summary:
    """The Summary of a checked spec: frozen params (`minimize ... freeze=`) are non-trainable."""
    g = spec.graph
    frozen = set(spec.training.frozen) if spec.training is not None else set()
    rows, counted = [], set()
    for name, nid in g.names.items():
        node = g.nodes[nid]
        repeat = nid in counted  # `a = b`: b's row holds the counts
        counted.add(nid)
        params = size(node.shape) if node.op == "param" and not repeat else 0
        rows.append(Row(name, spec.made_by[name], node.shape, params, 0 if repeat else multiplications(g, nid),
                        name in frozen))
    return Summary(spec.filename, tuple(rows))
