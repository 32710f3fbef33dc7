"""Notation a whiteboard reads one way and a first reading of the grammar another. Each is refused
with both readings spelled out, or, where it is legal and only most likely a slip (`W * x`),
warned about. `ex` is the Expressions lowering the spec: its graph, the names the spec defines,
its lines, and how it quotes them."""
from __future__ import annotations

import re

import numpy as np

from graphdsl.errors import Span, SpecError, SpecWarning
from graphdsl.frontend import ast
from graphdsl.ir.shapes import fmt_shape

ELEMENTWISE_INFIX = ("+", "-", "*", "/", "^")


def check_written(ex, e: ast.BinOp) -> None:
    """What the text alone shows: products side by side that are typos, a division by a product
    side by side, and `W^T` or `e^x` with `T` or `e` undefined."""
    if e.op == "juxt":
        check_juxtaposition(e)
        check_prefixed(e)
    if e.op == "/":
        check_division(e, ex.lines)
    if e.op != "^":
        return
    if isinstance(e.right, ast.Name) and e.right.id == "T" and "T" not in ex.defined:
        base = ex.snippet(e.left.span).strip("`")
        raise SpecError(f"`{base}^T` raises `{base}` to the power `T`, which the spec does not define", e.span,
                        hint=f"to transpose, write `{base}'` (a prime) or `transpose({base})`")
    if isinstance(e.left, ast.Name) and e.left.id == "e" and "e" not in ex.defined:
        power = ex.spelled(e.right) or "x"
        raise SpecError("`e` is not defined, so `e^...` cannot be the exponential", e.left.span,
                        hint=f"write `exp({power})`, or define `e` if you mean a value of your own")


SCIENTIFIC = re.compile(r"[0-9.]+([eE][0-9]+)")


def check_number(ex, e: ast.Num) -> None:
    """`2e1` is the number 20, but where the spec defines `e1` a reader may see 2 times e1, as `2x1`
    is 2 times x1. Refused there, with both readings; only names the expression may read count
    (consts where a literal is evaluated: `sgd(lr=1e1)` can hold no param `e1`)."""
    written = SCIENTIFIC.fullmatch(e.text)
    if written and written.group(1) in ex.readable:
        name, number = written.group(1), np.format_float_positional(e.value, trim="-")
        raise SpecError(f"`{e.text}` is the number {number}, but the spec defines `{name}`, so it could be "
                        f"`{e.text[:-len(name)]} {name}`", e.span,
                        hint=f"write `{e.text[:-len(name)]} {name}` for the product, or `{number}` for the number")


def check_shapes(ex, e: ast.BinOp, left: int, right: int) -> None:
    """What the operands' shapes show: `u v'` of two vectors, the outer product on a whiteboard
    (where vectors are columns), and a square matrix to a power, which a whiteboard takes as
    repeated matrix products."""
    shapes = [ex.graph.nodes[n].shape for n in (left, right)]
    if e.op in ("juxt", "@") and [len(s) for s in shapes] == [1, 1] and isinstance(e.right, ast.Transpose):
        u, v = ex.spelled(e.left) or "u", ex.spelled(e.right.operand) or "v"
        raise SpecError(f"{ex.describe(e.left, left)} times a transposed vector can be read two ways: the outer "
                        f"product (a {fmt_shape((shapes[0][0], shapes[1][0]))} matrix, as on a whiteboard where "
                        "vectors are columns) or the dot product (a scalar); graphdsl's vectors have no "
                        "orientation, so `'` leaves a vector as it is", e.span,
                        hint=f"write `outer({u}, {v})` for the matrix, or `{u} {v}` for the scalar")
    if e.op == "^" and len(shapes[0]) == 2 and shapes[0][0] == shapes[0][1] > 1 and shapes[1] == ():
        a, k = ex.spelled(e.left) or "A", ex.spelled(e.right) or "k"
        square = ex.spelled(e.left, bracket=True) or "A"
        raise SpecError(f"{ex.describe(e.left, left)} to a power can be read two ways: entry by entry, or, as "
                        "on a whiteboard, as repeated matrix products of a square matrix", e.span,
                        hint=f"write `pow({a}, {k})` for entry by entry, or the products side by side, "
                             f"as in `{square} {square}` for the square")


