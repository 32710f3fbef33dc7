"""Readable text for people: value tables, gradient tables and the model summary."""
from __future__ import annotations

import numpy as np

from .ir import fmt_shape
from .lower import Spec


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


def summary(spec: Spec) -> str:
    """Each named node with its op, output shape and parameter count, then totals (like Keras)."""
    g = spec.graph
    rows = [("name", "op", "shape", "params")]
    total = 0
    for name, nid in g.names.items():
        node = g.nodes[nid]
        count = int(np.prod(node.shape)) if node.op == "param" else 0
        total += count
        rows.append((name, spec.made_by[name], fmt_shape(node.shape), str(count) if count else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    rule = "-" * len(lines[0])
    n_params = len(spec.names_of("param"))
    return "\n".join([lines[0], rule, *lines[1:], rule,
                      f"total parameters: {total} in {n_params} param{'s' if n_params != 1 else ''}"])
