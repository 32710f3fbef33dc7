"""The graphdsl command: output people can read, and exit codes 0, 1 and 2."""
import io
import json
import re

import numpy as np
import pytest
import torch
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
    # 4 + 2 + 2 + 1, none frozen, as Keras and torchinfo print them
    for line in ("Total params: 9", "Trainable params: 9", "Non-trainable params: 0"):
        assert f"\n{line}\n" in result.output


def test_jacobian_is_printed(tmp_path):
    result = invoke("run", "specs/jacobian.nn")
    assert result.exit_code == 0, result.output
    assert "jacobian of f with respect to x" in result.output


def test_show_ir_and_show_code():
    assert "matmul" in invoke("show-ir", SPEC).output
    code = invoke("show-code", SPEC).output
    assert '@njit(cache=True, error_model="numpy"' in code and "# h" in code


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
    shown = re.search(r"prints every value a student\ncomputes by hand:.*?\n\n```\n(.*?)```", readme, re.S).group(1)
    assert invoke("run", "specs/seed000_s4_backprop.nn").stdout == shown


# -- summary: parameters and multiplications; explain: docs/language.md's examples --------------

COUNTED = """
input  x[3] = 0
input  X[4, 3] = 0
input  sig[6] = 0
input  img[2, 6, 5] = 0
param  W[2, 3] = zeros()
param  b[2] = zeros()
param  k1[3] = zeros()
param  K[4, 2, 3, 2] = zeros()
param  kb[4] = zeros()
z   = W x + b                  # matrix times vector
P   = X W'                     # matrix times matrix
v   = x' W' + b / 2            # vector times matrix; the division is not counted
d   = dot(x, x) + x x          # two dot products
o   = outer(b, x)
e   = 3 * x * x + sigmoid(x)   # elementwise and by a scalar; sigmoid not counted
c1  = conv1d(sig, k1, stride=2)
c2  = conv2d(img, K, kb, stride=2, padding=1)
a   = z                        # an alias counts nothing again
"""


