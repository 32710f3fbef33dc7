"""A spec can never run Python: hostile names, strings, numbers and settings stay data.

Generated code names every value by node id (`v7`) and writes numbers with repr(float) of the
parsed value; user names appear only in comments. Nothing evaluates user text, and data and
weights load with allow_pickle=False.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphdsl
from graphdsl.errors import DataError, SpecError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "graphdsl"
HOSTILE_NAMES = ["__import__", "eval", "exec", "os", "sys", "__builtins__", "v0", "T", "K", "np", "njit",
                 "kernel", "acc", "None", "True", "lambda", "import", "def", "return", "print"]


def code_lines(source: str) -> list:
    """The generated source without its comments (where user names may appear)."""
    return [line for line in source.splitlines() if not line.strip().startswith("#")]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_only_names(name):
    text = f"input {name} = [1, 2]\nparam W = [[1, 0], [0, 2]]\ny = W {name}\nL = sum(y)\ngrad L wrt W, {name}\n"
    model = graphdsl.compile(text, engine="numpy")
    assert model.forward()["y"].tolist() == [1, 4]
    for which in ("forward", "grad"):
        generated = "\n".join(code_lines(model.source(which)))
        if name.startswith("__") or name in ("eval", "exec", "os"):
            assert name not in generated
        compile(model.source(which), "<generated>", "exec")  # still valid Python


def test_hostile_names_compile_and_run_with_numba():
    text = "input __import__ = [1, 2]\nparam eval = [[1, 0], [0, 2]]\ny = eval __import__\nL = sum(y)\ngrad L wrt eval\n"
    model = graphdsl.compile(text, engine="numba")
    assert model.forward()["y"].tolist() == [1, 4]
    assert model.grad()["eval"].tolist() == [[1, 2], [1, 2]]


@pytest.mark.parametrize("text", [
    'data "a.csv;import os"\n',
    'data "\'); import os; print(\'"\n',
    'data "a\nb"\n',
    'data "a" "b"\n',
    'setting s = 1);import os;(1\n',
    'input x = __import__("os")\n',
    'y = exec("print(1)")\n',
    'input x = 1 # ";import os\n y = x\n',
])
def test_hostile_text_is_refused_or_stays_a_string(text):
    try:
        spec = graphdsl.compile(text, engine="numpy").spec
    except SpecError as err:
        assert err.span is not None, str(err)
        return
    for stmt_files in ([spec.training.data.files] if spec.training and spec.training.data else []):
        assert all(isinstance(f, str) for f in stmt_files)


def test_data_file_names_are_paths_not_code(tmp_path):
    spec = tmp_path / "net.nn"
    spec.write_text('input x\ntarget y\nparam w = 0\nL = (w x - y)^2\ndata "x;touch pwned"\n'
                    'minimize L using sgd(lr=0.1)\n')
    proc = subprocess.run([sys.executable, "-c", "from graphdsl.cli import main; main()", "run", "net.nn"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    assert proc.returncode == 2 and "x;touch pwned: no such file" in proc.stderr, proc.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", ["1);import os;(1", "__import__('os')", "inf", "nan", "-inf", "1e400", "1,nan"])
def test_hostile_setting_values_are_refused(tmp_path, value):
    spec = tmp_path / "net.nn"
    spec.write_text("setting s = 2\ninput x = 1\ny = s x\nshow y\n")
    proc = subprocess.run([sys.executable, "-c", "from graphdsl.cli import main; main()", "run", "net.nn",
                           "--set", f"s={value}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    assert proc.returncode == 2, proc.stderr
    assert "setting `s`" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("literal", ["1e308", "1.7976931348623157e308", "1e-320", "4.9e-324", "1e-400", "0.1",
                                     "123456789012345678901234567890", "3.141592653589793238462643383279"])
def test_numbers_are_emitted_as_the_parsed_float(literal):
    model = graphdsl.compile(f"input x = 1\ny = {literal} * x\nshow y\n", engine="numpy")
    value = float(literal)
    assert repr(value) in "\n".join(code_lines(model.source()))
    assert model.forward()["y"] == value


@pytest.mark.parametrize("literal", ["1e400", "9" * 400, "2^1e308 * 1", "1e308 * 10", "0 / 0", "log(0)"])
def test_numbers_that_are_not_finite_never_reach_code(literal):
    with pytest.raises(SpecError) as info:
        graphdsl.compile(f"const c = {literal}\ninput x = 1\ny = c x\n", engine="numpy")
    assert info.value.span is not None


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            yield node, func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_the_package_never_evaluates_text_or_unpickles(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node, name in calls(tree):
        assert name not in ("eval", "exec", "__import__"), f"{path.name}:{node.lineno} calls {name}"
        if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "np":
            keywords = {k.arg: k.value for k in node.keywords}
            assert "allow_pickle" in keywords and keywords["allow_pickle"].value is False, \
                f"{path.name}:{node.lineno}: np.load without allow_pickle=False"
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"pickle", "marshal", "shelve", "dill"}, path.name


def test_pickled_weights_are_refused(tmp_path):
    from graphdsl.training import records
    path = tmp_path / "w.npz"
    np.savez(path, W=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="never pickled objects"):
        records.load_weights(path, {"W": (1,)})
