"""The four formats graphdsl writes its answers in: text for the terminal (the default), Markdown
and LaTeX for solution sheets, and JSON for scripts (docs/output.md states the JSON schema).

tabulate lays out every table. A value is written per format: text as NumPy prints it (a matrix
over several lines), Markdown on one line, LaTeX in math mode (a matrix as a bmatrix, which
needs amsmath), and JSON with its shape at full precision."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate


FORMATS = ("text", "markdown", "latex", "json")
SHOWN = 1000  # an array with more entries than this prints a few at each end around an ellipsis


def fmt_value(value, precision: int = 6) -> str:
    """A value as NumPy prints it, each number to `precision` significant digits (-0 as 0)."""
    value = np.asarray(value) + 0.0
    if value.ndim == 0:
        return f"{float(value):.{precision}g}"
    return np.array2string(value, separator=", ", max_line_width=100, threshold=SHOWN,
                           formatter={"float_kind": lambda v: f"{v:.{precision}g}"})


def one_line(value, precision: int = 6) -> str:
    """fmt_value on a single line, for table cells that cannot break (Markdown, LaTeX, SVG)."""
    return " ".join(line.strip() for line in fmt_value(value, precision).splitlines())


def json_number(x: float):
    """A float as JSON holds it: itself (repr, so full precision), or "nan", "inf" or "-inf",
    which JSON has no numbers for."""
    return x + 0.0 if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def json_value(value) -> dict:
    """{"shape": [...], "value": the entries as nested lists}: the schema of every value in JSON."""
    value = np.asarray(value, dtype=np.float64) + 0.0   # -0.0 as 0.0
    if value.ndim == 0:
        return {"shape": [], "value": json_number(float(value))}
    finite = np.isfinite(value).all()  # then tolist, at C speed, gives the floats as they are
    entries = value if finite else np.vectorize(json_number, otypes=[object])(value)
    return {"shape": list(value.shape), "value": entries.tolist()}


def dumps(document) -> str:
    """One line of strict JSON (non-finite numbers were made strings by json_number)."""
    return json.dumps(document, allow_nan=False, ensure_ascii=False)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_text(text: str) -> str:
    """Text with LaTeX's special characters escaped, to be set as text."""
    return "".join(LATEX_SPECIAL.get(c, c) for c in str(text))


def latex_number(x: float, precision: int = 6) -> str:
    """A number in math mode: 1.5e-07 as 1.5 \\times 10^{-7}."""
    text = f"{x + 0.0:.{precision}g}"
    if not math.isfinite(x):
        return {"inf": r"\infty", "-inf": r"-\infty"}.get(text, r"\mathrm{NaN}")
    mantissa, _, exponent = text.partition("e")
    return mantissa + (rf" \times 10^{{{int(exponent)}}}" if exponent else "")


def latex_value(value, precision: int = 6) -> str:
    """A value in math mode: a number, a vector as a bracketed list, a matrix as a bmatrix; more
    axes, or more entries than SHOWN, as the one-line text in \\texttt."""
    value = np.asarray(value, dtype=np.float64)
    number = lambda x: latex_number(float(x), precision)
    if value.ndim == 0:
        return f"${number(value)}$"
    if value.size > SHOWN or value.ndim > 2:
        return rf"\texttt{{{latex_text(one_line(value, precision))}}}"
    if value.ndim == 1:
        return "$[" + r",\ ".join(map(number, value)) + "]$"
    rows = (" & ".join(map(number, row)) for row in value)
    return r"$\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}$"


@dataclass
class Table:
    """A titled table. Each cell is text (str) or a value (a number or an array), which is written
    the way the format writes values; `right` holds the columns aligned right."""

    title: str
    headers: list
    rows: list
    right: tuple = ()
    raw: tuple = ()   # the columns whose text is LaTeX already
    notes: list = field(default_factory=list)  # lines said after the table

    def cells(self, write) -> list:
        return [[c if isinstance(c, str) else write(c) for c in row] for row in self.rows]

    def align(self) -> list:
        return ["right" if i in self.right else "left" for i in range(len(self.headers))]

    def markdown(self, precision: int = 6) -> str:
        rows = [[c.replace("|", r"\|") for c in row] for row in self.cells(lambda v: one_line(v, precision))]
        body = tabulate(rows, self.headers, tablefmt="pipe", disable_numparse=True, colalign=self.align())
        return "\n\n".join([f"**{self.title}**", body, *self.notes]) if self.title else "\n\n".join([body, *self.notes])

    def latex(self, precision: int = 6) -> str:
        rows = [[(c if i in self.raw else latex_text(c)) if isinstance(c, str) else latex_value(c, precision)
                 for i, c in enumerate(row)] for row in self.rows]
        body = tabulate(rows, [latex_text(h) for h in self.headers], tablefmt="latex_raw", disable_numparse=True,
                        colalign=self.align())
        notes = [latex_text(n) + r"\par" for n in self.notes]
        head = [rf"\paragraph{{{latex_text(self.title)}}}"] if self.title else []
        return "\n".join(head + [body, *notes])


def plain(rows, indent: str = "  ", right: tuple = ()) -> list:
    """Rows laid out as plain columns (two spaces apart), indented, lines without trailing spaces;
    the columns in `right` aligned right."""
    if not rows:
        return []
    align = ["right" if i in right else "left" for i in range(max(map(len, rows)))]
    text = tabulate(rows, tablefmt="plain", disable_numparse=True, colalign=align)
    return [(indent + line).rstrip() for line in text.splitlines()]


def html_table(headers: list, rows: list) -> str:
    """An HTML table (cells escaped), for notebooks."""
    return tabulate(rows, headers, tablefmt="html", disable_numparse=True)


def note(text: str, fmt: str = "text") -> str:
    """A sentence among the tables: as it is, as LaTeX text, or as a JSON object {"note": text}."""
    if fmt == "json":
        return dumps({"note": text})
    return latex_text(text) + r"\par" if fmt == "latex" else text


def between(fmt: str) -> str:
    """What separates two blocks: one newline in JSON (a JSON object a line), else a blank line."""
    return "\n" if fmt == "json" else "\n\n"
