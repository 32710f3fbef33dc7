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
        return quoted(self, "error")


def quoted(found, kind: str) -> str:
    """``file:line:col: kind: message``, the spec's line with a caret under the text, and the hint,
    for a SpecError or a SpecWarning."""
    if found.span is None:
        head = f"{found.filename}: {kind}: {found.message}"
        return head + (f"\n  hint: {found.hint}" if found.hint else "")
    span = found.span
    lines = [f"{found.filename}:{span.line}:{span.col}: {kind}: {found.message}"]
    spec_lines = found.text.split("\n")  # as the parser counts lines (not at \f or \u2028)
    if 0 < span.line <= len(spec_lines):
        line = spec_lines[span.line - 1].rstrip()
        width = (span.end_col - span.col) if span.end_line == span.line else 1
        lines.append(f"    {line}")
        pad = "".join(c if c == "\t" else " " for c in line[:span.col - 1])
        lines.append("    " + pad + "^" + "~" * max(width - 1, 0))
    if found.hint:
        lines.append(f"  hint: {found.hint}")
    return "\n".join(lines)


class SpecWarning(UserWarning):
    """Something a spec says that is legal but most likely not what was meant; graphdsl.compile
    warns with it, and the command line prints it on stderr, located like a SpecError."""

    def __init__(self, message: str, span: Span | None = None, *, hint: str | None = None,
                 filename: str = "<spec>", text: str = ""):
        super().__init__(message)
        self.message, self.span, self.hint, self.filename, self.text = message, span, hint, filename, text

    located = SpecError.located

    def __str__(self) -> str:
        return quoted(self, "warning")


class DataError(ValueError):
    """Values handed to a model that do not fit its spec (unknown name, wrong shape, missing)."""


class WriteError(DataError):
    """An output file that could not be written once the run was under way (the disk full, a
    file-size limit): the run failed (`graphdsl run` exits 1), and what the file held before the
    failed write is kept whole."""


class ClassIndexError(ValueError):
    """A class index out of range, met while running; the model reports it as a DataError."""


CLASS_INDEX_PROBLEM = "a class index the spec computes is not a whole number from 0 to the number of classes - 1"
