"""The graphdsl command: output people can read, and exit codes 0, 1 and 2."""
import numpy as np
import pytest
from click.testing import CliRunner

from graphdsl.cli import main

SPEC = "specs/backprop_2_2_1.nn"


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def hand_backprop():
    """The textbook closed forms for a sigmoid network with BCE: dL/dz_o = y_hat - y."""
    sig = lambda z: 1 / (1 + np.exp(-z))
    x, y = np.array([0.0, 1.0]), 1.0
    W_h, b_h = np.array([[2.5, 1], [-1.5, -3]]), np.array([1.5, 2])
    W_o, b_o = np.array([1, 0.5]), -1.0
    h = sig(W_h @ x + b_h)
    y_hat = sig(W_o @ h + b_o)
    d_zo = y_hat - y
    d_zh = d_zo * W_o * h * (1 - h)
    return {"L": -np.log(y_hat), "dL/dW_o": d_zo * h, "dL/db_o": d_zo, "dL/db_h": d_zh,
            "dL/dW_h": np.outer(d_zh, x)}


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_run_prints_values_and_gradients(engine):
    result = invoke("run", SPEC, "--engine", engine, "--precision", "10")
    assert result.exit_code == 0, result.output
    expected = hand_backprop()
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert f"{expected['L']:.10g}" in lines["L"]
    assert f"{expected['dL/db_o']:.10g}" in lines["dL/db_o"]
    for i in range(2):
        assert f"{expected['dL/db_h'][i]:.10g}" in lines["dL/db_h"]


def test_check_passes_on_a_smooth_spec():
    result = invoke("check", SPEC)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_check_fails_with_exit_1_at_a_kink(tmp_path):
    """relu'(0) is 0 by convention; the central difference there is 0.5, so the check fails."""
    spec = tmp_path / "kink.nn"
    spec.write_text("input x = 0\nL = relu(x)\ngrad L wrt x\n")
    result = invoke("check", str(spec))
    assert result.exit_code == 1
    assert "mismatch dL/dx" in result.output


def test_spec_error_exits_2_with_location(tmp_path):
    spec = tmp_path / "bad.nn"
    spec.write_text("input x[2]\nz = sigmod(x)\n")
    result = invoke("run", str(spec))
    assert result.exit_code == 2
    assert f"{spec}:2:5: error: unknown function `sigmod`" in result.output


def test_missing_file_is_a_usage_error():
    assert invoke("run", "no/such/spec.nn").exit_code == 2


def test_summary_counts_parameters():
    result = invoke("summary", SPEC)
    assert result.exit_code == 0
    assert "total parameters: 9 in 4 params" in result.output  # 4 + 2 + 2 + 1


def test_jacobian_is_printed(tmp_path):
    result = invoke("run", "specs/jacobian.nn")
    assert result.exit_code == 0, result.output
    assert "jacobian of f with respect to x" in result.output


def test_show_ir_and_show_code():
    assert "matmul" in invoke("show-ir", SPEC).output
    code = invoke("show-code", SPEC).output
    assert '@njit(cache=True, error_model="numpy")' in code and "# h" in code


def test_a_bug_is_one_line_and_exit_3_not_a_traceback(monkeypatch):
    import graphdsl.model

    def broken(self, **inputs):
        raise KeyError("oops")

    monkeypatch.setattr(graphdsl.model.Model, "forward", broken)
    monkeypatch.delenv("GRAPHDSL_DEBUG", raising=False)
    result = invoke("run", "specs/jacobian.nn")
    assert result.exit_code == 3
    assert "internal error (KeyError" in result.output and "Traceback" not in result.output


def test_readme_walkthrough_output_is_what_graphdsl_prints():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = re.search(r"prints every value a student\ncomputes by hand:\n\n```\n(.*?)```", readme, re.S).group(1)
    assert invoke("run", "specs/seed000_s4_backprop.nn").output == shown
