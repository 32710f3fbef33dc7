"""`graphdsl draw`: a spec's graph as a picture, one box per named node (its name, what made it,
its shape, its value and its gradient), params, inputs, targets and constants each styled apart,
and an edge from each named node to each one that reads it, labelled with the ops that read it.

The graphviz package writes the DOT text; Graphviz's `dot` program, from the system, lays it out
as SVG or PNG. Without `dot`, DOT text still works, and SVG or PNG is a DrawError naming the
install command."""
from __future__ import annotations

import html

import numpy as np

from graphdsl.errors import DataError
from graphdsl.ir.ops import OPS
from graphdsl.ir.shapes import fmt_shape
from graphdsl.tools.formats import fmt_value
from graphdsl.tools.report import own_nodes

FORMATS = ("dot", "svg", "png")
PACKAGE = 'pip install "graphdsl[draw]"'
PROGRAM = ("apt-get install graphviz (Debian, Ubuntu), brew install graphviz (macOS), or conda install "
           "graphviz; --format dot writes the DOT text without it")
WHOLE = 12      # a value with more entries than this is drawn as its range and mean
PRECISION = 4   # significant digits in a box
# fill and border of each kind of named node: params warm, data cool, computed values plain
STYLE = {
    "param": {"shape": "box", "style": "filled", "fillcolor": "#fde8c8", "color": "#b35c00", "penwidth": "2"},
    "input": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe9fb", "color": "#2f5f9e"},
    "target": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dcf2dc", "color": "#2e7d32"},
    "const": {"shape": "box", "style": "dashed,filled", "fillcolor": "#eeeeee", "color": "#777777"},
    "node": {"shape": "box", "style": "filled", "fillcolor": "#ffffff", "color": "#444444"},
}


class DrawError(Exception):
    """What draw needs and does not have, with the command that installs it (exit 2)."""


def compact(value, precision: int = PRECISION) -> list:
    """A value as lines for a box: every entry while there are few (a matrix a row a line), else
    how many, their range and their mean."""
    value = np.asarray(value, dtype=np.float64)
    if value.size <= WHOLE:
        return fmt_value(value, precision).splitlines()
    with np.errstate(all="ignore"):
        low, high, mean = np.nanmin(value), np.nanmax(value), np.nanmean(value)
    number = lambda v: f"{v + 0.0:.{precision}g}"
    return [f"{value.size:,} entries", f"from {number(low)} to {number(high)}, mean {number(mean)}"]


def label(names: list, made_by: str, shape: tuple, value, grad, loss: str | None) -> str:
    """A box's HTML-like label: bold name(s), what made it and its shape, then value and gradient."""
    rows = [f"<b>{html.escape(' = '.join(names))}</b>", html.escape(f"{made_by} {fmt_shape(shape)}")]
    for head, shown in (("", value), (f"d{loss}/d{names[0]} ", grad)):
        if shown is not None:
            lines = compact(shown)
            rows.append(html.escape(f"{head}= {lines[0]}") + "".join(
                '<br align="left"/>' + html.escape(f"{' ' * (len(head) + 2)}{line}") for line in lines[1:]))
    cells = "".join(f'<tr><td align="left">{row}</td></tr>' for row in rows)
    return f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{cells}</table>>'


def readers(graph, nid: int, made_by: str) -> dict:
    """{named parent: the edge's label}: the ops of the node's own expression that read the parent,
    or the function that made it where that is no single op (`bce`, `mse`)."""
    own, reads = own_nodes(graph, nid)
    found = {}
    for n in own:
        for arg in graph.nodes[n].args:
            if arg in reads:
                found.setdefault(arg, set()).add(graph.nodes[n].op)
    return {p: made_by if made_by not in OPS else ", ".join(sorted(ops)) for p, ops in found.items()}


def shown(model) -> tuple:
    """(values, gradients of the loss) by name, each None where it cannot be had without data."""
    try:
        values = model.forward()
    except DataError:
        return None, None
    return values, (model.grad(model.loss) if model.loss is not None else None)


def digraph(model):
    """The graph as a graphviz.Digraph, left to right, the loss drawn with a double border."""
    try:
        import graphviz
    except ModuleNotFoundError:
        raise DrawError(f"graphdsl draw needs the graphviz package, which is not installed: {PACKAGE}") from None
    spec, g = model.spec, model.spec.graph
    values, grads = shown(model)
    drawn = graphviz.Digraph(spec.filename, graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                             node_attr={"fontname": "Helvetica", "fontsize": "11", "margin": "0.08,0.04"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555"})
    names = {}
    for name, nid in g.names.items():
        names.setdefault(nid, []).append(name)
    for nid, called in names.items():
        first = called[0]
        grad = grads[first] if grads is not None and spec.kinds[first] != "const" else None
        drawn.node(first, label(called, spec.made_by[first], g.nodes[nid].shape,
                                values[first] if values is not None else None, grad, model.loss),
                   **STYLE[spec.kinds[first]], **({"peripheries": "2"} if first == model.loss else {}))
        for parent, ops in readers(g, nid, spec.made_by[first]).items():
            drawn.edge(names[parent][0], first, label=ops)
    return drawn


def picture(model, fmt: str) -> bytes:
    """The graph as DOT text, SVG or PNG."""
    drawn = digraph(model)
    if fmt == "dot":
        return drawn.source.encode()
    import graphviz

    try:
        return drawn.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise DrawError(f"drawing {fmt.upper()} needs Graphviz's `dot` program, which is not installed: "
                        f"{PROGRAM}") from None


def notebook_svg(model) -> str | None:
    """The SVG for a notebook, or None where Graphviz is missing (the notebook shows text instead)."""
    try:
        return picture(model, "svg").decode()
    except DrawError:
        return None
