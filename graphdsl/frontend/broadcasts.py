"""How a vector meets a matrix in `+ - * / ^`: along the rows or down the columns, refused where
either could be meant, and a warning for `W * x`, which is most often a matrix product typed
wrong. `ex` is the Expressions lowering the spec (its graph, and how it quotes the spec's text)."""
from __future__ import annotations

from graphdsl.errors import SpecError, SpecWarning
from graphdsl.frontend import ast

ELEMENTWISE_INFIX = ("+", "-", "*", "/", "^")


def oriented(ex, e: ast.BinOp, left: int, right: int) -> tuple:
    """A vector meeting a matrix entry by entry goes along each row where its length is the
    matrix's width, as in NumPy, and down each column where it is the height (examples as
    columns: `W X + b` with X [features, examples]). A square matrix could take it either way:
    refused, except under `*`, whose warning names the reading taken (see below)."""
    shapes = [ex.graph.nodes[n].shape for n in (left, right)]
    if sorted(map(len, shapes)) != [1, 2]:
        return left, right
    m = 0 if len(shapes[0]) == 2 else 1
    (rows, cols), (n,) = shapes[m], shapes[1 - m]
    if n == 1 or n != rows or (n == cols and e.op == "*"):
        return left, right  # along the rows (the square case under `*` too), or shapes that do not fit
    mat, vec = (left, right) if m == 0 else (right, left)
    mat_e, vec_e = (e.left, e.right) if m == 0 else (e.right, e.left)
    if n == cols:
        v = ex.spelled(vec_e) or "v"
        raise SpecError(f"{ex.describe(vec_e, vec)} could go along each row or down each column of the square "
                        f"{ex.describe(mat_e, mat)}", e.span,
                        hint=f"write `[{v}]` (a [1, {n}] row) to use it on every row, or `[{v}]'` "
                             f"(a [{n}, 1] column) on every column")
    column = ex.graph.add("transpose", [ex.graph.add("stack", [vec], span=vec_e.span)], span=vec_e.span)
    return (mat, column) if m == 0 else (column, mat)


def product_warnings(ex, e: ast.BinOp, left: int, right: int) -> list:
    """`W * x` with W a matrix and x a vector repeats x along W's rows (or down its columns, see
    `oriented`), which is legal, but on a whiteboard it is almost always a matrix product typed
    wrong: warn, and go on."""
    shapes = [ex.graph.nodes[n].shape for n in (left, right)]
    if sorted(map(len, shapes)) != [1, 2]:
        return []
    (rows, cols), (n,) = sorted(shapes, key=len, reverse=True)
    matrix, vector = (e.left, e.right) if len(shapes[0]) == 2 else (e.right, e.left)
    m, v = ex.spelled(matrix, bracket=True), ex.spelled(vector, bracket=True)
    if n == cols:
        reading, product = "along the matrix's rows", f"`{m} {v}`"
    elif n == rows and n != 1:
        reading, product = "down the matrix's columns", f"`{m}' {v}`"
    else:
        return []  # they do not broadcast: the product reports it
    product = product if None not in (m, v) else "the product, matrix first"
    column = f" (or, to repeat it down the columns, `[{ex.spelled(vector) or 'v'}]'`)" if n == rows == cols else ""
    return [SpecWarning(
        f"{ex.describe(e.left, left)} * {ex.describe(e.right, right)} multiplies entry by entry, "
        f"repeating the vector {reading}", e.span,
        hint=f"did you mean {product}, the matrix product written side by side?{column}")]
