"""Prediction on new data: Model.predict and `graphdsl run --predict`, against the one-example forward pass."""
import numpy as np
import pandas as pd
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main

SPEC = """
input x[2]
target k
param W[3, 2] = [[1, -1], [0.5, 2], [-1, 0.25]]
param b[3] = [0.1, 0, -0.1]
z = W x + b
L = softmax_ce(z, k)
data x = [[0, 1], [1, 0]], k = [1, 2]
minimize L using sgd(lr=0.1), epochs=1
"""
NEW = np.array([[0.5, -1.0], [2.0, 3.0], [-1.0, 0.0]])


def test_predict_gives_the_scores_for_each_example():
    model = graphdsl.compile(SPEC, engine="numpy")
    got = model.predict({"x": NEW})
    # the scores by hand: W x + b with the spec's literal weights
    W, b = np.array([[1, -1], [0.5, 2], [-1, 0.25]]), np.array([0.1, 0, -0.1])
    np.testing.assert_allclose(got, NEW @ W.T + b, rtol=1e-14)


def test_cli_predict_prints_scores_and_classes(tmp_path):
    (tmp_path / "net.nn").write_text(SPEC)
    np.savetxt(tmp_path / "new.csv", NEW, delimiter=",")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "net.nn"), "--predict", str(tmp_path / "new.csv")])
    assert result.exit_code == 0, result.output
    csv = result.output[result.output.index("z[0]"):]
    frame = pd.read_csv(pd.io.common.StringIO(csv))
    assert list(frame.columns) == ["z[0]", "z[1]", "z[2]", "class"]
    model = graphdsl.compile(SPEC, engine="numpy")
    model.train()  # the CLI trained one epoch before predicting
    want = model.predict({"x": NEW})
    np.testing.assert_array_equal(frame[["z[0]", "z[1]", "z[2]"]].to_numpy(), want)
    np.testing.assert_array_equal(frame["class"].to_numpy(), want.argmax(axis=1))


def test_a_prediction_never_shares_memory_with_the_data_given():
    """Inline arrays are loaded without a copy; what predict returns must still be the caller's own."""
    model = graphdsl.compile("input x[2]\ny = x * 1\n")
    given = np.ones((3, 2))
    got = model.predict({"x": given}, node="x")
    np.testing.assert_array_equal(got, given)
    assert not np.shares_memory(got, given)
