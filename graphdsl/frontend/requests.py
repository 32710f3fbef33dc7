"""`show`, `grad ... wrt` and `jacobian ... wrt`: what a spec asks to see, checked against what
lowering found. `kinds` says what each defined name is, `shapes` its value's shape."""
from __future__ import annotations

from graphdsl.errors import SpecError
from graphdsl.frontend import ast
from graphdsl.frontend.names import known
from graphdsl.frontend.spec import Request
from graphdsl.ir.shapes import fmt_shape


def differentiable(ident: ast.Ident, kinds: dict) -> str:
    name = known(ident, kinds)
    if kinds[name] == "const":
        raise SpecError(f"`{name}` is a constant, so it has no gradient", ident.span,
                        hint=f"to differentiate with respect to it, declare it `param {name} = ...`")
    return name


def grad(r: ast.Grad, kinds: dict, shapes: dict) -> Request:
    loss = known(r.loss, kinds)
    if shapes[loss] != ():
        raise SpecError(f"the loss `{loss}` must be a scalar, but it is {fmt_shape(shapes[loss])}", r.loss.span,
                        hint=f"reduce it, e.g. `sum({loss})` or `mean({loss})`")
    return Request("grad", tuple(differentiable(n, kinds) for n in r.wrt), loss=loss, span=r.span)


def jacobian(r: ast.Jacobian, kinds: dict, shapes: dict, constant) -> Request:
    of, wrt = known(r.of, kinds), differentiable(r.wrt, kinds)
    at = None
    if r.at is not None and kinds[wrt] == "node":
        raise SpecError(f"`at` sets the value of an input, target or param, but `{wrt}` is computed",
                        r.at.span, hint=f"drop `at ...` to differentiate at `{wrt}`'s computed value")
    if r.at is not None:
        at = constant(r.at, "the point after `at`")
        if at.shape != shapes[wrt]:
            raise SpecError(f"the point after `at` is {fmt_shape(at.shape)}, but `{wrt}` is "
                            f"{fmt_shape(shapes[wrt])}", r.at.span, hint=f"give a value shaped like `{wrt}`")
    return Request("jacobian", (of, wrt), at=at, span=r.span)


def read(statements: list, kinds: dict, shapes: dict, constant) -> list:
    """The spec's requests, in its order; `constant(expr, what)` evaluates the point after `at`."""
    out = []
    for r in statements:
        if isinstance(r, ast.Show):
            out.append(Request("show", tuple(known(n, kinds) for n in r.names), span=r.span))
        elif isinstance(r, ast.Grad):
            out.append(grad(r, kinds, shapes))
        elif isinstance(r, ast.Jacobian):
            out.append(jacobian(r, kinds, shapes, constant))
    return out
