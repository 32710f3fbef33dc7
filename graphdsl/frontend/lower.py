"""AST to graph IR: the `lower()` entry, and each name resolved to the node holding its value.

A definition is lowered once, when first used, so a spec may define its names in any order. What
a definition says is built by declarations.py (leaves) and expressions.py (everything computed);
requests.py checks `show`, `grad` and `jacobian`, and minimize.py the training statements, from
what lowering found. Every problem raises a located SpecError."""
from __future__ import annotations

import numpy as np

from graphdsl.frontend import ast, minimize, requests
from graphdsl.errors import ClassIndexError, DataError, Span, SpecError
from graphdsl.frontend.declarations import Declarations, param_order
from graphdsl.frontend.expand import expand
from graphdsl.frontend.expressions import Expressions
from graphdsl.frontend.names import BUILTINS, definitions, undefined
from graphdsl.frontend.spec import Spec
from graphdsl.ir.graph import Graph
from graphdsl.training.config import Training
from graphdsl.transforms.interpret import evaluate


class Lowering:
    """A spec's definitions (`defs`: name -> Decl or Assign) lowered into one graph.

    While a literal is evaluated, `only_constants` says what it is the value of, and the names it
    uses must be consts or built-ins."""

    def __init__(self, defs: dict, lines: list, seed: int, param_order: dict, only_constants: str | None = None,
                 substituted: frozenset = frozenset()):
        self.defs, self.lines, self.seed, self.param_order = defs, lines, seed, param_order
        self.only_constants, self.substituted = only_constants, substituted  # the settings' and `for` names
        self.graph = Graph()
        self.kinds: dict = {}       # name -> input | target | param | const | node
        self.made_by: dict = {}     # name -> the declaration kind, function or op that made it
        self.resolving: list = []   # names being lowered, innermost last, for cycle reports
        readable = {n for n, d in defs.items()  # where a literal is evaluated, only consts' names
                    if only_constants is None or (isinstance(d, ast.Decl) and d.kind == "const")}
        self.expressions = Expressions(self.graph, self.use, defs, lines, readable | substituted)
        self.declarations = Declarations(self.graph, self.resolve, self.constant, seed, param_order)

    def lower_all(self) -> None:
        """Every definition, in the spec's order (each lowers the names it uses first)."""
        for name in list(self.defs):
            try:
                self.resolve(name, self.defs[name].name.span)
            except RecursionError:
                raise self.too_deep() from None

    def too_deep(self) -> SpecError:
        """Names are lowered depth first, each definition inside the one that uses it, so a chain of
        hundreds of names (each defined by the next) can outgrow Python's recursion limit. Expressions
        alone cannot: the parser caps their depth. `resolving` still holds the chain, innermost last."""
        name = self.resolving[-1]
        return SpecError(f"`{name}` is defined through a chain of values too long to check (each defined through "
                         "the next, on a later line)", self.defs[name].name.span,
                         hint="define values before the lines that use them, or shorten the chain")

    def resolve(self, name: str, span: Span) -> int:
        if name in self.graph.names:
            return self.graph.names[name]
        if name in BUILTINS:
            return self.graph.add("scalar", attrs={"value": BUILTINS[name]}, span=span)
        if name not in self.defs:
            raise undefined(name, span, self.defs)
        if name in self.resolving:
            chain = " -> ".join(self.resolving[self.resolving.index(name):] + [name])
            raise SpecError(f"`{name}` depends on itself: {chain}", self.defs[name].name.span,
                            hint="a graph cannot have cycles; break the loop with a new name")
        self.resolving.append(name)
        stmt = self.defs[name]
        node = (self.declarations.declare(stmt) if isinstance(stmt, ast.Decl) else
                self.expressions.expr(stmt.value))
        self.resolving.pop()
        self.graph.names[name] = node
        self.kinds[name] = stmt.kind if isinstance(stmt, ast.Decl) else "node"
        self.made_by[name] = (stmt.kind if isinstance(stmt, ast.Decl) else
                              stmt.value.func.text if isinstance(stmt.value, ast.Call) else
                              self.graph.nodes[node].op)
        return node

    def use(self, name: str, span: Span) -> int:
        """The node of a name an expression uses, which must be a constant's in a literal."""
        if self.only_constants and name not in BUILTINS:
            stmt = self.defs.get(name)
            if stmt is not None and not (isinstance(stmt, ast.Decl) and stmt.kind == "const"):
                kind = stmt.kind if isinstance(stmt, ast.Decl) else "computed"
                raise SpecError(f"{self.only_constants} must be a constant, but `{name}` is "
                                f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} value", span,
                                hint="use numbers, consts and pi here")
        return self.resolve(name, span)

    def constant(self, expr, what: str) -> np.ndarray:
        """Evaluate a literal expression (numbers, consts, pi, operators, functions) now, in a graph
        of its own."""
        scratch = Lowering(self.defs, self.lines, self.seed, self.param_order, what, self.substituted)
        node = scratch.expressions.expr(expr)
        leaves = {n.id: scratch.graph.values[n.id] for n in scratch.graph.leaves()}
        try:
            with np.errstate(all="ignore"):
                value = np.asarray(evaluate(scratch.graph, leaves, [node])[node], dtype=np.float64)
        except ClassIndexError as err:  # a literal class index out of range, met as it is evaluated
            raise SpecError(f"{what}: {err}", expr.span) from None
        if not np.all(np.isfinite(value)):
            raise SpecError(f"{what} is not finite", expr.span, hint="check for division by zero or overflow")
        return value

    def shapes(self) -> dict:
        return {name: self.graph.nodes[node].shape for name, node in self.graph.names.items()}

    def found(self, statements: list) -> minimize.Lowered:
        """What the training statements read: plain values, each constant they hold evaluated (an
        error evaluating one is kept for minimize.read to raise where it reaches that value)."""
        values = {}
        for what, expr in minimize.constants(statements):
            try:
                values[what, expr] = self.constant(expr, what)
            except SpecError as err:
                values[what, expr] = err
        calls = {name: self.expressions.calls[node] for name, node in self.graph.names.items()
                 if node in self.expressions.calls}
        return minimize.Lowered(self.kinds, self.shapes(), calls, values)


