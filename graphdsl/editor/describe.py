"""What the language server says about the words of a spec: hover text, completions and the
outline, from an Analysis and the front end's tables (functions, initialisers, optimizers and the
options of `minimize`). Positions here are the spec's own: lines from 1, columns in characters
from 0; the server converts them to the editor's."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from graphdsl.editor.analysis import Analysis, Definition, defined_by
from graphdsl.editor.vocabulary import KEYWORDS, terminal
from graphdsl.frontend import ast
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS, REDUCE
from graphdsl.frontend.names import BUILTINS
from graphdsl.ir.formula import derivative
from graphdsl.ir.graph import LEAF_KINDS
from graphdsl.ir.ops import OPS
from graphdsl.ir.shapes import fmt_shape
from graphdsl.training.config import OPTIONS, WORDS
from graphdsl.training.data import BUILTIN as DATA_SETS
from graphdsl.training.optimizers import OPTIMIZERS

NAME = re.compile(terminal("NAME"))
CALL = re.compile(terminal("CALL"))


@dataclass(frozen=True)
class Item:
    """A completion: `kind` is one of variable, constant, function, keyword, setting, value."""

    label: str
    kind: str
    detail: str = ""
    insert: str | None = None  # what to write, where it is not the label


def word_at(line: str, col: int) -> tuple | None:
    """(the name under or just before column `col`, its start, its end), or None."""
    for found in NAME.finditer(line):
        if found.start() <= col <= found.end():
            return found.group(), found.start(), found.end()
    return None


def open_call(before: str) -> str | None:
    """The name of the innermost call still open at the end of `before` (one line's text)."""
    opened = []
    for found in re.finditer(rf"{CALL.pattern}|[()]", before):
        if found.group() == ")":
            if opened:
                opened.pop()
        else:
            opened.append(found.group()[:-1])
    return opened[-1] if opened else None


# What each kind of a function's setting takes (frontend/expressions.py checks them).
SETTING_KINDS = {"axis": "an axis", "int": "a whole number of at least 1", "count": "a whole number of at least 0",
                 "reduce": " or ".join(f"`{r}`" for r in REDUCE)}


def settings_of(callee: str | None, line: str) -> dict:
    """The keyword settings a call of `callee` takes, or the options of `minimize` on its line
    outside any call: name -> what the hover and the completion say of it."""
    if callee in FUNCTIONS:
        return {k: f"{SETTING_KINDS.get(kind, kind)}, default {'none' if d is None else d}"
                for k, (kind, d) in FUNCTIONS[callee].kwargs.items()}
    if callee in INITIALISERS:
        return {k: f"a setting of the initialiser `{callee}`" for k in INITIALISERS[callee]}
    if callee in OPTIMIZERS:
        return {k: f"default {d:g}" for k, d in OPTIMIZERS[callee].settings.items()}
    if callee is None and line.lstrip().startswith("minimize"):
        return {k: f"an option of `minimize`, default {d}" for k, d in OPTIONS.items()}
    return {}


def shapes(found: Analysis, definition: Definition) -> list:
    """(name, shape) of the value a definition makes, or of each copy of it a `for` block makes
    (`W.0`, `W.1`, ...); none where the spec did not check that far."""
    if found.spec is None:
        return []
    names, name = found.spec.graph.names, definition.ident.text
    made = [n for n in names if n.rpartition(".")[0] == name] if definition.block else [name] if name in names else []
    return [(n, found.spec.graph.nodes[names[n]].shape) for n in made]


def fmt_value(value) -> str:
    """A setting's value as a spec writes it: 0.5, or [256, 64] for a list."""
    return f"[{', '.join(f'{v:g}' for v in value)}]" if isinstance(value, tuple) else f"{value:g}"


def summary(found: Analysis, definition: Definition) -> str:
    """One line on what a defined name is: its kind, how it is made, its shape."""
    name, kind = definition.ident.text, definition.kind
    spec = found.spec
    if kind in ("setting", "loop variable"):
        over = name if kind == "setting" else definition.stmt.over.text
        value = spec.settings.get(over) if spec else None
        what = f"setting `{name}` =" if kind == "setting" else f"loop variable over `{over}`, taking each of"
        return f"{what} {fmt_value(value)}" if value is not None else what.rstrip(" =")
    made = spec.made_by.get(name) if spec else None
    # an alias (`a = x`) is made by its value's leaf, which says nothing of how `a` is computed
    what = f"computed by `{made}`" if kind == "computed" and made and made not in LEAF_KINDS else kind
    found_shapes = shapes(found, definition)
    if not found_shapes:
        return f"{what} `{name}` (its shape is not known while the spec has errors)"
    sized = ", ".join(f"`{n}` {fmt_shape(s)}" + (f" ({math.prod(s)} numbers)" if kind == "param" else "")
                      for n, s in found_shapes)
    return f"{what} {sized}"


def source(found: Analysis, stmt) -> str:
    """The first line of a statement as written, in a code block."""
    return f"```nn\n{found.line(stmt.span.line).strip()}\n```"


def callable_doc(name: str) -> str | None:
    """Hover text of a function, an initialiser or an optimizer."""
    if name in FUNCTIONS:
        fn = FUNCTIONS[name]
        required = len(fn.params) - fn.optional
        params = [*fn.params[:required], *(f"[{p}]" for p in fn.params[required:])]  # [b]: may be left out
        head = f"function `{name}({', '.join(params)})`: {fn.doc}"
        formula = derivative(OPS[name]) if name in OPS else None
        settings = "; ".join(f"`{k}`: {v}" for k, v in settings_of(name, "").items())
        return "\n\n".join(part for part in (head, settings and f"settings: {settings}",
                                              formula and f"gradient: {formula}") if part)
    if name in INITIALISERS:
        settings = ", ".join(f"`{k}`" for k in INITIALISERS[name]) or "none"
        return f"initialiser `{name}(...)`: a param's first values; settings: {settings}"
    if name in OPTIMIZERS:
        settings = ", ".join(f"`{k}` = {d:g}" for k, d in OPTIMIZERS[name].settings.items())
        return f"optimizer `{name}`; settings and their defaults: {settings}"
    return None


def hover(found: Analysis, line: int, col: int) -> tuple | None:
    """(markdown, the line's (start, end) columns it is about) for the word at a position."""
    text = found.line(line)
    at = word_at(text, col)
    if at is None:
        return None
    word, start, end = at
    setting = settings_of(open_call(text[:start]), text).get(word) if re.match(r"\s*=(?!=)", text[end:]) else None
    if text[end:].startswith("("):
        doc = callable_doc(word)
    elif setting:
        doc = f"`{word}`: {setting}"
    elif word in found.definitions:
        doc = "\n\n".join(f"{summary(found, d)}\n{source(found, d.stmt)}" for d in found.definitions[word])
    elif word in BUILTINS:
        doc = f"built-in constant `{word}` = {BUILTINS[word]!r}"
    elif word in DATA_SETS and text.lstrip().startswith("data"):
        doc = f"built-in data set `{word}` (scikit-learn's offline copy: `pip install \"graphdsl[data]\"`)"
    else:
        doc = callable_doc(word)
    return (doc, (start, end)) if doc else None


def brief(found: Analysis, definition: Definition) -> str:
    """A definition's kind and shape, in a few words: `param [2, 3]`, or a shape for each copy a
    `for` block makes: `param [4, 2], [3, 4]`."""
    known = shapes(found, definition)
    return " ".join([definition.kind, ", ".join(fmt_shape(shape) for _, shape in known)]).rstrip()


def name_items(found: Analysis) -> list:
    """The names a spec defines, and the built-in constants."""
    items = [Item(name, "constant" if ds[-1].kind in ("setting", "const") else "variable", brief(found, ds[-1]))
             for name, ds in found.definitions.items()]
    return items + [Item(name, "constant", "built-in constant") for name in BUILTINS]


def callable_items() -> list:
    """Every function and initialiser, a call written against its `(`."""
    functions = [Item(name, "function", f"function: {fn.doc}", insert=f"{name}(") for name, fn in FUNCTIONS.items()]
    return functions + [Item(name, "function", "initialiser", insert=f"{name}(") for name in INITIALISERS]


def completions(found: Analysis, line: int, col: int) -> list:
    """What may be written at a position: a setting's words, a call's settings, the names, functions
    and initialisers, and keywords where a statement starts."""
    text = found.line(line)
    before = text[:col]
    before = before[:len(before) - len(re.search(rf"(?:{NAME.pattern})?$", before).group())]
    values = name_items(found) + callable_items()
    key = re.search(rf"({NAME.pattern})\s*=\s*$", before)
    if key:  # a setting's value: a word it takes, or an expression
        words = WORDS.get(key.group(1), REDUCE if key.group(1) == "reduce" else ())
        return [Item(word, "value") for word in words] or values
    if re.search(r"\busing\s*$", before):
        return [Item(name, "function", "optimizer", insert=f"{name}(") for name in OPTIMIZERS]
    if re.search(r"^\s*data\s*$", before):
        return [Item(name, "value", "built-in data set") for name in DATA_SETS]
    callee = open_call(before)
    options = callee is None and re.search(r"\busing\b.*\)", before)  # `minimize`'s, after the optimizer
    settings = [Item(k, "setting", v, insert=f"{k}=") for k, v in settings_of(callee, text).items()
                if callee or options]
    if callee in INITIALISERS or callee in OPTIMIZERS or options:
        return settings  # these take settings alone
    keywords = [Item(word, "keyword") for word in KEYWORDS] if not before.strip() else []
    return settings + keywords + values


@dataclass(frozen=True)
class Symbol:
    """An entry of the outline: a definition, a `for` block with its own, or the training."""

    name: str
    kind: str
    detail: str
    span: object
    selection: object
    children: tuple = ()


def symbol(found: Analysis, definition: Definition) -> Symbol:
    """A definition in the outline: the statement, or for a loop variable its name alone."""
    ident = definition.ident
    span = ident.span if definition.kind == "loop variable" else definition.stmt.span
    return Symbol(ident.text, definition.kind, brief(found, definition), span, ident.span)


def outline(found: Analysis) -> list:
    """The outline of a spec: its definitions, `for` blocks and `minimize` statement, in order."""
    symbols = []
    for stmt in found.statements:
        if isinstance(stmt, ast.Repeat):
            inner = tuple(symbol(found, d) for d in defined_by(stmt))
            symbols.append(Symbol(f"for {stmt.var.text} in {stmt.over.text}", "block", "", stmt.span,
                                  stmt.var.span, inner))
        elif isinstance(stmt, ast.Minimize):
            symbols.append(Symbol(f"minimize {stmt.loss.text}", "training", stmt.optimizer.func.text, stmt.span,
                                  stmt.loss.span))
        else:
            symbols += [symbol(found, d) for d in defined_by(stmt)]
    return symbols
