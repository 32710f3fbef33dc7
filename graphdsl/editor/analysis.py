"""What the language server knows about one spec's text, from the front end alone (parse, then
lower, which checks every shape; nothing is compiled): the problem the command line would print,
the statements that parse, and the checked spec, or as much of it as checks.

Each statement is parsed on its own and kept by its text (`Statements`), so a keystroke parses the
one statement it changed: Lark takes tens of milliseconds for 300 lines, far too long to parse
them all again at every key. A statement that does not parse is left out, and the rest still
give hover and the outline. Lowering is whole-spec; when it fails, the statement at fault and
every statement that uses what it defines are left out and the rest lowered again, so that hover
knows the other names' shapes. Only the first error is a problem, as on the command line: what
follows it may only echo it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import cached_property

from graphdsl.editor.vocabulary import BLOCK_ENDS, BLOCK_OPENS, terminal
from graphdsl.errors import Span, SpecError
from graphdsl.frontend import ast
from graphdsl.frontend.lower import lower
from graphdsl.frontend.parser import parse
from graphdsl.frontend.spec import Spec

# Lowerings after the first that leave out statements at fault, before the analysis settles for
# no checked spec: each lowers the whole spec again (about 15 ms for 300 lines).
RETRIES = 3
NAME = re.compile(terminal("NAME"))
STRING_OR_COMMENT = re.compile(f"{terminal('STRING')}|{terminal('COMMENT')}")
# A line the grammar's newline (_NL) takes in, as blank or a comment; nothing else is blank, however
# str.isspace reads it (a form feed is not). And a line the grammar's `\` continues.
BLANK = re.compile(rf"[\t ]*(?:{terminal('COMMENT')})?\r?")
CONTINUED = re.compile(r"\\[ \t]*\r?$")


@dataclass(frozen=True)
class Definition:
    """Where a spec defines a name, and as what: a Decl, an Assign, a Setting or a `for` block's
    loop variable (then `stmt` is the Repeat); `block` is the `for` block a definition is in."""

    ident: ast.Ident
    stmt: object
    block: ast.Repeat | None = None

    @property
    def kind(self) -> str:
        if isinstance(self.stmt, ast.Decl):
            return self.stmt.kind
        if isinstance(self.stmt, ast.Setting):
            return "setting"
        return "loop variable" if isinstance(self.stmt, ast.Repeat) else "computed"


def defined_by(stmt) -> list:
    """The Definitions one top-level statement makes."""
    if isinstance(stmt, (ast.Decl, ast.Assign, ast.Setting)):
        return [Definition(stmt.name, stmt)]
    if isinstance(stmt, ast.Repeat):
        return [Definition(stmt.var, stmt, stmt), *(Definition(body.name, body, stmt) for body in stmt.body)]
    return []


@dataclass(frozen=True)
class Analysis:
    """One text's analysis. `problems`: the first SpecError, else the spec's SpecWarnings;
    `statements`: the top-level statements that parse; `spec`: the Spec they check to, if any
    (without the statements it had to leave out when the text has an error)."""

    text: str
    problems: tuple
    statements: tuple
    spec: Spec | None

    @cached_property
    def lines(self) -> list:
        """The text's lines, as the parser counts them (not at \f or \u2028)."""
        return self.text.split("\n")

    def line(self, number: int) -> str:
        """Line `number` (from 1) of the text; "" past the end."""
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""

    @cached_property
    def definitions(self) -> dict:
        """Each name -> its Definitions, in the spec's order (a name a `for` block defines may also
        have a definition before the block)."""
        found: dict = {}
        for stmt in self.statements:
            for definition in defined_by(stmt):
                found.setdefault(definition.ident.text, []).append(definition)
        return found


def code(line: str) -> str:
    """A line without its comment, each string emptied (their brackets and `#` are text)."""
    return STRING_OR_COMMENT.sub(lambda m: '""' if m.group().startswith('"') else "", line)


def statement_lines(lines: list) -> list:
    """(first, last) line, from 1, of each statement, as the parser reads them: a newline ends a
    statement outside brackets and not after a `\\`, and a `for` block runs to its `end`."""
    found, first, depth, block = [], None, 0, False
    for number, line in enumerate(lines, 1):
        text = code(line)
        if first is None:
            if BLANK.fullmatch(line):
                continue  # blank lines and comments belong to no statement
            first, block = number, re.match(rf"\s*{BLOCK_OPENS}\b", text) is not None
        depth = max(depth + sum(text.count(c) for c in "([") - sum(text.count(c) for c in ")]"), 0)
        ends_block = re.match(rf"\s*{BLOCK_ENDS}\b", text) is not None
        if not (depth or CONTINUED.search(text) or (block and not ends_block)):
            found.append((first, number))
            first = None
    return found + ([(first, len(lines))] if first is not None else [])