def check_grouping(ex, e: ast.BinOp) -> None:
    """Products side by side group from the left, and matrix products may group either way; but two
    vectors side by side make their dot product, a scalar that then scales the rest, so among three
    or more vectors and matrices the grouping changes the result: `x y W` is (x y) W, a matrix,
    where x (y W) is a number. Refused with both readings; scalars, which commute, do not count."""
    factors = juxtaposed(e, ex.lines)
    ranks = [len(ex.graph.nodes[ex.built[id(f)]].shape) for f in factors]
    shaped = [i for i, r in enumerate(ranks) if r]  # the vectors' and matrices' places
    dots = [(i, j) for i, j in zip(shaped, shaped[1:]) if ranks[i] == ranks[j] == 1]
    if len(shaped) < 3 or not dots:
        return
    spelled = [ex.spelled(f, bracket=not isinstance(f, ast.Num)) or "..." for f in factors]
    a, b = dots[0]
    as_written = spelled[0]
    for f in spelled[1:]:
        as_written = f"({as_written} {f})"
    # the other grouping: the second vector with what follows it, or with the first where it is last
    cut = a if b == len(factors) - 1 else b
    other = " ".join([*spelled[:cut], f"({' '.join(spelled[cut:])})"])
    raise SpecError(f"{ex.snippet(e.span)} multiplies vectors and matrices side by side, and two vectors next to "
                    f"each other make their dot product, a scalar: the grouping changes the result, "
                    f"`{as_written[1:-1]}` as written, or `{other}`", e.span,
                    hint="write the brackets of the grouping you mean")


SYMMETRIC = ("mse", "half_se")  # losses whose value and gradients are the same with the arguments swapped
# Losses that apply an activation to their first argument themselves: given its output, they apply it twice.
APPLIED = {"softmax_ce": ("softmax", "pass the raw scores, as in `softmax_ce(z, t)`"),
           "bce_logits": ("sigmoid", "pass the logits, as in `bce_logits(z, y)`, or write `bce(sigmoid(z), y)`")}


def check_call(ex, e: ast.Call, fn, args: list) -> None:
    """What the declarations show of a loss's arguments: a declared `target` where the function takes
    the prediction (`bce(y, y_hat)`, finite and wrong, or inf; not where swapping them changes
    nothing, `mse(y, y_hat)`), and the output of the activation the loss applies itself
    (`softmax_ce(softmax(z), t)`)."""
    target = fn.params.index("target") if "target" in fn.params[:len(args)] else None
    if target is not None and not a_target(ex, e.args[target]) and fn.name not in SYMMETRIC:
        for i, (param, arg) in enumerate(zip(fn.params, e.args)):
            if param != "target" and a_target(ex, arg):
                order = [ex.spelled(a) or "..." for a in e.args]
                order[i], order[target] = order[target], order[i]
                order += [f"{key.text}={ex.spelled(value) or '...'}" for key, value in e.kwargs]
                raise SpecError(f"{ex.snippet(arg.span)} is a target, but `{fn.name}` takes the {param} there: "
                                f"the arguments look swapped", arg.span, hint=f"`{fn.name}` takes "
                                f"({', '.join(fn.params)}): write `{fn.name}({', '.join(order)})`")
    activation, hint = APPLIED.get(fn.name, (None, None))
    if args and ex.graph.nodes[args[0]].op == activation:
        raise SpecError(f"`{fn.name}` applies the {activation} itself, so {ex.snippet(e.args[0].span)}, a "
                        f"{activation}'s output, would go through it twice", e.args[0].span, hint=hint)


def a_target(ex, arg) -> bool:
    """Whether an argument is a target's value as written, a name of one, transposed or indexed."""
    name = written_name(arg)
    return name is not None and ex.graph.nodes[ex.built[id(name)]].op == "target"


def written_name(e) -> ast.Name | None:
    """The name an expression is written as, under any transposes and indexing (`t'`, `x10[0]`)."""
    while isinstance(e, (ast.Transpose, ast.Index)):
        e = e.operand if isinstance(e, ast.Transpose) else e.base
    return e if isinstance(e, ast.Name) else None


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
    column = ex.graph.add("reshape", [vec], {"shape": (n, 1)}, span=vec_e.span)
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


