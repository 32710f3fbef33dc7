"""AST to graph IR: resolves names, checks shapes and builds nodes, reporting every problem as a located SpecError."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace

import numpy as np

from graphdsl.frontend import ast
from graphdsl.frontend import minimize
from graphdsl.errors import DataError, Span, SpecError
from graphdsl.frontend.expand import expand
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS, REDUCE, draw
from graphdsl.transforms.interpret import evaluate
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.sym import Sym
from graphdsl.training.config import Training

BUILTINS = {"pi": math.pi}
VERBS = {"+": "add", "-": "subtract", "*": "multiply elementwise", "/": "divide",
         "^": "raise", "@": "multiply", "juxt": "multiply"}
# Entries in one value. A float64 array this large takes 800 MB; a larger declared shape is
# almost surely a typo, and allocating it would exhaust memory rather than fail cleanly.
MAX_ENTRIES = 10**8

OPS_OF = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow", "@": "matmul"}


@dataclass(frozen=True)
class Request:
    """Something the spec asks to see: `show`, `grad ... wrt`, or `jacobian ... wrt`."""

    kind: str
    names: tuple          # show: the names; grad: the wrt names; jacobian: (of, wrt)
    loss: str | None = None
    at: np.ndarray | None = None
    span: Span | None = None


@dataclass
class Spec:
    """A checked spec: its graph, what each name is, and what it asks for."""

    graph: Graph
    kinds: dict                      # name -> input | target | param | const | node
    made_by: dict                    # name -> the declaration kind, function or op that made it
    requests: list = field(default_factory=list)
    filename: str = "<spec>"
    source: str = ""
    settings: dict = field(default_factory=dict)   # name -> value, after `--set`
    training: Training | None = None
    # what models build from this spec, by key (kernels, training plans and loops): built once,
    # shared by every model of the spec
    programs: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def loss(self) -> str | None:
        return next((r.loss for r in self.requests if r.kind == "grad"), None)

    def names_of(self, *kinds) -> list:
        return [n for n, k in self.kinds.items() if k in kinds]


def check_size(shape: tuple, what: str, span: Span) -> None:
    entries = math.prod(shape)
    if entries > MAX_ENTRIES:
        raise SpecError(f"{what} would be {fmt_shape(shape)}, {entries:,} entries: more than the "
                        f"{MAX_ENTRIES:,} one value may hold", span, hint="check the sizes for a typo")


def init_example(name: str) -> str:
    return f"{name}()" if name in ("zeros", "ones") else f"{name}(seed=0)"


def suggest(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


class Lowering:
    def __init__(self, program: ast.Program, source: str, seed: int = 0):
        self.source_lines = source.splitlines()
        self.seed = seed
        self.graph = Graph()
        self.defs: dict = {}        # name -> Decl | Assign
        self.kinds: dict = {}
        self.made_by: dict = {}
        self.resolving: list = []   # names being lowered, for cycle reports
        self.only_constants = None  # while evaluating a literal: what it is the value of
        self.calls: dict = {}       # node id -> (function, argument ids), for nodes a call made
        self.param_order = {s.name.text: i for i, s in enumerate(
            s for s in program.statements if isinstance(s, ast.Decl) and s.kind == "param")}
        for stmt in program.statements:
            if isinstance(stmt, (ast.Decl, ast.Assign)):
                self.define(stmt)
        self.requests_ast = [s for s in program.statements if isinstance(s, (ast.Show, ast.Grad, ast.Jacobian))]

    # -- names -----------------------------------------------------------

    def define(self, stmt) -> None:
        name = stmt.name
        if name.text in self.defs:
            first = self.defs[name.text].name.span.line
            raise SpecError(f"`{name.text}` is already defined on line {first}", name.span,
                            hint="give each value its own name")
        if name.text in BUILTINS or name.text in FUNCTIONS or name.text in INITIALISERS:
            what = "constant" if name.text in BUILTINS else "function"
            raise SpecError(f"`{name.text}` is a built-in {what} and cannot be redefined", name.span,
                            hint="choose another name")
        self.defs[name.text] = stmt

    def resolve(self, name: str, span: Span) -> int:
        if name in self.graph.names:
            return self.graph.names[name]
        if name in BUILTINS:
            return self.graph.add("scalar", attrs={"value": BUILTINS[name]}, span=span)
        if name not in self.defs:
            if name in FUNCTIONS:
                raise SpecError(f"`{name}` is a function; call it with its argument, as in `{name}(x)`", span)
            if name in INITIALISERS:
                raise SpecError(f"`{name}` is an initialiser, not a value", span,
                                hint=f"call it, as in `param W[3, 2] = {init_example(name)}`")
            raise SpecError(f"unknown name `{name}`", span,
                            hint=suggest(name, list(self.defs) + list(BUILTINS)) or
                            f"define it, as in `input {name}[2]`, `param {name}[2, 2] = ...` or `{name} = ...`")
        if name in self.resolving:
            chain = " -> ".join(self.resolving[self.resolving.index(name):] + [name])
            raise SpecError(f"`{name}` depends on itself: {chain}", self.defs[name].name.span,
                            hint="a graph cannot have cycles; break the loop with a new name")
        self.resolving.append(name)
        stmt = self.defs[name]
        node = self.declare(stmt) if isinstance(stmt, ast.Decl) else self.expr(stmt.value)
        self.resolving.pop()
        self.graph.names[name] = node
        self.kinds[name] = stmt.kind if isinstance(stmt, ast.Decl) else "node"
        self.made_by[name] = (stmt.kind if isinstance(stmt, ast.Decl) else
                              stmt.value.func.text if isinstance(stmt.value, ast.Call) else
                              self.graph.nodes[node].op)
        return node

    # -- declarations ----------------------------------------------------

    def declare(self, d: ast.Decl) -> int:
        shape = tuple(self.dim(n) for n in d.shape) if d.shape is not None else None
        if shape is not None:
            check_size(shape, f"`{d.name.text}`", d.span)
        value = None
        if d.value is not None:
            try:
                value = self.value_of(d, shape)
            except MemoryError:
                raise SpecError(f"`{d.name.text}` is too large to hold in memory", d.span) from None
            shape = value.shape
        if value is None and d.kind in ("param", "const"):
            raise SpecError(f"{d.kind} `{d.name.text}` needs a value", d.name.span,
                            hint="give an initialiser such as `= xavier(seed=0)`, or a literal such as `= [1, 2]`"
                                 if d.kind == "param" else "give a literal, as in `= 2` or `= [1, 2]`")
        if shape is None:  # only inputs and targets get here: without a shape they are scalars
            shape = ()
        if d.kind == "const" and shape == ():
            return self.graph.add("scalar", attrs={"value": float(value)}, span=d.span)
        return self.graph.leaf(d.kind, value, shape, d.span)

    def value_of(self, d: ast.Decl, shape) -> np.ndarray:
        """A declaration's value: an initialiser's draw, or a literal (a scalar fills a declared shape)."""
        if isinstance(d.value, ast.Call) and d.value.func.text in INITIALISERS:
            return self.initialise(d, shape)
        value = self.constant(d.value, f"the value of {d.kind} `{d.name.text}`")
        if shape is None or value.shape == shape:
            return value
        if value.shape != ():
            raise SpecError(f"`{d.name.text}` is declared {fmt_shape(shape)} but its value is "
                            f"{fmt_shape(value.shape)}", d.value.span, hint="make the declared shape and the literal agree")
        return np.full(shape, float(value))

    def dim(self, e) -> int:
        """A size: a whole number, a setting, `size(x)`, or a sum, difference or product of these."""
        if isinstance(e, ast.Call) and e.func.text == "size" and len(e.args) == 1 and isinstance(e.args[0], ast.Name):
            return int(np.prod(self.graph.nodes[self.resolve(e.args[0].id, e.args[0].span)].shape))
        if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*"):
            left, right = self.dim(e.left), self.dim(e.right)
            n = left + right if e.op == "+" else left - right if e.op == "-" else left * right
        elif isinstance(e, ast.Num):
            n = e.value
        else:
            raise SpecError("a size must be a whole number, a setting, `size(x)` or arithmetic on these", e.span)
        if n != int(n) or n < 1:
            raise SpecError(f"a size must be a whole number of at least 1, not {n:g}", e.span)
        return int(n)

    def constant(self, expr, what: str) -> np.ndarray:
        """Evaluate a literal expression (numbers, consts, pi, operators, functions) now."""
        scratch = Lowering(ast.Program(), "", self.seed)
        scratch.source_lines, scratch.defs = self.source_lines, self.defs
        scratch.only_constants = what
        node = scratch.expr(expr)
        leaves = {n.id: scratch.graph.values[n.id] for n in scratch.graph.leaves()}
        with np.errstate(all="ignore"):
            value = np.asarray(evaluate(scratch.graph, leaves, [node])[node], dtype=np.float64)
        if not np.all(np.isfinite(value)):
            raise SpecError(f"{what} is not finite", expr.span, hint="check for division by zero or overflow")
        return value

    def initialise(self, d: ast.Decl, shape) -> np.ndarray:
        call = d.value
        if d.kind != "param":
            raise SpecError(f"initialisers such as `{call.func.text}` are for params, not {d.kind}s", call.func.span,
                            hint="give a literal instead, such as `[0, 1]`")
        if shape is None:
            raise SpecError(f"param `{d.name.text}` needs a shape for `{call.func.text}`", d.name.span,
                            hint=f"write `param {d.name.text}[rows, cols] = {call.func.text}(...)`")
        kw = self.init_settings(call)
        # Without seed=, the n-th param declared draws from seed (spec seed, n): stable under reordering of uses.
        rng = np.random.default_rng(int(kw["seed"]) if "seed" in kw else [self.seed, self.param_order[d.name.text]])
        return draw(call.func.text, kw, shape, rng)

    def init_settings(self, call: ast.Call) -> dict:
        """An initialiser's keyword settings, checked: known names, given once, sensible values."""
        allowed = INITIALISERS[call.func.text]
        if call.args:
            raise SpecError(f"`{call.func.text}` takes {'keyword arguments only' if allowed else 'no arguments'}",
                            call.args[0].span, hint=f"name each setting; `{call.func.text}` takes {', '.join(allowed)}"
                            if allowed else f"write `{call.func.text}()`")
        kw, spans = {}, {}
        for key, val in ast.given_once(call.kwargs):
            if key.text not in allowed:
                raise SpecError(f"`{call.func.text}` has no setting `{key.text}`", key.span,
                                hint=f"it takes {', '.join(allowed)}" if allowed else "it takes no settings")
            kw[key.text], spans[key.text] = float(self.constant(val, f"`{key.text}`")), val.span
        seed = kw.get("seed", 0.0)
        if seed != int(seed) or seed < 0:
            raise SpecError(f"a seed must be a whole number of at least 0, not {seed:g}", spans["seed"])
        if kw.get("std", 0.0) < 0:
            raise SpecError(f"`std` must be at least 0, not {kw['std']:g}", spans["std"])
        if kw.get("low", -1.0) > kw.get("high", 1.0):
            raise SpecError(f"`low` ({kw.get('low', -1.0):g}) is above `high` ({kw.get('high', 1.0):g})",
                            call.span, hint="swap them")
        return kw

    # -- expressions -----------------------------------------------------

    def snippet(self, span: Span) -> str:
        if span.line != span.end_line or span.line > len(self.source_lines):
            return "this expression"
        text = self.source_lines[span.line - 1][span.col - 1:span.end_col - 1]
        return f"`{text}`" if len(text) <= 40 else f"`{text[:37]}...`"

    def describe(self, node_expr, node: int) -> str:
        return f"{self.snippet(node_expr.span)} ({fmt_shape(self.graph.nodes[node].shape)})"

    def add(self, op, args, attrs, span, problem, hint=None):
        try:
            return self.graph.add(op, args, attrs, span)
        except ShapeError as err:
            raise SpecError(f"{problem()}: {err}", span, hint=hint) from None

    def expr(self, e) -> int:
        node = self.build(e)
        check_size(self.graph.nodes[node].shape, self.snippet(e.span), e.span)
        return node

    def build(self, e) -> int:
        if isinstance(e, ast.Num):
            return self.graph.add("scalar", attrs={"value": e.value}, span=e.span)
        if isinstance(e, ast.Name):
            if self.only_constants and e.id not in BUILTINS:
                stmt = self.defs.get(e.id)
                if stmt is not None and not (isinstance(stmt, ast.Decl) and stmt.kind == "const"):
                    kind = stmt.kind if isinstance(stmt, ast.Decl) else "computed"
                    raise SpecError(f"{self.only_constants} must be a constant, but `{e.id}` is "
                                    f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} value", e.span,
                                    hint="use numbers, consts and pi here")
            return self.resolve(e.id, e.span)
        if isinstance(e, ast.BinOp):
            return self.binop(e)
        if isinstance(e, ast.Neg):
            if isinstance(e.operand, ast.Num):  # a negative number, as checks of literals see it
                return self.graph.add("scalar", attrs={"value": -e.operand.value}, span=e.span)
            return self.graph.add("neg", [self.expr(e.operand)], span=e.span)
        if isinstance(e, ast.Transpose):
            return self.graph.add("transpose", [self.expr(e.operand)], span=e.span)
        if isinstance(e, ast.Index):
            return self.index(e)
        if isinstance(e, (ast.Stack, ast.Concat)):
            op = "stack" if isinstance(e, ast.Stack) else "concat"
            args = [self.expr(i) for i in e.items]
            return self.add(op, args, None, e.span, lambda: f"cannot build {self.snippet(e.span)}")
        if isinstance(e, ast.Call):
            return self.call(e)
        raise TypeError(f"unknown expression {e!r}")  # the parser builds no other kind

    def binop(self, e: ast.BinOp) -> int:
        if e.op == "juxt":
            self.check_juxtaposition(e)
        left, right = self.expr(e.left), self.expr(e.right)
        op = OPS_OF.get(e.op)
        if e.op == "juxt":
            scalar = not self.graph.nodes[left].shape or not self.graph.nodes[right].shape
            op = "mul" if scalar else "matmul"
        # `x [0]` with a space multiplies by the literal [0]; the user most likely meant to index.
        index_like = (e.op == "juxt" and isinstance(e.right, ast.Stack)
                      and all(isinstance(i, ast.Num) for i in e.right.items))
        return self.add(op, [left, right], None, e.span,
                        lambda: f"cannot {VERBS[e.op]} {self.describe(e.left, left)} "
                                f"{'to the power' if e.op == '^' else 'and'} {self.describe(e.right, right)}",
                        hint="to index, write the index directly after the name, as in `x[0]`"
                             if index_like else None)

    def check_juxtaposition(self, e: ast.BinOp) -> None:
        """Products by juxtaposition that are almost always a typo: `[1 2]`, `x .5`, `[1, 2] [3, 4]`."""
        if isinstance(e.right, ast.Num):
            raise SpecError("a number written after a value is read as a product", e.right.span,
                            hint="write the number first (`2 x`) or use `*`; separate list entries with `,`")
        literals = (ast.Stack, ast.Concat)
        if isinstance(e.left, literals) and isinstance(e.right, literals):
            raise SpecError("two bracketed lists side by side are read as a product", e.span,
                            hint="separate the rows of a matrix with `,`, as in `[[1, 2], [3, 4]]`")

    def index(self, e: ast.Index) -> int:
        base = self.expr(e.base)
        shape = self.graph.nodes[base].shape
        idx = []
        for axis, num in enumerate(e.indices):
            if num.value != int(num.value):
                raise SpecError(f"an index must be a whole number, not {num.text}", num.span)
            i = int(num.value)
            if axis < len(shape) and -shape[axis] <= i < 0:
                i += shape[axis]
            idx.append(i)
        return self.add("index", [base], {"idx": tuple(idx)}, e.span,
                        lambda: f"cannot index {self.describe(e.base, base)}")

    def call(self, e: ast.Call) -> int:
        name = e.func.text
        fn = FUNCTIONS.get(name)
        if fn is None:
            if name in INITIALISERS:
                raise SpecError(f"`{name}` is an initialiser, not a function", e.func.span,
                                hint=f"use it as a param's value: `param W[3, 2] = {init_example(name)}`")
            if name in self.defs:
                raise SpecError(f"`{name}` is a value, not a function", e.func.span,
                                hint=f"to multiply, leave a space: `{name} (...)`")
            raise SpecError(f"unknown function `{name}`", e.func.span,
                            hint=suggest(name, FUNCTIONS) or f"the functions are {', '.join(sorted(FUNCTIONS))}")
        least = len(fn.params) - fn.optional
        if not least <= len(e.args) <= len(fn.params):
            count = f"{least} or {len(fn.params)}" if fn.optional else str(least)
            want = f"{count} argument{'s' if len(fn.params) != 1 else ''} ({', '.join(fn.params)})"
            raise SpecError(f"`{name}` takes {want}, but {len(e.args)} {'was' if len(e.args) == 1 else 'were'} given",
                            e.span)
        args = [self.expr(a) for a in e.args]
        kwargs = {}
        for key, val in ast.given_once(e.kwargs):
            kwargs[key.text] = self.kwarg(fn, key, val, args)
        first = len(self.graph.nodes)
        try:
            out = fn.build(*[Sym(self.graph, a) for a in args], **kwargs)
        except ShapeError as err:
            raise SpecError(f"in `{name}`: {err}", e.span) from None
        for i in range(first, len(self.graph.nodes)):  # the call's nodes point at the call, for runtime reports
            if self.graph.nodes[i].span is None:
                self.graph.nodes[i] = replace(self.graph.nodes[i], span=e.span)
        self.calls[out.id] = (name, tuple(args))
        return out.id

    def kwarg(self, fn, key: ast.Ident, val, args) -> object:
        if key.text not in fn.kwargs:
            allowed = ", ".join(fn.kwargs) or "no settings"
            raise SpecError(f"`{fn.name}` has no setting `{key.text}`", key.span,
                            hint=suggest(key.text, fn.kwargs) or f"it takes {allowed}")
        kind = fn.kwargs[key.text][0]
        if kind == "reduce":
            if not isinstance(val, ast.Name) or val.id not in REDUCE:
                given = f", not `{val.id}`" if isinstance(val, ast.Name) else ""
                raise SpecError(f"`reduce` must be `mean` or `sum`{given}", val.span)
            return val.id
        if not isinstance(val, (ast.Num, ast.Neg)) or (isinstance(val, ast.Neg) and not isinstance(val.operand, ast.Num)):
            raise SpecError(f"`{key.text}` must be a whole number", val.span)
        number = val.value if isinstance(val, ast.Num) else -val.operand.value
        if number != int(number):
            raise SpecError(f"`{key.text}` must be a whole number, not {number:g}", val.span)
        number = int(number)
        if kind == "axis":
            rank = len(self.graph.nodes[args[0]].shape)
            return number + rank if -rank <= number < 0 else number
        least = 0 if kind == "count" else 1
        if number < least:
            raise SpecError(f"`{key.text}` must be at least {least}", val.span)
        return number

    # -- requests --------------------------------------------------------

    def requests(self) -> list:
        out = []
        for r in self.requests_ast:
            if isinstance(r, ast.Show):
                out.append(Request("show", tuple(self.known(n) for n in r.names), span=r.span))
            elif isinstance(r, ast.Grad):
                loss = self.known(r.loss)
                shape = self.graph.nodes[self.graph.names[loss]].shape
                if shape != ():
                    raise SpecError(f"the loss `{loss}` must be a scalar, but it is {fmt_shape(shape)}", r.loss.span,
                                    hint=f"reduce it, e.g. `sum({loss})` or `mean({loss})`")
                out.append(Request("grad", tuple(self.differentiable(n) for n in r.wrt), loss=loss, span=r.span))
            else:
                of, wrt = self.known(r.of), self.differentiable(r.wrt)
                at = None
                if r.at is not None and self.kinds[wrt] == "node":
                    raise SpecError(f"`at` sets the value of an input, target or param, but `{wrt}` is computed",
                                    r.at.span, hint=f"drop `at ...` to differentiate at `{wrt}`'s computed value")
                if r.at is not None:
                    at = self.constant(r.at, "the point after `at`")
                    want = self.graph.nodes[self.graph.names[wrt]].shape
                    if at.shape != want:
                        raise SpecError(f"the point after `at` is {fmt_shape(at.shape)}, but `{wrt}` is "
                                        f"{fmt_shape(want)}", r.at.span, hint=f"give a value shaped like `{wrt}`")
                out.append(Request("jacobian", (of, wrt), at=at, span=r.span))
        return out

    def known(self, ident: ast.Ident) -> str:
        """A name the spec defines, as `show`, `grad`, `minimize` and `data` refer to one."""
        if ident.text in BUILTINS and ident.text not in self.defs:  # a built-in has no node of its own name
            raise SpecError(f"`{ident.text}` is a built-in constant, not a value the spec defines", ident.span,
                            hint=f"name it first, as in `c = {ident.text}`")
        self.resolve(ident.text, ident.span)
        return ident.text

    def differentiable(self, ident: ast.Ident) -> str:
        name = self.known(ident)
        if self.kinds.get(name) == "const":
            raise SpecError(f"`{name}` is a constant, so it has no gradient", ident.span,
                            hint=f"to differentiate with respect to it, declare it `param {name} = ...`")
        return name