def summary_rows(text, tmp_path):
    spec = tmp_path / "counted.nn"
    spec.write_text(text)
    result = invoke("summary", str(spec), "--format", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    return {row["name"]: (row["params"], row["multiplications"]) for row in found["rows"]}, found


def test_summary_counts_multiplications(tmp_path):
    rows, output = summary_rows(COUNTED, tmp_path)
    conv2d_out = ((6 + 2 - 3) // 2 + 1) * ((5 + 2 - 2) // 2 + 1)          # 3 x 3 positions per kernel
    expected = {"z": 2 * 3, "P": 4 * 2 * 3, "v": 3 * 2, "d": 3 + 3, "o": 2 * 3, "e": 3 + 3,
                "c1": ((6 - 3) // 2 + 1) * 3, "c2": 4 * conv2d_out * 2 * 3 * 2, "a": 0}
    for name, mults in expected.items():
        assert rows[name][1] == mults, name
    params = {"W": 6, "b": 2, "k1": 3, "K": 4 * 2 * 3 * 2, "kb": 4}
    for name, count in params.items():
        assert rows[name] == (count, 0), name
    assert output["total_params"] == output["trainable_params"] == sum(params.values())
    assert output["multiplications"] == sum(expected.values())


def test_summary_counts_a_conv_layer_without_bias(tmp_path):
    """What the spec declares: kernels alone, and no addition counted as a multiplication."""
    rows, output = summary_rows("input x[3, 8, 8] = 0\nparam k[5, 3, 3, 3] = zeros()\nz = conv2d(x, k)\n", tmp_path)
    conv = torch.nn.Conv2d(3, 5, 3, bias=False)
    assert rows["k"] == (sum(p.numel() for p in conv.parameters()), 0)
    assert rows["z"] == (0, 5 * 6 * 6 * 3 * 3 * 3)
    assert output["total_params"] == 5 * 3 * 3 * 3


def test_summary_of_the_readme_network_counts_its_products():
    result = invoke("summary", SPEC)
    # z_h = W_h x: 2 x 2; z_o = W_o h: 2; L = bce: t log p and (1 - t) log(1 - p), one each
    assert "\nTotal multiplications (forward pass): 8\n" in result.output


def doc_example(heading):
    """The ```nn block after a docs/language.md heading, and the ```text block that shows its output."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text()
    section = doc[doc.index(f"## {heading}"):]
    spec, shown = re.search(r"```nn\n(.*?)```.*?```text\n(.*?)```", section, re.S).groups()
    return spec, shown


@pytest.mark.parametrize("heading, command", [("Counting parameters and multiplications", ["summary"]),
                                              ("Explaining a gradient path by path", ["explain", "x"])])
def test_language_doc_output_is_what_graphdsl_prints(heading, command, tmp_path, monkeypatch):
    spec, shown = doc_example(heading)
    (tmp_path / "net.nn").write_text(spec)
    monkeypatch.chdir(tmp_path)
    result = invoke(command[0], "net.nn", *command[1:])
    assert result.exit_code == 0, result.output
    assert result.output == shown


def test_after_training_the_report_is_at_the_trained_weights_and_names_the_saved_file(tmp_path):
    """The loss printed after training is the loss at the weights training ended with (measured
    again here by forward()), and a run given --save says where its params are, not to use --save."""
    import graphdsl

    spec = tmp_path / "net.nn"
    spec.write_text("input x[2]\ntarget y\nparam W[60, 2] = xavier(seed=1)\nparam v[60] = zeros()\n"
                    "p = sigmoid(v tanh(W x))\nL = bce(p, y)\n"
                    "data x = [[1, 2], [3, -1], [0, 1], [-2, 1]], y = [1, 0, 1, 0]\n"
                    "minimize L using sgd(lr=0.5), epochs=20\n")
    result = invoke("run", str(spec), "--save", str(tmp_path / "w.npz"), "--precision", "12")
    assert result.exit_code == 0, result.output
    assert f"180 trained params ({tmp_path / 'w.npz'} keeps them)" in result.stdout
    assert "--save FILE.npz" not in result.stdout
    model = graphdsl.load(spec, engine="numpy")
    model.params.update(dict(np.load(tmp_path / "w.npz")))
    xs, ys = [[1, 2], [3, -1], [0, 1], [-2, 1]], [1, 0, 1, 0]
    want = np.mean([model.forward(x=x, y=y)["L"] for x, y in zip(xs, ys)])
    printed = float(re.search(r"^  loss scalar\s+(\S+)", result.stdout, re.M).group(1))
    assert printed == pytest.approx(want, rel=1e-10)


CLASSIFIER = """\
input x[2]
target y
param W[2] = [0.5, -0.5]
param c = 0
z = W x + c
L = bce_logits(z, y)
data "d.csv"
minimize L using sgd(lr=0.1), epochs=2, validation="v.csv"
"""


@pytest.fixture
def classifier(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("d.csv", "v.csv"):
        (tmp_path / name).write_text("x[0],x[1],y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    (tmp_path / "in.csv").write_text("x[0],x[1]\n0,1\n1,1\n")
    (tmp_path / "net.nn").write_text(CLASSIFIER)
    np.savez(tmp_path / "w.npz", W=np.array([0.5, -0.5]), c=np.array(0.0))
    np.savez(tmp_path / "nan.npz", W=np.array([np.nan, -0.5]), c=np.array(0.0))
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["run", "net.nn", "--precision", "-1"], "not in the range 1<=x<=17"),
    (["explain", "net.nn", "W", "--precision", "99999999999999999999"], "not in the range 1<=x<=17"),
    (["evaluate", "net.nn", "--load", "w.npz", "--precision", "0"], "not in the range 1<=x<=17"),
    (["check", "net.nn", "--eps", "0"], "must be a finite number above 0"),
    (["check", "net.nn", "--eps", "inf"], "must be a finite number above 0"),
    (["check", "net.nn", "--rtol", "nan"], "must be a finite number at least 0"),
    (["check", "net.nn", "--atol", "-1"], "must be a finite number at least 0"),
    (["sweep", "net.nn", "--grid", "lr=0.1", "--out", "s.csv", "--address", "garbage"], "cannot reach the Dask"),
    (["predict", "net.nn", "in.csv", "--load", "w.npz", "--node", "L"], "`L` needs the target `y`"),
    (["predict", "net.nn", "in.csv", "--load", "w.npz", "--node", "y"], "`y` needs the target `y`"),
    (["predict", "net.nn", "in.csv", "--load", "nan.npz"], "`W` holds nan (entry [0]): a model's weights must be finite"),
    (["evaluate", "net.nn", "--load", "nan.npz"], "`W` holds nan (entry [0])"),
    (["draw", "net.nn", "-o", "v.csv"], "is the validation file"),
    (["sweep", "net.nn", "--grid", "lr=0.1", "--workers", "1", "--out", "v.csv"], "is the validation file"),
])
def test_bad_flags_and_files_are_usage_errors_that_touch_nothing(classifier, args, message):
    before = {p.name: p.read_bytes() for p in classifier.iterdir()}
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert {name: (classifier / name).read_bytes() for name in before} == before  # every input as it was


def test_predict_takes_the_training_file_itself_or_the_inputs_alone(classifier):
    """The targets of a file laid out as training reads it are read and left out."""
    alone = CliRunner().invoke(main, ["predict", "net.nn", "in.csv", "--load", "w.npz"])
    full = CliRunner().invoke(main, ["predict", "net.nn", "d.csv", "--load", "w.npz"])
    assert alone.exit_code == 0 and full.exit_code == 0, (alone.output, full.output)
    rows = np.loadtxt(io.StringIO(full.output), delimiter=",", skiprows=1)
    z = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]) @ [0.5, -0.5]
    np.testing.assert_allclose(rows[:, 0], z, rtol=1e-15)
    assert [full.output.splitlines()[i] for i in (2, 4)] == alone.output.splitlines()[1:3]  # d.csv rows 2, 4
    bad = CliRunner().invoke(main, ["predict", "net.nn", "net.nn", "--load", "w.npz"])
    assert bad.exit_code == 2 and "read as the inputs alone" in bad.output and "read as training reads it" in bad.output


def test_a_spec_file_not_in_utf8_is_located_at_its_byte(tmp_path):
    """A Latin-1 superscript two (0xb2) in line 2, column 7: the place, the byte and what to do."""
    path = tmp_path / "latin1.nn"
    path.write_bytes(b"input x = 2\ny = x \xb2 + 1\nshow y\n")
    result = invoke("check", str(path))
    assert result.exit_code == 2
    assert "latin1.nn:2:7: error: the file is not UTF-8 text: byte 18 (0xb2)" in result.output
    assert "save the file as UTF-8" in result.output
