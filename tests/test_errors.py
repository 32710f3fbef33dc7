"""Golden tests for bad specs, in the style of stanc3's test/integration/bad/.

Each tests/golden/NAME.nn must fail to compile, and str() of its SpecError must
equal tests/golden/NAME.err exactly. After changing a message on purpose,
regenerate the .err files with

    GRAPHDSL_UPDATE_GOLDEN=1 pytest tests/test_errors.py

and read every changed message in the diff before committing it.
"""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphdsl

GOLDEN = Path(__file__).parent / "golden"
SPECS = sorted(GOLDEN.glob("*.nn"))
UPDATE = os.environ.get("GRAPHDSL_UPDATE_GOLDEN") == "1"

# Names from the grammar or from Lark that mean nothing to a user.
INTERNALS = re.compile(r"__ANON|\bRPAR\b|\bLPAR\b|\bLSQB\b|\bRSQB\b|\b_NL\b|\$END|Token\(|Traceback")


def compile_error(spec: Path) -> graphdsl.SpecError:
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(spec.read_text(encoding="utf-8"), filename=spec.name)
    return info.value


def test_there_are_golden_specs():
    assert len(SPECS) >= 30


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_bad_spec_message(spec):
    err = compile_error(spec)
    text = str(err)
    expected = spec.with_suffix(".err")
    if UPDATE:
        expected.write_text(text + "\n", encoding="utf-8")
    assert expected.exists(), f"{expected.name} is missing; write it with GRAPHDSL_UPDATE_GOLDEN=1"
    assert text + "\n" == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_bad_spec_is_located_and_clean(spec):
    err = compile_error(spec)
    text = str(err)
    if err.span is not None:
        assert err.line is not None and err.column is not None
        assert text.startswith(f"{spec.name}:{err.line}:{err.column}: error: ")
    else:
        assert text.startswith(f"{spec.name}: error: ")
    assert not INTERNALS.search(text), text


def test_every_err_file_has_a_spec():
    orphans = [p.name for p in GOLDEN.glob("*.err") if not p.with_suffix(".nn").exists()]
    assert not orphans