def moved(node, lines: int):
    """An AST node with every span moved `lines` lines down."""
    if isinstance(node, Span):
        return Span(node.line + lines, node.col, node.end_line + lines, node.end_col)
    if isinstance(node, tuple):
        return tuple(moved(item, lines) for item in node)
    if is_dataclass(node) and not isinstance(node, type):
        return replace(node, **{f.name: moved(getattr(node, f.name), lines) for f in fields(node)})
    return node


def parsed_at(chunk: str, start: int, filename: str):
    """A statement's text parsed where it stands (line `start`), so that its spans, and its error's
    span and message, are the ones parsing the whole spec gives: its statements, or its SpecError."""
    try:
        return tuple(parse("\n" * (start - 1) + chunk, filename).statements)
    except SpecError as err:
        return err


class Statements:
    """Parses a document statement by statement, keeping each statement's AST by its text for as
    long as the document holds that text; a statement that moved is moved, not parsed again."""

    def __init__(self):
        self.kept: dict = {}  # statement text -> (the line it stands at, its statements or its SpecError)

    def parse(self, text: str, filename: str) -> tuple:
        """(the statements that parse, in order; the first SpecError, or None). After a statement
        that does not parse, its other lines are read as statements of their own: an unclosed
        bracket would otherwise take the rest of the spec with it."""
        lines, found, errors, kept = text.split("\n"), [], [], {}  # lines as the parser counts them
        pending = statement_lines(lines)
        while pending:
            start, end = pending.pop(0)
            chunk = "\n".join(lines[start - 1:end]) + ("\n" if end < len(lines) else "")  # as the text has it
            at, result = self.kept.get(chunk, (start, None))
            if result is None or (isinstance(result, SpecError) and at != start):
                at, result = start, parsed_at(chunk, start, filename)
            if isinstance(result, SpecError):
                errors.append(result)
                pending[:0] = [(start + a, start + b) for a, b in statement_lines(lines[start:end])]
            elif at != start:
                at, result = start, moved(result, start - at)
            kept[chunk] = (at, result)
            found.extend(result if isinstance(result, tuple) else ())
        self.kept = kept  # forget the statements the text no longer has
        if len(errors) > 1:  # which comes first is the parser's to say: a syntax error before any other
            errors = [parsed_at(text, 1, filename)]
        return found, errors[0].located(filename, text) if errors else None


def statement_at(statements: list, span: Span | None):
    """The top-level statement whose lines hold `span`, if any."""
    if span is None:
        return None
    return next((s for s in statements if s.span.line <= span.line <= s.span.end_line), None)


def without(statements: list, fault, lines: list) -> list:
    """The statements but `fault` and those that use a name it defines, directly or not: the names
    each uses are the words of its lines."""
    gone = {d.ident.text for d in defined_by(fault)}
    kept = [s for s in statements if s is not fault]
    words = {id(s): set(NAME.findall(code("\n".join(lines[s.span.line - 1:s.span.end_line])))) for s in kept}
    while True:
        users = [s for s in kept if words[id(s)] & gone]
        if not users:
            return kept
        kept = [s for s in kept if not words[id(s)] & gone]
        gone |= {d.ident.text for s in users for d in defined_by(s)}


def lowered(statements: list, text: str, filename: str) -> tuple:
    """(the Spec, or None; the first SpecError, or None). On an error, lowered again without the
    statements it concerns, for the names it does not."""
    lines, kept, first = text.split("\n"), list(statements), None
    for _ in range(RETRIES + 1):
        try:
            return lower(ast.Program(kept), text, filename), first
        except SpecError as err:
            first = first or err
            fault = statement_at(kept, err.span)
            if fault is None:
                break
            kept = without(kept, fault, lines)
    return None, first


def analyse(text: str, filename: str = "<spec>", statements: Statements | None = None) -> Analysis:
    """The front end's view of `text`: parse, lower and check, without compiling anything.
    `statements` keeps the parsed statements of an earlier version of the text, to reuse."""
    found, syntax_error = (statements or Statements()).parse(text, filename)
    spec, error = lowered(found, text, filename)
    first = syntax_error or error
    problems = (first,) if first else tuple(spec.warnings)
    return Analysis(text, problems, tuple(found), spec)
