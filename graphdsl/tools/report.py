"""Readable text for people: value tables, gradient tables and the model summary."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.shapes import fmt_shape
from graphdsl.frontend.spec import Spec


def fmt_value(value, precision: int = 6) -> str:
    value = np.asarray(value) + 0.0  # prints -0.0 as 0
    if value.ndim == 0:
        return f"{float(value):.{precision}g}"
    return np.array2string(value, separator=", ", max_line_width=100,
                           formatter={"float_kind": lambda v: f"{v:.{precision}g}"})


def table(title: str, rows, precision: int = 6) -> str:
    """A titled two-column table: name and shape on the left, the value, indented, on the right."""
    out = [title]
    width = max((len(f"{name} {fmt_shape(np.shape(v))}") for name, v in rows), default=0)
    for name, value in rows:
        left = f"{name} {fmt_shape(np.shape(value))}".ljust(width)
        text = fmt_value(value, precision).splitlines()
        out.append(f"  {left}  {text[0]}")
        out.extend(f"  {' ' * width}  {line}".rstrip() for line in text[1:])
    return "\n".join(out)


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


def summary(spec: Spec) -> str:
    """Each named node with its op, output shape, parameter count and multiplications, then totals
    (like Keras)."""
    g = spec.graph
    rows = [("name", "op", "shape", "params", "multiplications")]
    params = mults = 0
    counted = set()
    for name, nid in g.names.items():
        node = g.nodes[nid]
        repeat = nid in counted  # `a = b`: b's row holds the counts
        counted.add(nid)
        n_params = size(node.shape) if node.op == "param" and not repeat else 0
        n_mults = 0 if repeat else multiplications(g, nid)
        params, mults = params + n_params, mults + n_mults
        rows.append((name, spec.made_by[name], fmt_shape(node.shape), str(n_params or ""), str(n_mults or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    rule = "-" * max(map(len, lines))
    declared = len(spec.names_of("param"))
    return "\n".join([lines[0], rule, *lines[1:], rule,
                      f"total parameters: {params} in {declared} param{'s' if declared != 1 else ''}",
                      f"total multiplications: {mults} (forward pass)"])
