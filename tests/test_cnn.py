"""Convolutional networks trained end to end: a step of conv2d, max and average pooling and flatten,
in minibatches, follows PyTorch's step for step; the compiled loop allocates nothing from step
to step; and specs/cnn_digits.nn learns the digits."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdsl

ROOT = Path(__file__).resolve().parents[1]

# Strided and padded convolution, overlapping max pooling, a convolution without a bias, average
# pooling and a dense layer: 2 x 7 x 7 -> 3 x 4 x 4 -> 3 x 3 x 3 -> 4 x 2 x 2 -> 4 x 1 x 1 -> 3
SPEC = """
input x[2, 7, 7]
target k
param K1[3, 2, 3, 3] = he(seed=1)
param c1[3] = uniform(seed=2)
param K2[4, 3, 2, 2] = he(seed=3)
param W[3, 4] = xavier(seed=4)
param b[3] = zeros()
h1 = maxpool2d(relu(conv2d(x, K1, c1, stride=2, padding=1)), size=2, stride=1)
h2 = avgpool2d(conv2d(h1, K2), size=2)
L = softmax_ce(W flatten(h2) + b, k)
minimize L using sgd(lr=0.1), batch={batch}, shuffle=0
"""


def examples(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 2, 7, 7)), "k": rng.integers(0, 3, n).astype(np.float64)}


def torch_trained(params: dict, data: dict, batch: int, epochs: int, lr: float) -> dict:
    """The same network trained by torch.optim.SGD on the same batches, in order: each batch's mean
    loss (a short last batch's mean over its own examples)."""
    p = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
    opt = torch.optim.SGD(p.values(), lr=lr)
    x, k = torch.tensor(data["x"]), torch.tensor(data["k"]).long()
    for _ in range(epochs):
        for s in range(0, len(x), batch):
            a = F.max_pool2d(torch.relu(F.conv2d(x[s:s + batch], p["K1"], p["c1"], stride=2, padding=1)), 2, 1)
            a = F.avg_pool2d(F.conv2d(a, p["K2"]), 2)
            loss = F.cross_entropy(F.linear(a.flatten(1), p["W"], p["b"]), k[s:s + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {n: t.detach().numpy() for n, t in p.items()}


@pytest.mark.usefixtures("training_engine")
def test_minibatch_training_follows_pytorch_step_for_step():
    """10 examples in batches of 4 (the last of 2) for 3 epochs: 9 steps."""
    model = graphdsl.compile(SPEC.format(batch=4))
    first = {n: v.copy() for n, v in model.params.items()}
    data = examples(10)
    model.train(data=data, epochs=3)
    want = torch_trained(first, data, 4, 3, 0.1)
    for name, value in want.items():
        assert np.abs(value - first[name]).max() > 1e-3, f"{name} hardly moved: the test would prove little"
        np.testing.assert_allclose(model.params[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


ALLOCATIONS = """
import numpy as np, graphdsl
from numba.core.runtime import rtsys
from tests.test_cnn import SPEC, examples

model = graphdsl.compile(SPEC.format(batch={batch}), engine="numba")
model.train(data=examples(24), epochs=1)   # compiles; the loop's buffers are made in every call


def allocations(n):
    before = rtsys.get_allocation_stats().alloc
    model.train(data=examples(n), epochs=1)
    return rtsys.get_allocation_stats().alloc - before


print(allocations(24), allocations(240))
"""


@pytest.mark.parametrize("batch", [1, 4])
def test_the_training_loop_allocates_nothing_from_step_to_step(batch):
    """Numba's allocation count (NUMBA_NRT_STATS) for a run of 24 examples equals that of 240: a
    run makes its buffers once, whatever its number of steps (6 and 60 of 4 examples, or 24 and 240
    of one)."""
    env = {**os.environ, "NUMBA_NRT_STATS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(ALLOCATIONS.format(batch=batch))], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    few, many = map(int, done.stdout.split())
    assert few == many, f"{many - few} allocations more for {240 // batch - 24 // batch} more steps"


def test_cnn_digits_learns_the_digits():
    """A shorter run than the spec's 20 epochs (98.3% there; docs/performance.md): after 8 epochs the
    validation accuracy is already well above chance and close to the spec's."""
    model = graphdsl.load(ROOT / "specs" / "cnn_digits.nn")
    history = model.train(epochs=8)
    assert history.history["val_accuracy"][-1] >= 0.93
