"""Settings and `for` blocks, expanded away before lowering.

A setting's value replaces every use of its name; `--set` changes it first.
A `for n in hidden ... end` block is written out once per entry of `hidden`:
the k-th copy of a name the block defines is called `name.k` (counting on
across blocks), a use inside the block means the latest copy, and after the
block a name means its last copy. That gives loops Python's reading while the
rest of the spec keeps single, any-order definitions.
"""
from __future__ import annotations

import math
from dataclasses import fields, is_dataclass, replace

import numpy as np

from graphdsl.frontend import ast
from graphdsl.errors import DataError, SpecError

# Fields holding identifiers that refer to a value (rather than define or label one).
REFERENCES = {(ast.Show, "names"), (ast.Grad, "loss"), (ast.Grad, "wrt"), (ast.Jacobian, "of"),
              (ast.Jacobian, "wrt"), (ast.Minimize, "loss")}


EXAMPLES = {"--set": "`lr=0.01` or `hidden=256,64`", "--grid": "`lr=0.01,0.1`",
            "--range": "`lr=0.001:0.1:log`"}


def split_pair(text: str, flag: str) -> tuple[str, str]:
    """`lr=0.01` from the command line (after --set, --grid or --range) as ("lr", "0.01")."""
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise DataError(f"{flag} `{text}` is not NAME=VALUE, as in {EXAMPLES[flag]}")
    return name.strip(), value


def parse_override(text: str) -> tuple | str:
    """`0.01` or `256,64` from the command line as a tuple of numbers; a word (`adam`, `all`) as is."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        return text.strip()


def numbers(what: str, value) -> tuple:
    """A value given from outside the spec (`--set`, Python) as finite numbers, one or several.
    Words are refused, and so are inf and nan, which would reach generated code as names."""
    try:
        values = tuple(float(v) for v in np.ravel(np.asarray(value, dtype=float)))
    except (TypeError, ValueError):
        raise DataError(f"{what} takes numbers, not `{value}`") from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{what} takes finite numbers, not {', '.join(map(str, values))}")
    return values


def one_number(what: str, value) -> float:
    values = numbers(what, value)
    if len(values) != 1:
        raise DataError(f"{what} is a number, but {len(values)} values were given for it")
    return values[0]


def literal(e) -> tuple | float | None:
    """A number, or a list of numbers, written directly; None for anything else."""
    if isinstance(e, ast.Num):
        return e.value
    if isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num):
        return -e.operand.value
    if isinstance(e, ast.Stack):
        items = [literal(i) for i in e.items]
        return tuple(items) if all(isinstance(i, float) for i in items) else None
    return None


def settings_of(program: ast.Program, overrides: dict) -> dict:
    """Each setting's value (a float, or a tuple for a list), with overrides applied."""
    values = {}
    for stmt in program.statements:
        if not isinstance(stmt, ast.Setting):
            continue
        name = stmt.name.text
        if name in values:
            raise SpecError(f"setting `{name}` is given twice", stmt.name.span, hint="give each setting once")
        value = literal(stmt.value)
        if value is None:
            raise SpecError(f"setting `{name}` must be a number or a list of numbers, as in `= 0.1` or `= [64, 32]`",
                            stmt.value.span)
        if name in overrides:
            what = f"setting `{name}`"
            value = numbers(what, overrides[name]) if isinstance(value, tuple) else one_number(what, overrides[name])
        values[name] = value
    return values


def as_expr(value, span, name: str) -> object:
    """A setting's (or a `for` variable's) value in place of its name, as literals that remember it."""
    if isinstance(value, tuple):
        return ast.Stack(tuple(ast.Num(v, f"{v:g}", span, name) for v in value), span)
    return ast.Num(value, f"{value:g}", span, name)


def rewrite(node, names: dict, values: dict):
    """The node with references renamed (`names`) or replaced by literal values (`values`)."""
    if isinstance(node, ast.Name):
        if node.id in values:
            return as_expr(values[node.id], node.span, node.id)
        return replace(node, id=names[node.id]) if node.id in names else node
    if isinstance(node, tuple):
        return tuple(rewrite(item, names, values) for item in node)
    if not is_dataclass(node) or isinstance(node, (ast.Ident, ast.Num)):
        return node
    changed = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if (type(node), f.name) in REFERENCES:
            changed[f.name] = rename_idents(value, names)
        else:
            changed[f.name] = rewrite(value, names, values)
    return replace(node, **changed)


def rename_idents(value, names: dict):
    if isinstance(value, tuple):
        return tuple(rename_idents(v, names) for v in value)
    return replace(value, text=names[value.text]) if value.text in names else value


class Expander:
    def __init__(self, settings: dict):
        self.settings = settings
        self.latest: dict = {}    # name -> its newest copy, for names a block defines
        self.copies: dict = {}    # name -> how many copies exist
        self.block_line: dict = {}

    def statements(self, program: ast.Program) -> list:
        out = []
        for stmt in program.statements:
            if isinstance(stmt, ast.Setting):
                continue
            if isinstance(stmt, ast.Repeat):
                out.extend(self.repeat(stmt))
                continue
            if isinstance(stmt, (ast.Decl, ast.Assign)) and stmt.name.text in self.block_line:
                raise SpecError(f"`{stmt.name.text}` is defined in the `for` block on line "
                                f"{self.block_line[stmt.name.text]}; a later definition would hide it",
                                stmt.name.span, hint="give this value another name")
            if isinstance(stmt, (ast.Decl, ast.Assign)):
                self.not_a_setting(stmt.name)
            out.append(rewrite(stmt, self.latest, self.settings))
        return out

    def not_a_setting(self, name: ast.Ident) -> None:
        if name.text in self.settings:
            raise SpecError(f"`{name.text}` is already a setting", name.span,
                            hint="give the setting or this value another name")

    def entries(self, stmt: ast.Repeat) -> tuple:
        over = stmt.over.text
        if over not in self.settings:
            raise SpecError(f"`for` runs over a list setting, and `{over}` is not a setting", stmt.over.span,
                            hint=f"declare it first, as in `setting {over} = [64, 32]`")
        value = self.settings[over]
        return value if isinstance(value, tuple) else (value,)

    def repeat(self, stmt: ast.Repeat) -> list:
        var = stmt.var.text
        if var in self.settings:
            raise SpecError(f"the loop variable `{var}` hides the setting of the same name", stmt.var.span,
                            hint="choose another name")
        for body in stmt.body:
            self.not_a_setting(body.name)
        out = []
        for entry in self.entries(stmt):
            values = {**self.settings, var: entry}
            for body in stmt.body:
                name = body.name.text
                renamed = rewrite(body, self.latest, values)
                copy = f"{name}.{self.copies.get(name, 0)}"
                self.copies[name] = self.copies.get(name, 0) + 1
                self.latest[name] = copy
                self.block_line[name] = stmt.span.line
                out.append(replace(renamed, name=replace(body.name, text=copy)))
        return out


def expand(program: ast.Program, overrides: dict | None = None) -> tuple:
    """(statements with settings and blocks expanded, the settings' values)."""
    overrides = overrides or {}
    settings = settings_of(program, overrides)
    return Expander(settings).statements(program), settings
