"""The grammar builds without conflicts and parses the constructs it promises."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import lark
import pytest
from lark import Lark, logger

from graphdsl.frontend import ast
from graphdsl.frontend.parser import grammar_text, parse


def test_grammar_has_no_lalr_conflicts(caplog):
    """Lark resolves shift/reduce conflicts silently (logging them); any would be a hidden ambiguity."""
    logger.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="lark"):
        Lark(grammar_text(), parser="lalr", debug=True)
    conflicts = [r.getMessage() for r in caplog.records if "conflict" in r.getMessage().lower()]
    assert conflicts == []


def value(text):
    return parse(f"z = {text}\n").statements[0].value


@pytest.mark.parametrize("text, shape", [
    ("sigmoid(x)", ast.Call),           # a call: name directly against (
    ("W (x)", ast.BinOp),               # with a space: a product
    ("x[0]", ast.Index),                # an index: directly against [
    ("W [1; x]", ast.BinOp),            # with a space: a product with a literal
])
def test_brackets_against_a_name_call_or_index_and_with_a_space_multiply(text, shape):
    assert isinstance(value(text), shape)


def test_juxtaposition_binds_tighter_than_division_and_looser_than_power():
    e = value("a / b c^2")
    assert e.op == "/" and e.right.op == "juxt" and e.right.right.op == "^"


def test_unary_minus_applies_to_the_whole_product_and_power():
    e = value("-W x^2")
    assert isinstance(e, ast.Neg) and e.operand.op == "juxt"


def test_negative_exponent_then_product():
    e = value("x^-2 y")
    assert e.op == "juxt" and e.left.op == "^" and isinstance(e.left.right, ast.Neg)


def test_newlines_inside_brackets_continue_the_statement():
    program = parse("param W = [[1, 2],\n           [3, 4]]\nz = sigmoid(W x +\n  b)\n")
    assert len(program.statements) == 2


def test_comments_blank_lines_and_no_final_newline():
    program = parse("# a comment\n\n  \nx = 1  # trailing\n# end\ny = 2")
    assert [s.name.text for s in program.statements] == ["x", "y"]


def test_a_source_checkout_finds_its_grammar():
    """Python started in the repository imports graphdsl/ from there, not the installed copy:
    the grammar beside the parser must be found there too."""
    root = Path(__file__).resolve().parent.parent
    lark_home = Path(lark.__file__).resolve().parent.parent  # site-packages, without its .pth files
    code = "import graphdsl; print(graphdsl.__file__, graphdsl.compile('input x = 1\\ny = x * 2\\n').forward()['y'])"
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{lark_home}"})
    assert done.returncode == 0, done.stderr
    location, y = done.stdout.split()
    assert Path(location).parent == root / "graphdsl" and float(y) == 2.0