def test_cli_reports_spec_error_on_stderr_with_exit_code_2():
    # A subprocess rather than CliRunner: click's stderr capture differs across the versions allowed.
    spec = GOLDEN / "undefined_name.nn"
    proc = subprocess.run([sys.executable, "-c", "from graphdsl.cli import main; main()", "run", spec.name],
                          cwd=GOLDEN, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == spec.with_suffix(".err").read_text(encoding="utf-8")


@pytest.mark.parametrize("expr, want", [
    ("(1/2) (y - t)^2", 2.0),          # 0.5 * 2^2
    ("1/(2 (y - t)^2)", 0.125),        # 1 / (2 * 4)
    ("1 / (2 (y - t)^2)", 0.125),
    ("y t / 2", 1.5),                  # (3 * 1) / 2 on any reading
    ("y / 2 * t", 1.5),                # `*` is not juxtaposition: (3 / 2) * 1
])
def test_a_division_with_its_brackets_is_accepted(expr, want):
    model = graphdsl.compile(f"input y = 3\ninput t = 1\nL = {expr}\n", engine="numpy")
    assert model.forward()["L"] == want


@pytest.mark.parametrize("expr, readings", [
    ("y / t y", "`(y / t) y` or `y / (t y)`"),
    ("y / (t) y", "`(y / (t)) y` or `y / ((t) y)`"),
    ("y / t (y - 1)", "`(y / t) (y - 1)` or `y / (t (y - 1))`"),
    ("2 + 1/2 t y", "`(1 / 2) t y` or `1 / (2 t y)`"),
    ("1/(2 t) sum(y)", "`(1 / (2 t)) sum(y)` or `1 / ((2 t) sum(y))`"),
    ("(y - 1) / (y + 1) (y - 1)", "`((y - 1) / (y + 1)) (y - 1)` or `(y - 1) / ((y + 1) (y - 1))`"),
    ("((y + t)) / ((2)) (t)", "`(((y + t)) / ((2))) (t)` or `((y + t)) / (((2)) (t))`"),
    ("1/-2 y", "`(1 / -2) y` or `1 / (-2 y)`"),
])
def test_a_division_by_a_product_side_by_side_is_refused_with_both_readings(expr, readings):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input y = 3\ninput t = 1\nL = {expr}\n", engine="numpy")
    assert readings in str(info.value) and "with its brackets" in str(info.value)


WARNED = "input x[2] = [1, 2]\nparam W[2, 2] = [[1, 0], [0, 1]]\ny = sum({expr})\nshow y\n"


@pytest.mark.parametrize("expr, product", [("W * x", "`W x`"), ("x * W", "`W x`"), ("(W) * (x)", "`W x`")])
def test_a_matrix_times_a_vector_entry_by_entry_is_warned_about(expr, product):
    """Legal broadcasting, so the values stand (sum of W * x = 1*1 + 0*2 + 0*1 + 1*2 = 3), but a
    located warning asks whether the matrix product was meant."""
    with pytest.warns(graphdsl.SpecWarning) as caught:
        model = graphdsl.compile(WARNED.format(expr=expr), filename="net.nn", engine="numpy")
    assert model.forward()["y"] == 3.0
    text = str(caught[0].message)
    assert text.startswith("net.nn:3:9: warning: ") and f"did you mean {product}" in text, text


@pytest.mark.parametrize("expr", ["W * W", "x * x", "2 * W", "W x", "x' W"])
def test_other_products_are_not_warned_about(expr):
    with warnings.catch_warnings():
        warnings.simplefilter("error", graphdsl.SpecWarning)
        graphdsl.compile(WARNED.format(expr=expr), engine="numpy")


def test_the_command_line_prints_the_warning_on_stderr_and_exits_0(tmp_path):
    spec = tmp_path / "net.nn"
    spec.write_text(WARNED.format(expr="W * x"))
    done = subprocess.run([sys.executable, "-c", "from graphdsl.cli import main; main()", "run", str(spec)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "y scalar  3" in done.stdout
    assert done.stderr.startswith(f"{spec}:3:9: warning: `W` ([2, 2]) * `x` ([2]) multiplies entry by entry")
    assert "did you mean `W x`" in done.stderr


def test_a_matrix_times_a_vector_of_its_height_is_warned_about_with_the_transposed_product():
    spec = "input x[3] = [1, 2, 3]\nparam W[3, 2] = [[1, 0], [0, 1], [1, 1]]\ny = W * x\nshow y\n"
    with pytest.warns(graphdsl.SpecWarning, match="down the matrix's columns") as caught:
        model = graphdsl.compile(spec, engine="numpy")
    assert "did you mean `W' x`" in str(caught[0].message)
    np.testing.assert_array_equal(model.forward()["y"], [[1, 0], [0, 2], [3, 3]])


COLUMNS = ("input X[2, 4] = [[1, 2, 3, 4], [5, 6, 7, 8]]\nparam W[3, 2] = [[1, 0], [0, 1], [1, -1]]\n"
           "param b[3] = [10, 20, 30]\nparam c[2] = [2, 4]\n")


@pytest.mark.parametrize("expr, expected", [
    ("W X + b", lambda W, X, b, c: W @ X + b[:, None]),      # examples as columns: b on every column
    ("b - W X", lambda W, X, b, c: b[:, None] - W @ X),
    ("X / c", lambda W, X, b, c: X / c[:, None]),
    ("X' + c", lambda W, X, b, c: X.T + c),                   # the width: along every row, as NumPy
    ("c ^ X", lambda W, X, b, c: c[:, None] ** X),
])
def test_a_vector_meets_a_matrix_along_the_side_of_its_length(expr, expected):
    values = {"W": np.array([[1, 0], [0, 1], [1, -1]]), "X": np.arange(1.0, 9).reshape(2, 4),
              "b": np.array([10.0, 20, 30]), "c": np.array([2.0, 4])}
    model = graphdsl.compile(COLUMNS + f"Z = {expr}\nshow Z\n", engine="numpy")
    np.testing.assert_allclose(model.forward()["Z"], expected(**values))


@pytest.mark.parametrize("op", ["+", "-", "/", "^"])
def test_a_vector_on_a_square_matrix_is_refused_with_both_readings(op):
    spec = "param A[2, 2] = [[1, 2], [3, 4]]\nparam b[2] = [1, 2]\nZ = A {op} b\n"
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(spec.format(op=op), engine="numpy")
    assert "could go along each row or down each column" in str(info.value)
    assert "`[b]` (a [1, 2] row)" in str(info.value) and "`[b]'` (a [2, 1] column)" in str(info.value)
    rows = graphdsl.compile(spec.format(op=op).replace("b\n", "[b]\n"), engine="numpy").forward()["Z"]
    columns = graphdsl.compile(spec.format(op=op).replace("b\n", "[b]'\n"), engine="numpy").forward()["Z"]
    A, b = np.array([[1.0, 2], [3, 4]]), np.array([1.0, 2])
    calc = {"+": np.add, "-": np.subtract, "/": np.divide, "^": np.power}[op]
    np.testing.assert_allclose(rows, calc(A, b[None, :]))
    np.testing.assert_allclose(columns, calc(A, b[:, None]))


@pytest.mark.parametrize("body", [
    "L = sum([1 /\n  2 y])",            # the divisor starts the next line, inside a list
    "L = 1/-2 (y - t)^2",              # a negated product
])
def test_a_division_by_a_product_is_refused_however_it_is_laid_out(body):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input y = 3\ninput t = 1\n{body}\n", engine="numpy")
    assert "can be read two ways" in str(info.value)


@pytest.mark.parametrize("body, want", [
    ("L = 1 / (\n2 y)", 1 / 6),                          # bracketed, opening on the line before
    ("L = 1 / (  # a note (\n  2 y)", 1 / 6),            # a comment after the bracket
    ("# a \u2028 line separator in a comment\nL = 1 / (2 y)", 1 / 6),  # lines counted as the parser counts them
])
def test_a_bracketed_divisor_is_accepted_however_it_is_laid_out(body, want):
    assert graphdsl.compile(f"input y = 3\n{body}\n", engine="numpy").forward()["L"] == pytest.approx(want)


def test_a_class_index_out_of_range_in_a_minimize_setting_is_a_located_error():
    spec = ("input x[2] = [1, 2]\nparam W[2, 2] = [[1, 0], [0, 1]]\nL = sum(W x)\n"
            "minimize L using sgd(lr=0.1), epochs=softmax_ce([1, 2], 1 + 1)\n")  # a computed index
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(spec, filename="net.nn", engine="numpy")
    assert str(info.value).startswith("net.nn:4:38: error: `epochs`: a class index")


def test_a_warning_in_a_for_block_is_given_once(tmp_path):
    spec = tmp_path / "net.nn"
    spec.write_text("setting hidden = [2, 2]\ninput x[2] = [1, 2]\nfor n in hidden\n"
                    "    param W[n, 2] = xavier()\n    h = W * x\nend\n")
    for command in ("run", "show-ir", "show-code"):
        done = subprocess.run([sys.executable, "-c", "from graphdsl.cli import main; main()", command, str(spec)],
                              capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr.count("warning:") == 1, (command, done.stderr)


@pytest.mark.parametrize("expr, hint", [("x.foo()", "graphdsl has no function `foo`"),
                                        ("np.foo(x)", "graphdsl has no function `foo`"),
                                        ("x.tanh()", "write `tanh(x)`")])
def test_a_python_call_names_only_functions_graphdsl_has(expr, hint):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input x = 1\ny = {expr}\n", engine="numpy")
    assert hint in str(info.value)


@pytest.mark.parametrize("expr, hint", [("x\u00b2", "`x^2`"), ("x\u2081", "`x1` or `x_1`"), ("\u06f3 x", "digits as 0-9"),
                                        ("\u0177", "`y_hat`"), ("x \u00b7 x", "side by side"), ("x \u2212 1", "`-`"),
                                        ("x \u2013 1", "`-`"), ("x\u2019", "`'`"), ("\u00bd x", "`1/2`"),
                                        ("x \u00f7 2", "`/`")])
def test_a_whiteboard_symbol_is_located_with_its_spelling(expr, hint):
    """Symbols copied from a homework sheet: the character named (never an empty quote) and the hint
    its spelling in a spec."""
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input x = 2\ny = {expr}\n", filename="s.nn")
    char = next(c for c in expr if ord(c) > 127)
    assert str(info.value).startswith("s.nn:2:") and f"`{char}`" in str(info.value) and hint in str(info.value)


def test_a_file_whose_lines_end_in_a_carriage_return_alone_says_so():
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile("input x = 2\rshow x\r", filename="s.nn")
    assert "carriage return alone" in str(info.value) and "line endings" in str(info.value)


LISTED = "input x = 2\ninput y = 3\nparam W = [[1, 0], [0, 1]]\nz = {expr}\nshow z\n"


@pytest.mark.parametrize("expr, readings", [
    ("[0.5 -1]", "two entries, `0.5, -1`, or one, `0.5 - 1`"),
    ("[[1 -1], [2 -3]]", "two entries, `1, -1`, or one, `1 - 1`"),
    ("[x +2]", "two entries, `x, +2`, or one, `x + 2`"),
    ("[x -1, 3]", "two entries, `x, -1`, or one, `x - 1`"),
    ("[1; x -y]", "two entries, `x, -y`, or one, `x - y`"),
    ("[x y]", "entries `[x, y]`, or their product"),
    ("[1 x y]", "entries `[1, x, y]`, or their product"),
    ("[-1 x]", "entries `[-1, x]`, or their product"),
    ("[x (-1)]", "entries `[x, -1]`, or their product"),
    ("[0.5\n  -1]", "two entries, `0.5, -1`, or one, `0.5 - 1`"),          # across lines, inside the brackets
    ("[1, x \\\n -1]", "two entries, `x, -1`, or one, `x - 1`"),
    ("[(x) -1]", "two entries, `x, -1`, or one, `x - 1`"), ("[x -(y)]", "two entries, `x, -y`"),
    ("[x -1 y]", "`-` as the sign of a new entry, or as a difference"),
    ("[1 - 2 y]", "`1 - 2 y` in a list can be read two ways: entries separated by its spaces, or one entry holding "
                  "the product `2 y`"),
    ("[x y; 2 x]", "entries `[x, y]`, or their product"),                        # MATLAB's rows
    ("[x \\\r\n -y]", "two entries, `x, -y`"),                                  # Windows line endings
])
def test_a_list_written_with_spaces_between_entries_is_refused_with_both_readings(expr, readings):
    """A whiteboard's (or MATLAB's) row `[0.5 -1]` is a difference by the grammar: refused, not read
    as one entry."""
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(LISTED.format(expr=expr), engine="numpy")
    assert readings in str(info.value) and "separate entries with `,`" in str(info.value)


@pytest.mark.parametrize("expr, want", [
    ("[0.5, -1]", [0.5, -1]), ("[x - 1, 3]", [1, 3]), ("[x-1, 3]", [1, 3]), ("[2 x, 3 y]", [4, 9]),
    ("[(x y)]", [6]), ("[sigmoid(0 x)]", [0.5]), ("[x, -y]", [2, -3]), ("[1; (x y)]", [1, 6]),
    ("[1; x y]", [1, 6]), ("[x; W [1, 1]]", [2, 1, 1]),               # a `;` list of a product and others: a vector
])
def test_a_list_whose_entries_are_plain_is_read_as_written(expr, want):
    z = graphdsl.compile(LISTED.format(expr=expr), engine="numpy").forward()["z"]
    np.testing.assert_array_equal(z, want)


@pytest.mark.parametrize("defined, expr, reading, number", [("e1", "2e1", "`2 e1`", "`20`"),
                                                            ("E2", "3E2 + 1", "`3 E2`", "`300`"),
                                                            ("e20", "1e20", "`1 e20`", "`100000000000000000000`")])
def test_a_number_in_scientific_notation_spelling_a_defined_name_is_refused(defined, expr, reading, number):
    """`2x1` is 2 times x1, so `2e1` beside a name `e1` reads either way; the hint's number is plain."""
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input {defined} = 0.5\nz = {expr}\nshow z\n", engine="numpy")
    assert f"could be {reading}" in str(info.value) and f"or {number} for the number" in str(info.value)


def test_a_number_in_scientific_notation_is_a_number_where_no_name_can_be_read():
    """A sign after the e (`1e-3` beside a residual `e`) is no product; settings read no param `e1`."""
    spec = ("input x = 1\ntarget y = 2\nparam w = 0.5\nparam e1 = 1\ne = w x - y\n"
            "z = 2e-1 + 1e-3 e + 1.5E2\nL = 0.5 e^2 + 1e-4 (w^2 + e1^2)\nshow z\n"
            "minimize L using sgd(lr=1e-1), epochs=1e1\n")
    model = graphdsl.compile(spec, engine="numpy")
    assert model.forward()["z"] == pytest.approx(0.2 + 0.001 * -1.5 + 150, rel=1e-15)
    assert len(model.train().epoch) == 10


CHAINED = "input x[2] = [1, 2]\ninput y[2] = [3, 4]\ninput a = 2\nparam W = [[1, 2], [3, 4]]\nq = {expr}\nshow q\n"


@pytest.mark.parametrize("expr, readings", [("x y W", "`(x y) W` as written, or `x (y W)`"),
                                            ("W x y", "`(W x) y` as written, or `W (x y)`"),
                                            ("x y x", "`(x y) x` as written, or `x (y x)`"),
                                            ("a x y W", "`((a x) y) W` as written, or `a x (y W)`"),
                                            ("y W x y", "`((y W) x) y` as written, or `y W (x y)`"),
                                            ("2 x y W", "`((2 x) y) W` as written, or `2 x (y W)`"),
                                            ("sum(x y W)", "`(x y) W`"), ("(W x y) + 1", "`W (x y)`"),
                                            ("2 (x y W)", "`x (y W)`"), ("sum(\n x y W)", "`x (y W)`")])
def test_two_vectors_side_by_side_among_three_factors_are_refused_with_both_groupings(expr, readings):
    """`x y W` is (x y) W, a matrix, by the grammar; x (y W) is a number: a dot product moves."""
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(CHAINED.format(expr=expr), engine="numpy")
    assert readings in str(info.value) and "brackets of the grouping" in str(info.value)


@pytest.mark.parametrize("expr, want", [("x' W y", 61), ("x W y", 61), ("W W x", [27, 59]), ("a x y", 22),
                                        ("x a y", 22), ("x (y W)", 59), ("(x y) W", [[11, 22], [33, 44]]),
                                        ("sum((x y) W)", 110), ("sum(\n (x y) W)", 110)])
def test_products_side_by_side_that_group_alike_are_read_as_written(expr, want):
    """x' W y = [7, 10] . [3, 4] = 61 either way; W W x = [[7, 10], [15, 22]] [1, 2]; scalars commute."""
    np.testing.assert_array_equal(graphdsl.compile(CHAINED.format(expr=expr), engine="numpy").forward()["q"], want)


LOSSES = ("input w = 1\ntarget y = 1\ninput z[3] = [1, 2, 3]\ntarget t[3] = [0, 0, 1]\ntarget k = 2\n"
          "p = sigmoid(w)\ns = softmax(z)\nL = {expr}\nshow L\n")


@pytest.mark.parametrize("expr, message, hint", [
    ("bce(y, p)", "`y` is a target, but `bce` takes the prediction there", "write `bce(p, y)`"),
    ("bce_logits(y, w)", "`y` is a target", "write `bce_logits(w, y)`"),
    ("softmax_ce(t, z)", "`t` is a target, but `softmax_ce` takes the scores there", "`softmax_ce(z, t)`"),
    ("softmax_ce(k, z)", "`k` is a target", "write `softmax_ce(z, k)`"),
    ("bce(y, p, reduce=sum)", "`y` is a target", "write `bce(p, y, reduce=sum)`"),
    ("bce(t[0], p)", "`t[0]` is a target", "write `bce(p, t[0])`"), ("bce(t', s)", "`t'` is a target", "`bce(s, t')`"),
    ("softmax_ce(softmax(z), t)", "applies the softmax itself, so `softmax(z)`", "pass the raw scores"),
    ("softmax_ce(s, k)", "applies the softmax itself, so `s`", "pass the raw scores"),
    ("bce_logits(sigmoid(w), y)", "applies the sigmoid itself", "`bce(sigmoid(z), y)`"),
])
def test_a_loss_given_a_target_first_or_its_own_activation_is_refused(expr, message, hint):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(LOSSES.format(expr=expr), engine="numpy")
    assert message in str(info.value) and hint in str(info.value)


@pytest.mark.parametrize("expr, want", [
    ("bce(p, y)", np.log1p(np.exp(-1.0))), ("bce(sigmoid(w), y)", np.log1p(np.exp(-1.0))),
    ("mse(y, p)", (1 - 1 / (1 + np.exp(-1.0))) ** 2), ("softmax_ce(z, t)", np.log(np.exp([1, 2, 3]).sum()) - 3),
    ("softmax_ce(z, k)", np.log(np.exp([1, 2, 3]).sum()) - 3), ("softmax_ce(log(s), k)", np.log(np.exp([1, 2, 3]).sum()) - 3),
])
def test_a_loss_given_its_arguments_in_order_or_symmetric_ones_either_way_is_read_as_written(expr, want):
    """-log(sigmoid(1)) = log(1 + e^-1); softmax_ce of [1, 2, 3] at class 2 is logsumexp - 3; mse is the
    same either way round; log(softmax(z)) is scores again, up to a shift."""
    L = graphdsl.compile(LOSSES.format(expr=expr), engine="numpy").forward()["L"]
    assert L == pytest.approx(want, rel=1e-12)


def test_softmax_ce_of_a_scalar_says_it_needs_a_score_a_class():
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile("input s = 2\ntarget t = 1\nL = softmax_ce(s, t)\n", engine="numpy")
    assert "the scores are a scalar" in str(info.value) and "bce" in str(info.value)


@pytest.mark.parametrize("expr", ["0x10", "0b1", "0o7", "00x10", "0x10'"])
def test_a_hexadecimal_looking_number_is_refused(expr):
    """`0x10` beside a name x10 is 0 times x10 by the grammar, silently 0."""
    name = expr.lstrip("0").rstrip("'")
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input {name} = 3\nz = {expr} + 1\nshow z\n", engine="numpy")
    assert "no hexadecimal, binary or octal numbers" in str(info.value)
    assert graphdsl.compile(f"input {name} = 3\nz = 2{name} + 0 {name}\nshow z\n", engine="numpy").forward()["z"] == 6


@pytest.mark.parametrize("expr, hint", [("+1", "no unary plus"), ("2 * +x", "no unary plus"),
                                        ("1_000", "without `_`"), ("size(x)", "in shapes only"),
                                        ("mse", "`mse(prediction, target)`"), ("sum(x, axis=1)", "counted from 0")])
def test_a_slip_gets_the_hint_that_mends_it(expr, hint):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(f"input x[2] = [1, 2]\nL = {expr}\n", engine="numpy")
    assert hint in str(info.value)


@pytest.mark.parametrize("n", [3, 4])
def test_eq_of_a_column_and_a_vector_is_numpys_table_whatever_the_sizes(n):
    """The one-hot idiom eq([k]', c): NumPy's [n, C] table, also where n equals C (the operators'
    column rule would send c down the one column there)."""
    k = [0, 2, 1, 1][:n]
    T = graphdsl.compile(f"target k = {k}\nconst c = [0, 1, 2]\nT = eq([k]', c)\nshow T\n", engine="numpy").forward()["T"]
    np.testing.assert_array_equal(T, np.eye(3)[k])


def test_a_setting_is_a_number_written_as_a_name_so_it_may_follow_a_value():
    """`x s` and `0.5 lambda` of settings read as written (a number typed after a value is refused);
    0.5 * 0.01 * (1 + 4 + 9 + 16) = 0.15."""
    spec = ("setting lambda = 0.01\nsetting s = 0.5\ninput x[2] = [1, 2]\nparam W = [[1, 2], [3, 4]]\n"
            "a = 2 s\nb = x s\nc = 0.5 lambda sum(pow(W, 2))\nshow a, b, c\n")
    got = graphdsl.compile(spec, engine="numpy").forward()
    assert got["a"] == 1 and list(got["b"]) == [0.5, 1] and got["c"] == pytest.approx(0.15, rel=1e-15)


@pytest.mark.parametrize("spec", ["setting e1 = 2\ninput x = 1\na = 2e1 x\n",
                                  "setting hidden = [2, 2]\ninput x[2] = [1, 2]\nfor e1 in hidden\n"
                                  "  param W[e1, 2] = [[1, 0], [0, 1]]\n  h = 2e1 W x\nend\n"])
def test_scientific_notation_spelling_a_setting_or_a_for_variable_is_refused(spec):
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.compile(spec, engine="numpy")
    assert "could be `2 e1`" in str(info.value)