def check_juxtaposition(e: ast.BinOp) -> None:
    """Products by juxtaposition that are almost always a typo: `[1 2]`, `x .5`, `[1, 2] [3, 4]`."""
    if isinstance(e.right, ast.Num) and e.right.setting is None:  # `x s` of a setting s reads as written
        raise SpecError("a number written after a value is read as a product", e.right.span,
                        hint="write the number first (`2 x`) or use `*`; separate list entries with `,`")
    literals = (ast.Stack, ast.Concat)
    if isinstance(e.left, literals) and isinstance(e.right, literals):
        raise SpecError("two bracketed lists side by side are read as a product", e.span,
                        hint="separate the rows of a matrix with `,`, as in `[[1, 2], [3, 4]]`")


def check_list(ex, e) -> None:
    """A list's entries separated by spaces, as a whiteboard or MATLAB writes a row: `[0.5 -1]` is
    a subtraction and `[1 m n]` a product by the grammar, but two or three entries to a reader.
    Refused with both readings: a sign written against a value (`a -b`, `a +b`) in any list, and a
    product side by side in a list of one entry, where no `,` shows what an entry is, or in a `;`
    list of such products only, which MATLAB reads as the rows of a matrix (`[w11 w12; w21 w22]`;
    `[1; W x]` is a vector). Brackets of their own, `[(a b)]`, say it is one."""
    rows = isinstance(e, ast.Concat) and len(e.items) > 1 and all(map(spaced, e.items))  # `[a b; c d]`
    for item in e.items:
        for part in unbracketed(item, ex.lines):
            if part.op in "+-" and sign_against(part, ex.lines):
                raise signed_entry(ex, part)
            if part.op == "juxt" and (len(e.items) == 1 or rows):
                raise spaced_entries(ex, item, part)


def spaced(item) -> bool:
    """Whether a list's entry is written as a product side by side (or its negation), `a b`."""
    item = item.operand if isinstance(item, ast.Neg) else item
    return isinstance(item, ast.BinOp) and item.op == "juxt"


def signed_entry(ex, part: ast.BinOp) -> SpecError:
    """The refusal of `a -b` in a list: spelled out where both sides are plain values."""
    op, noun = part.op, "sum" if part.op == "+" else "difference"
    a, b = ex.spelled(part.left), ex.spelled(part.right)
    plain = None not in (a, b) and not isinstance(part.right, ast.BinOp)
    readings = f"two entries, `{a}, {op}{b}`, or one, `{a} {op} {b}`" if plain else \
        f"`{op}` as the sign of a new entry, or as a {noun}"
    return SpecError(f"{ex.snippet(part.span)} in a list can be read two ways: {readings}", part.span,
                     hint=f"separate entries with `,`; for the {noun}, put spaces on both sides of `{op}`")


def spaced_entries(ex, item, part: ast.BinOp) -> SpecError:
    """The refusal of a product side by side as a list's one entry: its factors as entries, where the
    entry is the product (or its negation, `[-1 x]`), or else the product named within the entry."""
    whole = item if isinstance(item, ast.Neg) and item.operand is part else part
    product = ex.snippet(whole.span).strip("`")
    if whole is item or part is item:
        factors = [ex.spelled(f) or "..." for f in juxtaposed(part, ex.lines)]
        factors[0] = "-" * (whole is not part) + factors[0]
        readings = f"entries `[{', '.join(factors)}]`, or their product, one entry"
    else:
        readings = f"entries separated by its spaces, or one entry holding the product `{product}`"
    return SpecError(f"{ex.snippet(item.span)} in a list can be read two ways: {readings}", item.span,
                     hint=f"separate entries with `,`, or bracket the product: `({product})`")


def unbracketed(e, lines: list):
    """The sums, differences, products and negations an entry is written as, outside brackets of their
    own (a call, an index or an inner list is one value)."""
    if isinstance(e, ast.BinOp) and not bracketed(e.span, lines):
        yield e
        yield from unbracketed(e.left, lines)
        yield from unbracketed(e.right, lines)
    elif isinstance(e, ast.Neg) and not bracketed(e.span, lines):
        yield from unbracketed(e.operand, lines)


def juxtaposed(e: ast.BinOp, lines: list) -> list:
    """The factors of a product side by side, `1 m n`, in order."""
    left = e.left
    head = juxtaposed(left, lines) if isinstance(left, ast.BinOp) and left.op == "juxt" and not bracketed(
        left.span, lines) else [left]
    return [*head, e.right]


