"""What a name in a spec can be: a value the spec defines, a built-in constant, a function or an
initialiser; each spec definition is found once, and a name that is none of these is an error."""
from __future__ import annotations

import difflib
import math

from graphdsl.errors import Span, SpecError
from graphdsl.frontend import ast
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS

BUILTINS = {"pi": math.pi}


def suggest(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def init_example(name: str) -> str:
    return f"{name}()" if name in ("zeros", "ones") else f"{name}(seed=0)"


def definitions(statements: list) -> dict:
    """Each name the statements define -> its Decl or Assign, in the spec's order. A name is
    defined once, and never as a built-in constant, function or initialiser."""
    defs = {}
    for stmt in statements:
        if not isinstance(stmt, (ast.Decl, ast.Assign)):
            continue
        name = stmt.name
        if name.text in defs:
            first = defs[name.text].name.span.line
            raise SpecError(f"`{name.text}` is already defined on line {first}", name.span,
                            hint="give each value its own name")
        if name.text in BUILTINS or name.text in FUNCTIONS or name.text in INITIALISERS:
            what = "constant" if name.text in BUILTINS else "function"
            raise SpecError(f"`{name.text}` is a built-in {what} and cannot be redefined", name.span,
                            hint="choose another name")
        defs[name.text] = stmt
    return defs


def undefined(name: str, span: Span, defined) -> SpecError:
    """The error for a value's name that is neither `defined` nor a built-in constant."""
    if name in FUNCTIONS:
        params = FUNCTIONS[name].params
        return SpecError(f"`{name}` is a function; call it with its argument{'s' * (len(params) > 1)}, as in "
                         f"`{name}({', '.join(params)})`", span)
    if name in INITIALISERS:
        return SpecError(f"`{name}` is an initialiser, not a value", span,
                         hint=f"call it, as in `param W[3, 2] = {init_example(name)}`")
    if name.strip("_0123456789") == "" and name.startswith("_"):  # `1_000`: a number, then a name `_000`
        return SpecError(f"unknown name `{name}`", span, hint="numbers are written without `_`: 1000, not 1_000")
    return SpecError(f"unknown name `{name}`", span,
                     hint=suggest(name, list(defined) + list(BUILTINS)) or
                     f"define it, as in `input {name}[2]`, `param {name}[2, 2] = ...` or `{name} = ...`")


def known(ident: ast.Ident, defined) -> str:
    """A name the spec defines, as `show`, `grad`, `minimize` and `data` refer to one."""
    if ident.text in defined:
        return ident.text
    if ident.text in BUILTINS:  # a built-in has no node of its own name
        raise SpecError(f"`{ident.text}` is a built-in constant, not a value the spec defines", ident.span,
                        hint=f"name it first, as in `c = {ident.text}`")
    raise undefined(ident.text, ident.span, defined)
