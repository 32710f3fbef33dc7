"""Expressions to graph nodes: operators, indexing, brackets, and calls with their keyword
settings; each problem is reported with the spec text it concerns."""
from __future__ import annotations

import math
from dataclasses import replace

from graphdsl.errors import Span, SpecError
from graphdsl.frontend import ast
from graphdsl.frontend.readings import (ELEMENTWISE_INFIX, check_call, check_grouping, check_list, check_number,
                                        check_shapes, check_written, code, oriented, product_warnings)
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS, REDUCE, Function
from graphdsl.frontend.names import init_example, suggest
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops.registry import INFIX
from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.sym import Sym

VERBS = {"+": "add", "-": "subtract", "*": "multiply elementwise", "/": "divide",
         "^": "raise", "@": "multiply", "juxt": "multiply"}
# Entries in one value. A float64 array this large takes 800 MB; a larger declared shape is
# almost surely a typo, and allocating it would exhaust memory rather than fail cleanly.
MAX_ENTRIES = 10**8
# Axes of one value. A kernel loops over each in a nested `for`, and Python compiles at most 20
# nested blocks; a minibatch adds an axis and the training loop its own loops.
MAX_AXES = 16


def check_size(shape: tuple, what: str, span: Span) -> None:
    if len(shape) > MAX_AXES:
        raise SpecError(f"{what} would have {len(shape)} axes: graphdsl's values have at most {MAX_AXES}", span,
                        hint="merge axes with reshape")
    entries = math.prod(shape)
    if entries > MAX_ENTRIES:
        raise SpecError(f"{what} would be {fmt_shape(shape)}, {entries:,} entries: more than the "
                        f"{MAX_ENTRIES:,} one value may hold", span, hint="check the sizes for a typo")


def function_of(e: ast.Call, defined) -> Function:
    """The function a call names, given as many arguments as it takes; `defined` holds the spec's
    names, which are values and cannot be called."""
    name = e.func.text
    fn = FUNCTIONS.get(name)
    if fn is None:
        if name in INITIALISERS:
            raise SpecError(f"`{name}` is an initialiser, not a function", e.func.span,
                            hint=f"use it as a param's value: `param W[3, 2] = {init_example(name)}`")
        if name in defined:
            raise SpecError(f"`{name}` is a value, not a function", e.func.span,
                            hint=f"to multiply, leave a space: `{name} (...)`")
        same_letters = [f for f in (*FUNCTIONS, *INITIALISERS) if f.lower() == name.lower()]
        hint = (f"did you mean `{same_letters[0]}`? names are case-sensitive" if same_letters else
                "`size(x)` is written in shapes only, as in `param b[size(x)]`" if name == "size" else
                suggest(name, FUNCTIONS) or f"the functions are {', '.join(sorted(FUNCTIONS))}")
        raise SpecError(f"unknown function `{name}`", e.func.span, hint=hint)
    least = len(fn.params) - fn.optional
    if not least <= len(e.args) <= len(fn.params):
        count = f"{least} or {len(fn.params)}" if fn.optional else str(least)
        want = f"{count} argument{'s' if len(fn.params) != 1 else ''} ({', '.join(fn.params)})"
        named = [f"{key}=..." for key in fn.kwargs]
        raise SpecError(f"`{name}` takes {want}, but {len(e.args)} {'was' if len(e.args) == 1 else 'were'} given",
                        e.span, hint=f"settings are given by name: `{name}({', '.join((*fn.params, *named))})`"
                        if named and len(e.args) > len(fn.params) else None)
    return fn


def subscript(s, size: int | None) -> int | tuple:
    """One axis of an index: an entry (counted from the end if negative), or a slice as
    (start, stop, step) with its ends counted from the start, as the `index` op takes it."""
    if isinstance(s, ast.Num):
        return from_end(s, size)
    if s.step is not None and from_end(s.step, None) <= 0:
        raise SpecError(f"a slice's step must be at least 1, not {s.step.text}", s.step.span,
                        hint="to reverse a vector, list its entries: `[x[2], x[1], x[0]]`")
    start = 0 if s.start is None else from_end(s.start, size)
    stop = size if s.stop is None else from_end(s.stop, size)
    return (start, stop if stop is not None else start + 1, 1 if s.step is None else int(s.step.value))