def sign_against(e: ast.BinOp, lines: list) -> bool:
    """Whether `+` or `-` is written as a sign: space (or a line break) before it and none after, `a -b`."""
    left, right = with_brackets(e.left.span, lines), with_brackets(e.right.span, lines)
    if left.end_line == right.line:
        between = lines[left.end_line - 1][left.end_col - 1:right.col - 1]
    else:  # the lines between, as code
        between = "\n".join([code(lines[left.end_line - 1][left.end_col - 1:]),
                             *map(code, lines[left.end_line:right.line - 1]), lines[right.line - 1][:right.col - 1]])
    return between.rstrip(" \t") == between and between.strip() == e.op and between[:1].isspace()


def check_prefixed(e: ast.BinOp) -> None:
    """`0x10` is 0 times x10 by the grammar (`2x1` is 2 times x1), where a programmer means sixteen:
    a 0 written against a name that begins as a hexadecimal, binary or octal prefix is refused."""
    left, right = e.left, written_name(e.right)  # `0x1[0]`, `0x10'` too
    if (isinstance(left, ast.Num) and left.text.strip("0") == "" and right is not None
            and right.id[0] in "xXbBoO"
            and (left.span.end_line, left.span.end_col) == (right.span.line, right.span.col)):
        raise SpecError(f"`{left.text}{right.id}` is 0 times `{right.id}`: graphdsl has no hexadecimal, binary or "
                        "octal numbers", e.span, hint=f"write the number in decimal, or `0 {right.id}` for the product")


def bracketed(span: Span, lines: list) -> bool:
    """Whether an expression stands in brackets of its own, `(b c)`: the parser keeps the span of
    what is inside, so the text before it ends with `(` and the text after starts with `)` (in a
    call, `f(b c d)`, `b c` has a `(` before it but no `)` after)."""
    return near(lines, span.line - 1, lines[span.line - 1][:span.col - 1], -1).endswith("(") and \
        near(lines, span.end_line - 1, lines[span.end_line - 1][span.end_col - 1:], 1).startswith(")")


def near(lines: list, line: int, text: str, step: int) -> str:
    """The code beside an expression: `text`, the rest of its line before (step -1) or after it (1),
    or where that is blank, the nearest line's code in that direction (brackets span lines)."""
    text = code(text).strip()
    while not text and 0 <= line + step < len(lines):
        line += step
        text = code(lines[line]).strip()
    return text


def code(line: str) -> str:
    """A line's code: without its comment, its line ending (`\\r` of Windows') and a `\\` that continues it."""
    return line.split("#")[0].rstrip().removesuffix("\\")


def with_brackets(span: Span, lines: list) -> Span:
    """The span of an expression with the brackets of its own around it, `(b c)`, where it has
    them on its line (every layer, `((b))`); the parser's span holds what is inside."""
    text = lines[span.line - 1]
    while span.line == span.end_line and bracketed(span, lines):  # `((2))`: every layer
        after = text[span.end_col - 1:]
        close = span.end_col + len(after) - len(after.lstrip())  # the `)`'s column
        span = Span(span.line, len(text[:span.col - 1].rstrip()), span.line, close + 1)
    return span


def check_division(e: ast.BinOp, lines: list) -> None:
    """`a / b c` is a / (b c) by precedence, but a whiteboard's `1/2 (y - t)^2` means (1/2) (y - t)^2:
    a divisor that is a product by juxtaposition, without brackets of its own, is refused."""
    divisor = e.right
    while isinstance(divisor, ast.Neg):  # `1/-2 x` is as ambiguous
        divisor = divisor.operand
    if not (isinstance(divisor, ast.BinOp) and divisor.op == "juxt") or bracketed(divisor.span, lines):
        return
    first, second = (with_brackets(f.span, lines) for f in juxtaposed(divisor, lines)[:2])
    if e.span.line == e.span.end_line:
        text = lines[e.span.line - 1]
        cut = lambda a, b: text[a - 1:b - 1].strip()  # noqa: E731
        left = cut(e.span.col, with_brackets(e.left.span, lines).end_col)
        top, rest = cut(e.right.span.col, first.end_col), cut(second.col, divisor.span.end_col)  # `-2 x`: from the sign
        readings = f"`({left} / {top}) {rest}` or `{left} / ({top} {rest})`"
    else:
        readings = "`(a / b) c` or `a / (b c)`"
    raise SpecError(f"a division by a product written side by side can be read two ways: {readings}", e.span,
                    hint="write the one you mean with its brackets")
