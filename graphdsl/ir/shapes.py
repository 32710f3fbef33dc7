"""Shape vocabulary every stage shares: the error a shape rule raises, and shapes and counts as
people read them."""
from __future__ import annotations


class ShapeError(Exception):
    """Raised by an op's shape rule; lowering turns it into a located SpecError."""


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 entry`, `2 entries`: a count with its noun."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def fmt_shape(shape: tuple) -> str:
    return "scalar" if shape == () else "[" + ", ".join(map(str, shape)) + "]"
