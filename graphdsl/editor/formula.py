"""An op's derivative written as a formula: the registry's backward rule (`vjp`), run on named
scalar symbols, and the nodes it builds written back in the spec's notation. Hover shows the very
rule autodiff uses, not a description kept beside it."""
from __future__ import annotations

import inspect

from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.ops.registry import Op
from graphdsl.ir.sym import Sym

# How tightly each infix op binds, as the grammar orders them (graphdsl.lark: + -, then * / @, then
# unary minus, then ^); a name, a number or a call binds tightest.
BINDING = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "neg": 3, "^": 5}
ATOM = 9


def written(graph: Graph, node_id: int, names: dict) -> tuple:
    """(the text of a node, how tightly it binds); `names` maps the symbols' node ids to names."""
    if node_id in names:
        return names[node_id], ATOM
    node = graph.nodes[node_id]
    if node.op == "scalar":
        value = node.kw["value"]
        return f"{value:g}", ATOM if value >= 0 else BINDING["neg"]
    args = [written(graph, a, names) for a in node.args]
    if node.op == "neg":
        text, binding = args[0]
        return "-" + (text if binding >= BINDING["neg"] else f"({text})"), BINDING["neg"]
    infix = OPS[node.op].infix
    if infix is None:
        return f"{node.op}({', '.join(text for text, _ in args)})", ATOM
    level = BINDING[infix]
    (left, lb), (right, rb) = args
    right_assoc = infix == "^"  # 2^3^2 is 2^(3^2); the others group from the left
    left = left if lb > level or (lb == level and not right_assoc) else f"({left})"
    right = right if rb > level or (rb == level and right_assoc) else f"({right})"
    return f"{left} {infix} {right}", level


def derivative(op: Op) -> str | None:
    """`dL/dx = g * y * (1 - y), where g = dL/dy and y = sigmoid(x)` for an elementwise op a spec
    calls; the docstring of a named backward rule for another op; None where the registry says
    nothing more."""
    if op.call is None or op.vjp is None:
        return None
    if not op.elementwise:
        return inspect.getdoc(op.vjp) if inspect.isfunction(op.vjp) and op.vjp.__name__ != "<lambda>" else None
    graph = Graph()
    g, y, *args = (Sym(graph, graph.leaf("input", None, ())) for _ in range(2 + len(op.call.params)))
    names = {g.id: "g", y.id: "y", **{a.id: p for a, p in zip(args, op.call.params)}}
    settings = {key: default for key, (_, default) in op.call.kwargs.items()}
    grads = op.vjp(g, y, *args, **settings)
    lines = []
    for param, grad in zip(op.call.params, grads):
        text = "0 (no gradient flows back)" if grad is None else written(graph, grad.id, names)[0]
        lines.append(f"dL/d{param} = {text}")
    used = set().union(*(graph.ancestors([d.id]) for d in grads if d is not None))
    where = [f"{name} = {meaning}" for sym, name, meaning in
             ((g, "g", "dL/dy"), (y, "y", f"{op.name}({', '.join(op.call.params)})")) if sym.id in used]
    return "; ".join(lines) + (f", where {' and '.join(where)}" if where else "")
