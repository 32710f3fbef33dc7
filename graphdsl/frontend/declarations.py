"""Declarations to leaves: `input`, `target`, `param` and `const`, with their shapes and values
(an initialiser's draw or a literal)."""
from __future__ import annotations

import numpy as np

from graphdsl.frontend import ast
from graphdsl.errors import SpecError
from graphdsl.frontend.expressions import check_size
from graphdsl.frontend.functions import INITIALISERS, draw
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import fmt_shape


def init_settings(call: ast.Call, constant) -> dict:
    """An initialiser's keyword settings, checked: known names, given once, sensible values.
    `constant(expr, what)` evaluates each value written."""
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
        kw[key.text], spans[key.text] = float(constant(val, f"`{key.text}`")), val.span
    seed = kw.get("seed", 0.0)
    if seed != int(seed) or seed < 0:
        raise SpecError(f"a seed must be a whole number of at least 0, not {seed:g}", spans["seed"])
    if kw.get("std", 0.0) < 0:
        raise SpecError(f"`std` must be at least 0, not {kw['std']:g}", spans["std"])
    if kw.get("low", -1.0) > kw.get("high", 1.0):
        raise SpecError(f"`low` ({kw.get('low', -1.0):g}) is above `high` ({kw.get('high', 1.0):g})",
                        call.span, hint="swap them")
    return kw


def param_order(defs: dict) -> dict:
    """Each param's place among the spec's params (`defs`: name -> Decl or Assign, in the spec's order)."""
    params = [name for name, d in defs.items() if isinstance(d, ast.Decl) and d.kind == "param"]
    return {name: i for i, name in enumerate(params)}


class Declarations:
    """Adds declared values to `graph` as leaves. `resolve(name, span)` gives a name's node (for
    `size(x)`), `constant(expr, what)` a literal's value; a param with no `seed=` draws from
    (seed, its place among the spec's params), so reordering its uses does not change it."""

    def __init__(self, graph: Graph, resolve, constant, seed: int, param_order: dict):
        self.graph = graph
        self.resolve = resolve
        self.constant = constant
        self.seed = seed
        self.param_order = param_order  # param name -> its place among the spec's params

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
            check_size(shape, f"`{d.name.text}`", d.span)
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

    def initialise(self, d: ast.Decl, shape) -> np.ndarray:
        call = d.value
        if d.kind != "param":
            raise SpecError(f"initialisers such as `{call.func.text}` are for params, not {d.kind}s", call.func.span,
                            hint="give a literal instead, such as `[0, 1]`")
        if shape is None:
            raise SpecError(f"param `{d.name.text}` needs a shape for `{call.func.text}`", d.name.span,
                            hint=f"write `param {d.name.text}[rows, cols] = {call.func.text}(...)`")
        kw = init_settings(call, self.constant)
        rng = np.random.default_rng(int(kw["seed"]) if "seed" in kw else [self.seed, self.param_order[d.name.text]])
        try:
            with np.errstate(over="ignore"):
                value = draw(call.func.text, kw, shape, rng)
        except OverflowError:  # uniform's high - low beyond the largest float
            value = None
        if value is None or not np.isfinite(value).all():
            raise SpecError(f"`{call.func.text}` draws numbers beyond the largest float (about 1.8e308) with these "
                            "settings", call.span, hint="give it a smaller range")
        return value