def too_deep(low: Lowering) -> SpecError:
    """Names are lowered depth first, each definition inside the one that uses it, so a chain of
    hundreds of names (each defined by the next) can outgrow Python's recursion limit. Expressions
    alone cannot: the parser caps their depth. `resolving` still holds the chain, innermost last."""
    name = low.resolving[-1]
    return SpecError(f"`{name}` is defined through a chain of values too long to check (each defined through "
                     "the next, on a later line)", low.defs[name].name.span,
                     hint="define values before the lines that use them, or shorten the chain")


def lower(program: ast.Program, source: str, filename: str = "<spec>", seed: int = 0,
          settings: dict | None = None) -> Spec:
    """Check a parsed spec and build its graph; every problem raises a located SpecError.

    `settings` changes the spec's settings by name, as `--set` does: numbers, lists or tuples of
    numbers, or words for options such as `optimizer` and `dtype` (each is checked where it is used).
    """
    try:
        statements, values = expand(program, settings)
        low = Lowering(ast.Program(statements), source, seed)
        for name in list(low.defs):
            try:
                low.resolve(name, low.defs[name].name.span)
            except RecursionError:
                raise too_deep(low) from None
        train = minimize.read(low, statements, seed)
        rest = {k: v[0] if isinstance(v, tuple) and len(v) == 1 else v
                for k, v in (settings or {}).items() if k not in values}
        if rest and train is None:
            raise DataError(f"the spec has no setting `{next(iter(rest))}`"
                            + (f"; its settings are {', '.join(values)}" if values else ""))
        train = train.updated(rest) if rest else train
        return Spec(low.graph, low.kinds, low.made_by, low.requests(), filename, source, values, train)
    except SpecError as err:
        raise err.located(filename, source) from None
