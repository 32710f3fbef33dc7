"""The benchmark workloads: data, initial weights, batch schedule, graphdsl spec, and a NumPy
reference loss, shared by every peer so that all of them do exactly the same work.

A network is a list of layers (W[out, in], b[out]) as graphdsl stores them; hidden layers apply
`act`, the last layer gives logits. `out` is "bce" (one logit through sigmoid, binary
cross-entropy; W1) or "softmax_ce" (class indices; W2-W4).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Workload:
    key: str
    title: str
    sizes: list            # layer widths, input first
    act: str               # hidden activation: sigmoid, tanh, relu
    out: str               # "bce" or "softmax_ce"
    lr: float
    epochs: int
    batch: int | None      # None: the whole data set each step
    shuffle: bool
    unit: str              # throughput unit
    per_run: float         # units of work in one run (steps, epochs or samples)
    X: np.ndarray = field(repr=False, default=None)
    Y: np.ndarray = field(repr=False, default=None)   # float targets (bce) or int class indices
    data_source: str = ""  # graphdsl `data` statement in the spec (the peer passes arrays to train())
    seed: int = 0          # graphdsl's shuffle seed (the spec's seed, 0)

    # -- what every peer shares ----------------------------------------------

    def init(self) -> list:
        """Initial weights: Glorot uniform W[out, in] and zero biases, from a fixed seed."""
        rng = np.random.default_rng(1234)
        layers = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            a = np.sqrt(6.0 / (fan_in + fan_out))
            layers.append((rng.uniform(-a, a, (fan_out, fan_in)), np.zeros(fan_out)))
        return layers

    def schedule(self) -> tuple:
        """(ids, weights), each [steps, B]: the examples of every step and their loss weights,
        exactly graphdsl's: epoch e's order is default_rng([seed, e]).permutation(n) when shuffled
        (the data's order otherwise), and a short last batch is padded with its first example at
        weight 0 (the others 1/count)."""
        n = len(self.X)
        size = n if self.batch is None else min(self.batch, n)
        per_epoch = -(-n // size)
        ids = np.empty((self.epochs * per_epoch, size), np.int64)
        weights = np.empty((self.epochs * per_epoch, size))
        for e in range(self.epochs):
            order = (np.random.default_rng([self.seed, e]).permutation(n) if self.shuffle and size < n
                     else np.arange(n))
            for s in range(per_epoch):
                chunk = order[s * size:(s + 1) * size]
                c = len(chunk)
                row = e * per_epoch + s
                ids[row, :c], ids[row, c:] = chunk, chunk[0]
                weights[row, :c], weights[row, c:] = 1.0 / c, 0.0
        return ids, weights

    def batches(self) -> list:
        """The same schedule as a list of index arrays, short last batches unpadded."""
        ids, weights = self.schedule()
        return [row[w > 0] for row, w in zip(ids, weights)]

    def loss(self, layers) -> float:
        """Mean loss over the whole data set at these weights, in float64 NumPy."""
        a = self.X
        for W, b in layers[:-1]:
            a = ACTS[self.act](a @ np.asarray(W, np.float64).T + b)
        W, b = layers[-1]
        z = a @ np.asarray(W, np.float64).T + np.asarray(b, np.float64)
        if self.out == "bce":
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return float(np.mean(-(self.Y * np.log(p) + (1 - self.Y) * np.log(1 - p))))
        m = z.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
        return float(np.mean(lse - z[np.arange(len(z)), self.Y]))

    # -- graphdsl ---------------------------------------------------------------

    def spec(self) -> str:
        """The graphdsl spec of this workload (initial values are overwritten by `graphdsl_params`)."""
        lines = [f"input x[{self.sizes[0]}]", "target y" if self.out == "bce" else "target k"]
        a = "x"
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-2], self.sizes[1:-1])):
            lines += [f"param W{i}[{fan_out}, {fan_in}] = zeros()", f"param b{i}[{fan_out}] = zeros()",
                      f"h{i} = {self.act}(W{i} {a} + b{i})"]
            a = f"h{i}"
        last = len(self.sizes) - 2
        if self.out == "bce":
            lines += [f"param W{last}[{self.sizes[-2]}] = zeros()", f"param b{last} = 0",
                      f"L = bce(sigmoid(W{last} {a} + b{last}), y)"]
        else:
            lines += [f"param W{last}[{self.sizes[-1]}, {self.sizes[-2]}] = zeros()",
                      f"param b{last}[{self.sizes[-1]}] = zeros()", f"L = softmax_ce(W{last} {a} + b{last}, k)"]
        if self.data_source:
            lines.append(self.data_source)
        batch = "all" if self.batch is None else self.batch
        lines.append(f"minimize L using sgd(lr={self.lr}), epochs={self.epochs}, batch={batch}, "
                     f"shuffle={int(self.shuffle)}")
        return "\n".join(lines) + "\n"

    def graphdsl_params(self, layers) -> dict:
        out = {}
        for i, (W, b) in enumerate(layers):
            if self.out == "bce" and i == len(layers) - 1:
                W, b = W[0], b[0]
            out[f"W{i}"], out[f"b{i}"] = np.array(W, np.float64), np.array(b, np.float64)
        return out

    def graphdsl_layers(self, params: dict) -> list:
        layers = [(np.atleast_2d(params[f"W{i}"]), np.atleast_1d(params[f"b{i}"]))
                  for i in range(len(self.sizes) - 1)]
        return layers


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTS = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


def make(key: str, quick: bool = False) -> Workload:
    if key == "W1":
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
        Y = np.array([0, 1, 1, 0], np.float64)
        epochs = 2500 if quick else 25000
        return Workload("W1", f"W1 tiny: XOR 2-2-1 sigmoid, BCE, SGD batch 1, {4 * epochs:,} steps",
                        [2, 2, 1], "sigmoid", "bce", 0.1, epochs, 1, False, "steps/s", 4 * epochs, X, Y,
                        "data x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [0, 1, 1, 0]")
    if key == "W2":
        from sklearn import datasets
        bunch = datasets.load_iris()
        X = (bunch.data - bunch.data.mean(axis=0)) / bunch.data.std(axis=0)
        epochs = 500 if quick else 2000
        return Workload("W2", f"W2 Iris: 4-16-3 tanh, softmax CE, full-batch GD, {epochs} epochs",
                        [4, 16, 3], "tanh", "softmax_ce", 0.1, epochs, None, False, "epochs/s", epochs,
                        np.ascontiguousarray(X), bunch.target.astype(np.int64), "data iris")
    if key == "W3":
        from sklearn import datasets
        bunch = datasets.load_digits()
        epochs = 5 if quick else 20
        return Workload("W3", f"W3 digits: 64-128-64-10 ReLU, softmax CE, SGD batch 32, {epochs} epochs",
                        [64, 128, 64, 10], "relu", "softmax_ce", 0.05, epochs, 32, True, "samples/s",
                        epochs * 1797, np.ascontiguousarray(bunch.data / 16.0), bunch.target.astype(np.int64),
                        "data digits")
    if key == "W4":
        rng = np.random.default_rng(4)
        n = 15000 if quick else 60000
        X = rng.random((n, 784))
        teacher = rng.standard_normal((784, 10))
        Y = np.argmax((X - 0.5) @ teacher, axis=1).astype(np.int64)  # learnable labels, 10 classes
        return Workload("W4", f"W4 MNIST-size: {n:,}x784 random data, 784-256-64-10 ReLU, SGD batch 128, 1 epoch",
                        [784, 256, 64, 10], "relu", "softmax_ce", 0.05, 1, 128, True, "samples/s", n, X, Y, "")
    raise KeyError(key)
