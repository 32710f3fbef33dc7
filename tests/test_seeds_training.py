"""Seed 003, exercise 2, iterations 1 to 3: every intermediate of every iteration, from the trace,
against the same three gradient-descent steps taken in PyTorch (float64)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import graphdsl

SPEC = Path(__file__).resolve().parent.parent / "specs" / "seed003_ex2_training.nn"


def torch_iterations(lr: float, steps: int) -> list:
    """Each iteration's intermediates, the weights it starts from, and its gradients."""
    x = torch.tensor([[0.75, 0.2, -0.75, 0.2], [0.8, 0.05, 0.8, -0.05]], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    W = torch.tensor([[0.6, 0.7, 0.0], [0.01, 0.43, 0.88]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.02, 0.03, 0.09], dtype=torch.float64, requires_grad=True)
    rows = []
    for _ in range(steps):
        s1 = W.T @ x
        z1 = torch.relu(s1)
        s_out = w @ z1
        s1.retain_grad()
        s_out.retain_grad()
        y_out = torch.tanh(s_out)
        L_each = 0.5 * (y_out - y) ** 2
        L = L_each.sum()
        W.grad = w.grad = None
        L.backward()
        rows.append({"s1": s1, "z1": z1, "s_out": s_out, "y_out": y_out, "L_each": L_each, "L": L,
                     "W": W.detach().clone(), "w": w.detach().clone(), "dL/dW": W.grad.clone(),
                     "dL/dw": w.grad.clone(), "dL/ds1": s1.grad.clone(),
                     "dL/ds_out": s_out.grad.clone()})
        with torch.no_grad():
            W -= lr * W.grad
            w -= lr * w.grad
    rows.append({"W": W.detach().clone(), "w": w.detach().clone()})
    return rows


def columns(frame, name: str, shape: tuple) -> np.ndarray:
    names = [name + (f"[{','.join(map(str, i))}]" if shape else "") for i in np.ndindex(*shape)]
    return frame[names].to_numpy().reshape((len(frame),) + shape)


@pytest.mark.parametrize("lr", [0.1, 0.05])
def test_three_iterations_match_torch(tmp_path, lr):
    model = graphdsl.load(SPEC, settings={"lr": lr})
    trace = tmp_path / "trace.csv"
    model.train(trace=str(trace))
    frame = pd.read_csv(trace)
    want = torch_iterations(lr, 3)
    assert list(frame["step"]) == [1, 2, 3]
    for key in ("s1", "z1", "s_out", "y_out", "L_each", "L", "W", "w", "dL/dW", "dL/dw", "dL/ds1", "dL/ds_out"):
        expected = np.stack([row[key].detach().numpy() for row in want[:3]])
        got = columns(frame, key, expected.shape[1:])
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15, err_msg=key)
    np.testing.assert_allclose(model.params["W"], want[3]["W"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(model.params["w"], want[3]["w"].numpy(), rtol=1e-12)
