"""SpecError: every problem in a user's spec, reported like a compiler's."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """Where a piece of a spec's text lies: 1-based lines and columns, end exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int


class SpecError(Exception):
    """A spec that cannot be parsed, checked or run, located in its text.

    ``str(err)`` prints ``file:line:col: error: message``, the spec's line and
    a caret under the offending text, then an optional hint.
    """

    def __init__(self, message: str, span: Span | None = None, *, hint: str | None = None,
                 filename: str = "<spec>", text: str = ""):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.filename = filename
        self.text = text

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.col if self.span else None

    def located(self, filename: str, text: str) -> "SpecError":
        """The same error, told which file it came from and that file's text (the parser does not know)."""
        self.filename, self.text = filename, text
        return self

    def __str__(self) -> str:
        if self.span is None:
            head = f"{self.filename}: error: {self.message}"
            return head + (f"\n  hint: {self.hint}" if self.hint else "")
        lines = [f"{self.filename}:{self.span.line}:{self.span.col}: error: {self.message}"]
        spec_lines = self.text.splitlines()
        if 0 < self.span.line <= len(spec_lines):
            quoted = spec_lines[self.span.line - 1].rstrip()
            width = (self.span.end_col - self.span.col) if self.span.end_line == self.span.line else 1
            lines.append(f"    {quoted}")
            pad = "".join(c if c == "\t" else " " for c in quoted[:self.span.col - 1])
            lines.append("    " + pad + "^" + "~" * max(width - 1, 0))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class DataError(ValueError):
    """Values handed to a model that do not fit its spec (unknown name, wrong shape, missing)."""


class ClassIndexError(ValueError):
    """A class index out of range, met while running; the model reports it as a DataError."""


CLASS_INDEX_PROBLEM = "a class index the spec computes is not a whole number from 0 to the number of classes - 1"
