"""--format markdown, latex and json for run, explain and summary; summary in Keras' layout; the
tables a notebook shows. Markdown must parse as tables (markdown-it: CommonMark with GFM tables),
LaTeX must compile (pdflatex, where a TeX is installed), JSON must be strict and hold every value
at full precision with its shape. Numbers are checked against hand derivations and PyTorch."""
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from markdown_it import MarkdownIt

import graphdsl
from graphdsl.cli import main
from graphdsl.tools.formats import latex_number, latex_text
from graphdsl.training.records import History

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "specs").glob("seed*.nn"))
S4 = ROOT / "specs" / "seed000_s4_backprop.nn"


def invoke(*args):
    """What the command writes on stdout (training's progress goes to stderr)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def strict(text):
    """Every line a JSON object; NaN and Infinity, which JSON has no numbers for, are refused."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def markdown_tables(text):
    """Each table's body rows, as lists of cell texts, parsed by a CommonMark parser."""
    tables, row, inside = [], None, False
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tbody_open":
            inside = True
        elif token.type == "tbody_close":
            inside = False
        elif token.type == "tr_open" and inside:
            row = []
        elif token.type == "inline" and row is not None and inside:
            row.append(token.content)
        elif token.type == "tr_close" and inside:
            tables[-1].append(row)
            row = None
    return tables


# -- run: every seed spec, in each format --------------------------------------------------------

@pytest.mark.parametrize("spec", SEEDS, ids=[s.stem for s in SEEDS])
def test_run_markdown_parses_as_the_tables_json_holds(spec):
    blocks = strict(invoke("run", spec, "--format", "json"))
    tables = [b for b in blocks if "title" in b]
    assert tables, "a seed spec prints at least one table"
    parsed = markdown_tables(invoke("run", spec, "--format", "markdown"))
    assert [len(t) for t in parsed] == [len(b["rows"]) for b in tables]
    for table, block in zip(parsed, tables):
        assert [row[0] for row in table] == [r["name"] for r in block["rows"]]
        assert [row[1] for row in table] == [("scalar" if not r["shape"] else str(r["shape"])) for r in block["rows"]]


def hand_s4():
    """The 2-2-1 sigmoid network of the README by hand (NumPy): its values and dL/d each param."""
    sig = lambda z: 1 / (1 + np.exp(-z))
    x, y = np.array([0.0, 1.0]), 1.0
    W_h, b_h, W_o, b_o = np.array([[2.5, 1], [-1.5, -3]]), np.array([1.5, 2]), np.array([1, 0.5]), -1.0
    h = sig(W_h @ x + b_h)
    y_hat = sig(W_o @ h + b_o)
    d_zo = y_hat - y                     # sigmoid and cross-entropy: dL/dz_o = y_hat - y
    d_zh = d_zo * W_o * h * (1 - h)
    return {"h": h, "y_hat": y_hat, "L": -np.log(y_hat), "dL/dW_h": np.outer(d_zh, x), "dL/db_h": d_zh,
            "dL/dW_o": d_zo * h, "dL/db_o": d_zo}


def test_run_json_holds_every_value_with_its_shape_at_full_precision():
    rows = {(b["title"], r["name"]): r for b in strict(invoke("run", S4, "--format", "json")) if "title" in b
            for r in b["rows"]}
    for name, want in hand_s4().items():
        title = "gradients of L" if name.startswith("d") else "values"
        row = rows[title, name]
        assert row["shape"] == list(np.shape(want))
        np.testing.assert_allclose(row["value"], want, rtol=1e-14, atol=1e-16)
    assert rows["after 1 epoch of training, at the trained weights", "loss"]["shape"] == []


def test_json_writes_non_finite_numbers_as_strings(tmp_path):
    spec = tmp_path / "inf.nn"
    spec.write_text("input x[3] = [0, 1, -1]\nL = log(x)\nshow L\n")
    (block,) = strict(invoke("run", spec, "--format", "json"))
    assert block["rows"][0]["value"] == ["-inf", 0.0, "nan"]


