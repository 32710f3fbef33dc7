"""The abstract syntax tree: what a spec says, with the span of spec text it came from on every node."""
from __future__ import annotations

from dataclasses import dataclass, field

from graphdsl.errors import Span, SpecError


@dataclass(frozen=True)
class Ident:
    text: str
    span: Span


# -- expressions -------------------------------------------------------------

@dataclass(frozen=True)
class Num:
    value: float
    text: str
    span: Span
    setting: str | None = None  # the setting (or `for` variable) whose value it is, where a name was written


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Call:
    func: Ident
    args: tuple
    kwargs: tuple  # of (Ident, expr)
    span: Span


@dataclass(frozen=True)
class BinOp:
    """`a + b`, `a - b`, `a * b`, `a / b`, `a @ b`, `a ^ b`, and `a b` (op "juxt")."""

    op: str
    left: object
    right: object
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: object
    span: Span


@dataclass(frozen=True)
class Transpose:
    operand: object
    span: Span


@dataclass(frozen=True)
class Range:
    """`start:stop:step` inside an index, each part optional: `x[1:3]`, `W[:, 0]`."""

    start: Num | None
    stop: Num | None
    step: Num | None
    span: Span


@dataclass(frozen=True)
class Index:
    base: object
    indices: tuple  # of Num (negative allowed) or Range
    span: Span


@dataclass(frozen=True)
class Stack:
    """`[a, b, c]`: scalars into a vector, equal vectors into matrix rows."""

    items: tuple
    span: Span


@dataclass(frozen=True)
class Concat:
    """`[a; b]`: scalars and vectors joined end to end into one vector."""

    items: tuple
    span: Span


# -- statements --------------------------------------------------------------

@dataclass(frozen=True)
class Decl:
    kind: str  # input | target | param | const
    name: Ident
    shape: tuple | None  # of expressions that must come to whole numbers
    value: object | None
    span: Span


@dataclass(frozen=True)
class Assign:
    name: Ident
    value: object
    span: Span


@dataclass(frozen=True)
class Show:
    names: tuple  # of Ident
    span: Span


@dataclass(frozen=True)
class Grad:
    loss: Ident
    wrt: tuple  # of Ident
    span: Span


@dataclass(frozen=True)
class Jacobian:
    of: Ident
    wrt: Ident
    at: object | None
    span: Span


@dataclass(frozen=True)
class Setting:
    """`setting lr = 0.1`: a constant the command line may change."""

    name: Ident
    value: object
    span: Span


@dataclass(frozen=True)
class Data:
    """Training examples: files (`"a.csv"`), a built-in set (`iris`), or inline arrays (`x = [...]`)."""

    files: tuple = ()     # of (text, Span)
    builtin: Ident | None = None
    arrays: tuple = ()    # of (Ident, expr)
    span: Span | None = None


@dataclass(frozen=True)
class Quoted:
    """A quoted path given to an option: `validation="val.csv"`."""

    text: str
    span: Span


@dataclass(frozen=True)
class Minimize:
    """`minimize L using sgd(lr=0.1), epochs=10`."""

    loss: Ident
    optimizer: Call
    options: tuple  # of (Ident, expr or Quoted)
    span: Span


@dataclass(frozen=True)
class Repeat:
    """`for n in hidden ... end`: the body once per entry of a list setting."""

    var: Ident
    over: Ident
    body: tuple  # of Decl | Assign
    span: Span


@dataclass
class Program:
    statements: list = field(default_factory=list)


def given_once(pairs) -> tuple:
    """A call's (name, value) pairs, checked that no name is given twice."""
    seen = set()
    for key, _ in pairs:
        if key.text in seen:
            raise SpecError(f"`{key.text}` is given twice", key.span, hint="give each setting once")
        seen.add(key.text)
    return pairs
