"""`graphdsl draw`: the SVG of every shipped spec, parsed, has a box per named node with its
labels and an edge for each value a node reads; seed 000's network is checked against its
wiring and its gradients by hand; one picture is opened in a real headless browser; without
Graphviz's `dot`, DOT text still works and SVG is a clear error."""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
S4 = ROOT / "specs" / "seed000_s4_backprop.nn"
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot is not installed (apt-get install graphviz)")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def parsed(svg: bytes) -> tuple:
    """{node title: [its text lines]} and {(from, to): [the edge's label lines]} of Graphviz's SVG."""
    root = ET.fromstring(svg)
    nodes, edges = {}, {}
    for group in root.iter(f"{SVG}g"):
        title = group.find(f"{SVG}title")
        texts = [t.text.strip() for t in group.iter(f"{SVG}text") if t.text and t.text.strip()]
        if group.get("class") == "node":
            nodes[title.text] = texts
        elif group.get("class") == "edge":
            edges[tuple(title.text.split("->"))] = texts
    return nodes, edges


@needs_dot
@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_every_spec_draws_a_box_per_named_node_and_an_edge_per_read(spec):
    result = invoke("draw", spec, "--format", "svg")
    assert result.exit_code == 0, result.output
    nodes, edges = parsed(result.stdout_bytes)
    model = graphdsl.load(spec, engine="numpy")
    g = model.spec.graph
    boxes = {}  # one box per node, drawn under its first name
    for name, nid in g.names.items():
        boxes.setdefault(nid, name)
    assert set(nodes) == set(boxes.values())
    for nid, name in boxes.items():
        lines = nodes[name]
        assert lines[0].startswith(name)                      # the name, in bold, first
        shape = list(g.nodes[nid].shape)
        assert lines[1].endswith("scalar" if not shape else str(shape))
        if g.nodes[nid].is_leaf:   # a param, an input, a target or a constant reads nothing
            assert not [parent for (parent, child) in edges if child == name], name
    for (parent, child), label in edges.items():
        assert parent in nodes and child in nodes and label, (parent, child)


def hand_s4():
    sig = lambda z: 1 / (1 + np.exp(-z))
    x, W_h, b_h, W_o = np.array([0.0, 1.0]), np.array([[2.5, 1], [-1.5, -3]]), np.array([1.5, 2]), np.array([1, 0.5])
    h = sig(W_h @ x + b_h)
    y_hat = sig(W_o @ h - 1.0)
    d_zh = (y_hat - 1.0) * W_o * h * (1 - h)
    return {"h": h, "dL/dW_h": np.outer(d_zh, x), "dL/dW_o": (y_hat - 1.0) * h}


@needs_dot
def test_seed000_backprop_is_drawn_with_its_wiring_values_and_gradients():
    result = invoke("draw", S4, "--format", "svg")
    nodes, edges = parsed(result.stdout_bytes)
    # z_h = W_h x + b_h, h = sigmoid(z_h), z_o = W_o h + b_o, y_hat = sigmoid(z_o), L = bce(y_hat, y)
    assert {e: " ".join(label) for e, label in edges.items()} == {
        ("x", "z_h"): "matmul", ("W_h", "z_h"): "matmul", ("b_h", "z_h"): "add", ("z_h", "h"): "sigmoid",
        ("h", "z_o"): "matmul", ("W_o", "z_o"): "matmul", ("b_o", "z_o"): "add", ("z_o", "y_hat"): "sigmoid",
        ("y_hat", "L"): "bce", ("y", "L"): "bce"}
    hand = hand_s4()
    num = lambda v: f"{v + 0.0:.4g}"
    assert nodes["W_h"][:3] == ["W_h", "param [2, 2]", "= [[2.5, 1],"]
    grad_rows = [f"[{', '.join(num(v) for v in row)}]" for row in hand["dL/dW_h"]]
    assert nodes["W_h"][4:] == [f"dL/dW_h = [{grad_rows[0]},", f"{grad_rows[1]}]"]
    assert nodes["h"][2] == f"= [{num(hand['h'][0])}, {num(hand['h'][1])}]"
    assert nodes["W_o"][3] == f"dL/dW_o = [{num(hand['dL/dW_o'][0])}, {num(hand['dL/dW_o'][1])}]"
    assert nodes["L"][1] == "bce scalar"
    svg = result.stdout_bytes.decode()
    # params, inputs and the target are filled apart from the computed values
    assert svg.count('fill="#fde8c8"') == 4 and svg.count('fill="#dbe9fb"') == 1 and svg.count('fill="#dcf2dc"') == 1