def from_end(num: ast.Num, size: int | None) -> int:
    if num.value != int(num.value):
        raise SpecError(f"an index must be a whole number, not {num.text}", num.span)
    if abs(num.value) > MAX_ENTRIES:  # past every axis; generated code must not count that far
        raise SpecError(f"an index or step must be at most {MAX_ENTRIES:,} from 0, not {num.text}", num.span)
    i = int(num.value)
    return i + size if size is not None and -size <= i < 0 else i


def shape_setting(key: ast.Ident, val) -> tuple:
    """A shape written as a list of sizes: `shape=[2, 3]`."""
    items = val.items if isinstance(val, ast.Stack) else (val,)
    sizes = tuple(whole_number(key, n) for n in items)
    if not isinstance(val, ast.Stack) or min(sizes) < 1:
        raise SpecError(f"`{key.text}` must be a list of sizes of at least 1, as in `{key.text}=[2, 3]`", val.span)
    return sizes


def whole_number(key: ast.Ident, val) -> int:
    """A keyword setting written as a whole number, perhaps negative."""
    if not isinstance(val, (ast.Num, ast.Neg)) or (isinstance(val, ast.Neg) and not isinstance(val.operand, ast.Num)):
        raise SpecError(f"`{key.text}` must be a whole number", val.span)
    number = val.value if isinstance(val, ast.Num) else -val.operand.value
    if number != int(number):
        raise SpecError(f"`{key.text}` must be a whole number, not {number:g}", val.span)
    if abs(number) > MAX_ENTRIES:  # no axis is longer: a larger stride or window means a typo
        raise SpecError(f"`{key.text}` must be at most {MAX_ENTRIES:,}, not {number:g}", val.span)
    return int(number)


