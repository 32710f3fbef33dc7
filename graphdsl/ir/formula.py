"""Ops written back in the spec's notation, as formulas for people: an op's derivative from its
registry entry's backward rule (`vjp`), run on named scalar symbols (editor hover text), and
`Expr`, one entry of a value as a formula that simplifies as it is built (explain's local
derivatives). Both show the very rule autodiff uses, not a description kept beside it."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.ops.registry import INFIX, Op
from graphdsl.ir.sym import Sym

# How tightly each infix op binds, as the grammar orders them (graphdsl.lark: + -, then * / @, then
# unary minus, then ^); a name, a number or a call binds tightest.
BINDING = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "neg": 3, "^": 5}
ATOM = 9


def number(value: float) -> tuple:
    """(the text of a number, how tightly it binds): as %g writes it where that reads back to the
    same float (2, 0.5, 1e-07), else as a fraction with a small denominator (1/3, a mean's factor),
    else at full precision; a negative number binds as unary minus, a fraction as a division."""
    value = float(value) + 0.0
    text = f"{value:g}"
    if math.isfinite(value) and float(text) != value:
        ratio = Fraction(value).limit_denominator(1000)
        if float(ratio) == value:
            return f"{ratio.numerator}/{ratio.denominator}", BINDING["/"]
        text = repr(value)
    return text, ATOM if not value < 0 else BINDING["neg"]


def combine(op: str, args: list) -> tuple:
    """(the text of `op` applied to args already written as (text, binding), how tightly it binds)."""
    if op == "neg":
        text, binding = args[0]
        return "-" + (text if binding >= BINDING["neg"] else f"({text})"), BINDING["neg"]
    infix = OPS[op].infix
    if infix is None:
        return f"{op}({', '.join(text for text, _ in args)})", ATOM
    level = BINDING[infix]
    (left, lb), (right, rb) = args
    right_assoc = infix == "^"  # 2^3^2 is 2^(3^2); the others group from the left
    left = left if lb > level or (lb == level and not right_assoc) else f"({left})"
    right = right if rb > level or (rb == level and right_assoc) else f"({right})"
    return f"{left} {infix} {right}", level


def written(graph: Graph, node_id: int, names: dict) -> tuple:
    """(the text of a node, how tightly it binds); `names` maps node ids to the names they are
    written by, and the walk stops there. Built bottom-up, so a deep expression needs no deep stack."""
    own, stack = set(), [node_id]
    while stack:
        nid = stack.pop()
        if nid not in own and nid not in names:
            own.add(nid)
            stack.extend(graph.nodes[nid].args)
    texts = {nid: (name, ATOM) for nid, name in names.items()}
    for nid in sorted(own):  # ids are in computation order: args come first
        node = graph.nodes[nid]
        texts[nid] = (number(node.kw["value"]) if node.op == "scalar"
                      else combine(node.op, [texts[a] for a in node.args]))
    return texts[node_id]


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


@dataclass(frozen=True)
class Expr:
    """One entry of a value, written as a formula; `value` is set where it is a known number. NumPy
    runs structural ops (matmul, outer, sum, transpose, ...) on arrays of these through the
    arithmetic below, and `apply` runs an elementwise op, so an entry that is 0 by structure (a
    one-hot seed times anything) comes out as the number 0. It has no __float__ on purpose: an op's
    NumPy reference that needs real numbers fails on it instead of computing something else."""

    text: str
    binding: int = ATOM
    value: float | None = None
    negates: "Expr | None" = None  # x, where this is -x: so that -(-x) is x again

    @staticmethod
    def of(x) -> "Expr":
        return x if isinstance(x, Expr) else Expr(*number(float(x)), float(x))

    def __add__(self, o): return apply(INFIX["+"], [self, o])
    def __radd__(self, o): return apply(INFIX["+"], [o, self])
    def __sub__(self, o): return apply(INFIX["-"], [self, o])
    def __rsub__(self, o): return apply(INFIX["-"], [o, self])
    def __mul__(self, o): return apply(INFIX["*"], [self, o])
    def __rmul__(self, o): return apply(INFIX["*"], [o, self])
    def __truediv__(self, o): return apply(INFIX["/"], [self, o])
    def __rtruediv__(self, o): return apply(INFIX["/"], [o, self])
    def __neg__(self): return apply("neg", [self])


def apply(op: str, args: list) -> Expr:
    """`op` on entries, simplified: numbers fold through the op's own NumPy reference, and the
    identities of + - * / ^ and negation drop terms that are 0 and factors that are 1."""
    args = [Expr.of(a) for a in args]
    if all(a.value is not None for a in args):
        with np.errstate(all="ignore"):
            return Expr.of(float(OPS[op].ref(*(np.float64(a.value) for a in args))))
    symbol = "neg" if op == "neg" else OPS[op].infix
    found = simplified(symbol, *[a.value for a in args], *args) if symbol else None
    if found is not None:
        return found
    return Expr(*combine(op, [(a.text, a.binding) for a in args]), negates=args[0] if op == "neg" else None)


def simplified(symbol, *found) -> Expr | None:
    """The identities that drop terms that are 0 and factors that are 1 (x + 0, 0 * x, 1 * x, x / 1,
    x^1, x^0), x + x = 2 * x, and those that move a minus sign outwards (x + -y = x - y, -1 + x =
    x - 1, -x * y = -(x * y), -(-x) = x); None where none applies."""
    if symbol == "neg":
        return found[1].negates
    a, b, x, y = found
    neg = lambda e: apply("neg", [e])
    rules = {"+": ((a == 0, y), (b == 0, x), (x.text == y.text, lambda: apply(INFIX["*"], [2.0, x])),
                   (a is not None and a < 0, lambda: apply(INFIX["-"], [y, -a])),
                   (b is not None and b < 0, lambda: apply(INFIX["-"], [x, -b])),
                   (y.negates, lambda: apply(INFIX["-"], [x, y.negates])),
                   (x.negates, lambda: apply(INFIX["-"], [y, x.negates]))),
             "-": ((b == 0, x), (a == 0, lambda: neg(y)), (y.negates, lambda: apply(INFIX["+"], [x, y.negates]))),
             "*": ((a == 0 or b == 0, Expr.of(0.0)), (a == 1, y), (b == 1, x), (a is not None and a < 0,
                   lambda: neg(apply(INFIX["*"], [-a, y]))), (b is not None and b < 0, lambda: neg(apply(INFIX["*"], [x, -b]))),
                   (x.negates, lambda: neg(apply(INFIX["*"], [x.negates, y]))),
                   (y.negates, lambda: neg(apply(INFIX["*"], [x, y.negates])))),
             "/": ((a == 0, Expr.of(0.0)), (b == 1, x), (a is not None and a < 0, lambda: neg(apply(INFIX["/"], [-a, y]))),
                   (x.negates, lambda: neg(apply(INFIX["/"], [x.negates, y]))),
                   (y.negates, lambda: neg(apply(INFIX["/"], [x, y.negates])))),
             "^": ((b == 1, x), (b == 0, Expr.of(1.0)))}
    for holds, result in rules.get(symbol, ()):
        if holds is not None and holds is not False:
            return result() if callable(result) else result
    return None