@needs_dot
def test_a_large_value_is_drawn_as_its_range():
    nodes, _ = parsed(invoke("draw", ROOT / "specs" / "seed000_s5_conv_params.nn", "--format", "svg").stdout_bytes)
    assert nodes["k"][2:] == ["= 96,000 entries", "from 0 to 0, mean 0"]


@needs_dot
def test_png_and_svg_files_from_the_extension(tmp_path):
    assert invoke("draw", S4, "-o", tmp_path / "g.png").exit_code == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert invoke("draw", S4, "-o", tmp_path / "g.svg").exit_code == 0
    assert parsed((tmp_path / "g.svg").read_bytes())[0]


def test_dot_text_needs_no_dot_program_and_svg_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # no dot on it
    text = invoke("draw", S4)
    assert text.exit_code == 0 and text.stdout.startswith("digraph ") and "W_h -> z_h [label=matmul]" in text.stdout
    svg = invoke("draw", S4, "--format", "svg")
    assert svg.exit_code == 2 and "Traceback" not in svg.output
    assert "drawing SVG needs Graphviz's `dot` program, which is not installed: apt-get install graphviz" in svg.output
    assert graphdsl.load(S4, engine="numpy")._repr_svg_() is None   # a notebook shows the text instead


def test_without_the_graphviz_package_draw_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)   # import graphviz now fails
    result = invoke("draw", S4)
    assert result.exit_code == 2
    assert 'needs the graphviz package, which is not installed: pip install "graphdsl[draw]"' in result.output


def test_draw_refuses_to_overwrite_the_spec(tmp_path):
    spec = tmp_path / "net.nn"
    spec.write_text(S4.read_text())
    result = invoke("draw", spec, "-o", spec)
    assert result.exit_code == 2 and "is the spec itself" in result.output
    assert spec.read_text() == S4.read_text()


@needs_dot
def test_the_svg_renders_in_a_headless_browser(tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser is installed (apt-get install chromium)")
    from PIL import Image

    picture = tmp_path / "graph.svg"
    assert invoke("draw", S4, "-o", picture).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1800,600", f"--screenshot={shot}", picture.as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists(), "the browser wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    near = lambda rgb: int((np.abs(pixels - rgb).sum(axis=1) < 12).sum())
    # the boxes as drawn: the params' orange, the input's blue, the target's green, and dark text
    assert near((0xfd, 0xe8, 0xc8)) > 5000 and near((0xdb, 0xe9, 0xfb)) > 1000 and near((0xdc, 0xf2, 0xdc)) > 1000
    assert int((pixels.sum(axis=1) < 150).sum()) > 2000


def test_draw_refuses_an_output_that_is_not_a_regular_file_or_is_the_data(tmp_path):
    """draw's -o is checked as run's outputs are: a FIFO would block, the spec's data file would be lost."""
    (tmp_path / "d.csv").write_text("x,y\n1,2\n")
    spec = tmp_path / "net.nn"
    spec.write_text('input x\ntarget y\nparam w = 1\nL = (w x - y)^2\ndata "d.csv"\nminimize L using sgd(lr=0.1)\n')
    os.mkfifo(tmp_path / "fifo")
    for output, words in [(tmp_path / "fifo", "not a regular file"), (tmp_path / "d.csv", "the data file")]:
        result = invoke("draw", str(spec), "-o", str(output))
        assert result.exit_code == 2 and words in result.output, result.output
    assert (tmp_path / "d.csv").read_text() == "x,y\n1,2\n"