def with_settings(train: Training | None, settings: dict | None, values: dict) -> Training | None:
    """The training, with the `settings` that are not the spec's own (optimizer settings, options)."""
    rest = {k: v[0] if isinstance(v, tuple) and len(v) == 1 else v
            for k, v in (settings or {}).items() if k not in values}
    if rest and train is None:
        raise DataError(f"the spec has no setting `{next(iter(rest))}`"
                        + (f"; its settings are {', '.join(values)}" if values else ""))
    return train.updated(rest) if rest else train


def lower(program: ast.Program, text: str, filename: str = "<spec>", seed: int = 0,
          settings: dict | None = None) -> Spec:
    """Check a parsed spec (`text` is what it was parsed from) and build its graph; every problem
    raises a located SpecError.

    `settings` changes the spec's settings by name, as `--set` does: numbers, lists or tuples of
    numbers, or words for options such as `optimizer` and `dtype` (each is checked where it is used).
    """
    try:
        statements, values = expand(program, settings)
        defs = definitions(statements)
        loops = {stmt.var.text for stmt in program.statements if isinstance(stmt, ast.Repeat)}
        low = Lowering(defs, text.split("\n"), seed, param_order(defs),  # lines as the parser counts them
                       substituted=frozenset(values) | loops)
        low.lower_all()
        train = with_settings(minimize.read(low.found(statements), statements, seed), settings, values)
        asked = requests.read(statements, low.kinds, low.shapes(), low.constant)
        # a `for` block's body is lowered once per pass: one warning per place in the spec
        warned = list({(w.span, w.message): w.located(filename, text) for w in low.expressions.warnings}.values())
        return Spec(low.graph, low.kinds, low.made_by, asked, filename, text, values, train, warned)
    except SpecError as err:
        raise err.located(filename, text) from None