class Expressions:
    """Builds expressions' nodes into `graph`. `lookup(name, span)` gives the node holding a name's
    value; `defined` holds the spec's names, `readable` the names an expression may read here
    (settings and `for` variables among them, which were written in as numbers); `lines` are the
    spec's, to quote in errors."""

    def __init__(self, graph: Graph, lookup, defined, lines: list, readable):
        self.graph = graph
        self.lookup = lookup
        self.defined = defined
        self.readable = readable
        self.lines = lines
        self.calls: dict = {}  # node id -> (function, argument ids), for the nodes calls made
        self.warnings: list = []  # SpecWarnings, in the order met
        self.built: dict = {}  # id() of an expression -> its node, while the expressions are checked

    def snippet(self, span: Span) -> str:
        """The text at `span`, quoted; over lines, its pieces joined by a space (comments and `\\` left out)."""
        if span.end_line > len(self.lines):
            return "this expression"
        if span.line == span.end_line:
            text = self.lines[span.line - 1][span.col - 1:span.end_col - 1]
        else:
            pieces = [self.lines[span.line - 1][span.col - 1:], *self.lines[span.line:span.end_line - 1],
                      self.lines[span.end_line - 1][:span.end_col - 1]]
            text = " ".join(" ".join(code(p).split()) for p in pieces if code(p).strip())
        return f"`{text}`" if len(text) <= 40 else f"`{text[:37]}...`"

    def spelled(self, x, bracket: bool = False) -> str | None:
        """An operand as the spec wrote it, for a hint to quote (bracketed where it is more than a name
        or a call), or None where it spans lines or is too long to quote."""
        snip = self.snippet(x.span)
        if not snip.startswith("`") or snip.endswith("...`"):
            return None
        return snip[1:-1] if not bracket or isinstance(x, (ast.Name, ast.Call, ast.Index)) else f"({snip[1:-1]})"

    def describe(self, node_expr, node: int) -> str:
        return f"{self.snippet(node_expr.span)} ({fmt_shape(self.graph.nodes[node].shape)})"

    def add(self, op, args, attrs, span, problem, hint=None):
        try:
            return self.graph.add(op, args, attrs, span)
        except ShapeError as err:
            raise SpecError(f"{problem()}: {err}", span, hint=hint) from None

    def expr(self, e) -> int:
        node = self.built[id(e)] = self.build(e)
        check_size(self.graph.nodes[node].shape, self.snippet(e.span), e.span)
        return node

    def build(self, e) -> int:
        if isinstance(e, ast.Num):
            check_number(self, e)
            return self.graph.add("scalar", attrs={"value": e.value}, span=e.span)
        if isinstance(e, ast.Name):
            return self.lookup(e.id, e.span)
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
            check_list(self, e)
            return self.add(op, args, None, e.span, lambda: f"cannot build {self.snippet(e.span)}")
        if isinstance(e, ast.Call):
            return self.call(e)
        raise TypeError(f"unknown expression {e!r}")  # the parser builds no other kind

    def binop(self, e: ast.BinOp) -> int:
        check_written(self, e)
        left, right = self.expr(e.left), self.expr(e.right)
        check_shapes(self, e, left, right)
        if e.op == "juxt":
            check_grouping(self, e)
        op = INFIX.get(e.op)
        if e.op == "juxt":
            scalar = not self.graph.nodes[left].shape or not self.graph.nodes[right].shape
            op = "mul" if scalar else "matmul"
        if e.op == "*":
            self.warnings += product_warnings(self, e, left, right)
        if e.op in ELEMENTWISE_INFIX:
            left, right = oriented(self, e, left, right)
        # `x [0]` with a space multiplies by the literal [0]; the user most likely meant to index.
        index_like = (e.op == "juxt" and isinstance(e.right, ast.Stack)
                      and all(isinstance(i, ast.Num) for i in e.right.items))
        return self.add(op, [left, right], None, e.span,
                        lambda: f"cannot {VERBS[e.op]} {self.describe(e.left, left)} "
                                f"{'to the power' if e.op == '^' else 'and'} {self.describe(e.right, right)}",
                        hint="to index, write the index directly after the name, as in `x[0]`"
                             if index_like else None)

    def index(self, e: ast.Index) -> int:
        base = self.expr(e.base)
        shape = self.graph.nodes[base].shape
        idx = tuple(subscript(s, shape[axis] if axis < len(shape) else None) for axis, s in enumerate(e.indices))
        return self.add("index", [base], {"idx": idx}, e.span,
                        lambda: f"cannot index {self.describe(e.base, base)}")

    def call(self, e: ast.Call) -> int:
        fn = function_of(e, self.defined)
        args = [self.expr(a) for a in e.args]
        check_call(self, e, fn, args)
        kwargs = {}
        for key, val in ast.given_once(e.kwargs):
            kwargs[key.text] = self.setting(fn, key, val, args)
        first = len(self.graph.nodes)
        try:
            out = fn.build(*[Sym(self.graph, a) for a in args], **kwargs)
        except ShapeError as err:
            raise SpecError(f"in `{fn.name}`: {err}", e.span) from None
        for i in range(first, len(self.graph.nodes)):  # the call's nodes point at the call, for runtime reports
            if self.graph.nodes[i].span is None:
                self.graph.nodes[i] = replace(self.graph.nodes[i], span=e.span)
        self.calls[out.id] = (fn.name, tuple(args))
        return out.id

    def setting(self, fn: Function, key: ast.Ident, val, args: list) -> object:
        """A call's keyword setting, checked against what the function takes."""
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
        if kind == "shape":
            return shape_setting(key, val)
        number = whole_number(key, val)
        if kind == "axis":
            rank = len(self.graph.nodes[args[0]].shape)
            return number + rank if -rank <= number < 0 else number
        least = 0 if kind == "count" else 1
        if number < least:
            raise SpecError(f"`{key.text}` must be at least {least}", val.span)
        return number