def test_text_stays_the_default():
    assert invoke("run", S4) == invoke("run", S4, "--format", "text")


# -- LaTeX: everything pasted into one document compiles -----------------------------------------

def latex_document():
    parts = []
    for spec in SEEDS:
        parts += [rf"\section*{{{latex_text(spec.name)}}}", invoke("run", spec, "--format", "latex")]
    parts += [invoke("explain", S4, "W_h", "--format", "latex"), invoke("explain", S4, "W_h[0, 1]", "--format", "latex"),
              invoke("summary", ROOT / "specs" / "seed000_s5_conv_params.nn", "--format", "latex")]
    return "\n".join([r"\documentclass{article}", r"\usepackage{amsmath}", r"\begin{document}", *parts,
                      r"\end{document}", ""])


def test_latex_of_the_seed_specs_compiles(tmp_path):
    document = latex_document()
    assert r"\begin{bmatrix}" in document and r"dL/dW\_h" in document
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base): the LaTeX was written, not compiled")
    (tmp_path / "sheet.tex").write_text(document, encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "sheet.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "sheet.pdf").stat().st_size > 1000


def test_latex_numbers_and_text():
    assert latex_number(1.5e-07) == r"1.5 \times 10^{-7}"
    assert latex_number(-math.inf) == r"-\infty" and latex_number(math.nan) == r"\mathrm{NaN}"
    assert latex_text("W_h & 50% {x}") == r"W\_h \& 50\% \{x\}"


# -- explain and summary in Markdown -------------------------------------------------------------

def test_explain_markdown_is_a_table_of_terms_with_formulas():
    (terms,) = markdown_tables(invoke("explain", S4, "W_h[0, 1]", "--format", "markdown"))
    assert [row[0] for row in terms] == ["dL/dy_hat", "dy_hat/dz_o", "dz_o/dh[0]", "dh[0]/dz_h[0]",
                                         "dz_h[0]/dW_h[0, 1]", "product"]
    assert terms[4][1] == "`x[1]`"   # z_h = W_h x + b_h: dz_h[0]/dW_h[0, 1] = x[1], by hand
    hand = hand_s4()
    assert float(terms[-1][2]) == pytest.approx(hand["dL/dW_h"][0, 1], rel=1e-5)
    (entries,) = markdown_tables(invoke("explain", S4, "b_h", "--format", "markdown"))
    assert [float(row[2]) for row in entries] == pytest.approx(hand["dL/db_h"], rel=1e-5)


def test_summary_markdown_parses_and_counts_as_torch_does():
    conv = torch.nn.Conv2d(10, 96, 10)
    (rows,) = markdown_tables(invoke("summary", ROOT / "specs" / "seed000_s5_conv_params.nn", "--format", "markdown"))
    assert {row[0]: row[3] for row in rows} == {"x": "", "k": f"{conv.weight.numel():,}", "b": f"{conv.bias.numel():,}",
                                                "z": ""}


# -- summary: Keras' layout, trainable and not, --set --------------------------------------------

def test_summary_text_is_keras_layout_with_thousands_separators():
    lines = invoke("summary", ROOT / "specs" / "seed000_s5_conv_params.nn").splitlines()
    rule = lines[1]
    assert lines[0] == "Spec: " + str(ROOT / "specs" / "seed000_s5_conv_params.nn")
    assert set(rule) == {"="} and lines[3] == rule and lines[-1] == rule
    assert lines[2].split() == ["name", "op", "shape", "params", "multiplications"]
    params = sum(p.numel() for p in torch.nn.Conv2d(10, 96, 10).parameters())
    assert f"Total params: {params:,}" in lines and f"Trainable params: {params:,}" in lines
    assert "Non-trainable params: 0" in lines
    assert f"Total multiplications (forward pass): {96 * 66 * 66 * 10 * 10 * 10:,}" in lines


FROZEN = """
input  x[3] = [1, 2, 3]
target y = 1
param  W1[4, 3] = ones()
param  b1[4] = zeros()
param  w2[4] = ones()
L = (w2 sigmoid(W1 x + b1) - y)^2
minimize L using sgd(lr=0.1), freeze=[b1]
"""


def test_frozen_params_are_non_trainable(tmp_path):
    spec = tmp_path / "frozen.nn"
    spec.write_text(FROZEN)
    text = invoke("summary", spec)
    assert "\nTotal params: 20\nTrainable params: 16\nNon-trainable params: 4\n" in text   # 12 + 4 + 4; b1 frozen
    assert "param, frozen" in next(line for line in text.splitlines() if line.startswith("b1 "))
    found = json.loads(invoke("summary", spec, "--format", "json"))
    assert (found["total_params"], found["trainable_params"], found["non_trainable_params"]) == (20, 16, 4)
    assert {r["name"]: r["trainable"] for r in found["rows"]} == {"x": None, "y": None, "W1": True, "b1": False,
                                                                  "w2": True, "L": None}
    model = graphdsl.load(spec, engine="numpy")
    assert str(model.summary()) == repr(model.summary()) == text.rstrip("\n")


def test_run_json_says_between_its_tables_what_the_text_says(tmp_path):
    spec = tmp_path / "frozen.nn"
    spec.write_text(FROZEN)
    blocks = strict(invoke("run", spec, "--format", "json"))
    assert [b.get("title", "").split(":")[0] for b in blocks] == [
        "after 1 epoch of training, at the trained weights", "step 1 of sgd(lr=0.1, momentum=0, weight_decay=0)", ""]
    assert blocks[-1] == {"note": "frozen, so left as they were: `b1`"}


def test_summary_takes_set_as_run_does():
    found = json.loads(invoke("summary", ROOT / "specs" / "mlp.nn", "--set", "hidden=128", "--format", "json"))
    # 64 inputs -> 128 sigmoid units -> 10 classes, weights and biases, by hand
    assert found["total_params"] == 64 * 128 + 128 + 128 * 10 + 10
    assert found["multiplications"] == 64 * 128 + 128 * 10


# -- what a notebook shows -----------------------------------------------------------------------

class Cells(HTMLParser):
    """The text of each <th> and <td>, row by row."""

    def __init__(self, html):
        super().__init__()
        self.rows, self.cell = [], None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_values_summary_and_history_show_as_tables_in_a_notebook():
    model = graphdsl.load(S4, engine="numpy")
    values = Cells(model.forward()._repr_html_()).rows
    assert values[0] == ["name", "shape", "value"]
    assert {r[0]: r[1] for r in values[1:]}["W_h"] == "[2, 2]"
    grads = {r[0]: r[2] for r in Cells(model.grad()._repr_html_()).rows[1:]}
    assert float(grads["b_o"]) == pytest.approx(hand_s4()["dL/db_o"], rel=1e-5)
    summary = Cells(model.summary()._repr_html_()).rows
    assert summary[0] == ["name", "op", "shape", "params", "multiplications"]
    assert {r[0]: r[3] for r in summary[1:]}["W_h"] == "4"
    history = History([1, 2, 3], {"loss": [0.5, 0.25, 0.125], "accuracy": [0.5, 0.75, 1.0]})
    assert Cells(history._repr_html_()).rows == [["epoch", "loss", "accuracy"], ["1", "0.5", "0.5"],
                                                 ["2", "0.25", "0.75"], ["3", "0.125", "1"]]
    assert repr(history) == "<History: 3 epochs; last: loss 0.125, accuracy 1>"
    long = Cells(History(list(range(1, 101)), {"loss": [1.0] * 100})._repr_html_()).rows
    assert len(long) == 1 + 10 + 1 + 10 and long[11] == ["...", "..."] and long[-1][0] == "100"
