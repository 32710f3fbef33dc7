"""The benchmark workloads: data, initial weights, batch schedule, graphdsl spec, and a NumPy
reference loss, shared by every peer so that all of them do exactly the same work.

A network is a list of layers (W[out, in], b[out]) as graphdsl stores them; hidden layers apply
`act`, the last layer gives logits. `out` is "bce" (one logit through sigmoid, binary
cross-entropy; W1) or "softmax_ce" (class indices; W2-W5). A convolutional network (W5) starts
with conv layers (K[F, C, k, k], c[F]), each followed by ReLU and max pooling, and flattens their
output into its dense layers.
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
    convs: tuple = ()      # conv layers before the dense ones: (filters, kernel size, padding) each
    pool: int = 2          # the max pooling window (and stride) after each conv layer
    reference: str = "numpy"  # the peer whose final loss every peer must match: NumPy by hand, or
    #                           PyTorch where there is no NumPy by hand (convolutions)

    # -- what every peer shares ----------------------------------------------

    def weight_shapes(self) -> list:
        """Each layer's weight shape: conv kernels [F, C, k, k], then dense W[out, in]."""
        shapes, channels = [], self.X.shape[1] if self.convs else None
        for filters, size, _ in self.convs:
            shapes.append((filters, channels, size, size))
            channels = filters
        return shapes + [(fan_out, fan_in) for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:])]

    def init(self) -> list:
        """Initial weights: Glorot uniform (a kernel [F, C, k, k] has fan-in C k k and fan-out F k k,
        as graphdsl's xavier and PyTorch read it) and zero biases, from a fixed seed."""
        rng = np.random.default_rng(1234)
        layers = []
        for shape in self.weight_shapes():
            window = int(np.prod(shape[2:]))
            a = np.sqrt(6.0 / (shape[1] * window + shape[0] * window))
            layers.append((rng.uniform(-a, a, shape), np.zeros(shape[0])))
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
        layers = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in layers]
        a = self.X
        for (K, c), (_, _, padding) in zip(layers, self.convs):
            a = max_pool(np.maximum(conv2d(a, K, padding) + c[:, None, None], 0.0), self.pool)
        a = a.reshape(len(a), -1)
        for W, b in layers[len(self.convs):-1]:
            a = ACTS[self.act](a @ W.T + b)
        W, b = layers[-1]
        z = a @ W.T + b
        if self.out == "bce":
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return float(np.mean(-(self.Y * np.log(p) + (1 - self.Y) * np.log(1 - p))))
        m = z.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
        return float(np.mean(lse - z[np.arange(len(z)), self.Y]))

    # -- graphdsl ---------------------------------------------------------------

    def spec(self) -> str:
        """The graphdsl spec of this workload (initial values are overwritten by `graphdsl_params`)."""
        x = self.X.shape[1:] if self.convs else (self.sizes[0],)
        lines = [f"input x[{', '.join(map(str, x))}]", "target y" if self.out == "bce" else "target k"]
        a = "x"
        for i, (shape, (_, _, padding)) in enumerate(zip(self.weight_shapes(), self.convs)):
            lines += [f"param K{i}[{', '.join(map(str, shape))}] = zeros()", f"param c{i}[{shape[0]}] = zeros()",
                      f"a{i} = maxpool2d(relu(conv2d({a}, K{i}, c{i}, padding={padding})), size={self.pool})"]
            a = f"a{i}"
        a = f"flatten({a})" if self.convs else a
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

    def graphdsl_names(self) -> list:
        """The spec's (weight, bias) names, layer by layer."""
        return ([(f"K{i}", f"c{i}") for i in range(len(self.convs))]
                + [(f"W{i}", f"b{i}") for i in range(len(self.sizes) - 1)])

    def graphdsl_params(self, layers) -> dict:
        out = {}
        for i, ((W, b), (wn, bn)) in enumerate(zip(layers, self.graphdsl_names())):
            if self.out == "bce" and i == len(layers) - 1:
                W, b = W[0], b[0]
            out[wn], out[bn] = np.array(W, np.float64), np.array(b, np.float64)
        return out

    def graphdsl_layers(self, params: dict) -> list:
        return [(np.atleast_2d(params[wn]), np.atleast_1d(params[bn])) for wn, bn in self.graphdsl_names()]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTS = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


def conv2d(x, k, padding: int):
    """Images x [N, C, H, W] cross-correlated with kernels k [F, C, kh, kw], stride 1, zero-padded."""
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, k.shape[2:], axis=(2, 3))  # [N, C, Ho, Wo, kh, kw]
    return np.einsum("nchwij,fcij->nfhw", patches, k, optimize=True)


def max_pool(x, size: int):
    """The largest entry of each size x size tile of x [N, C, H, W] (rows and columns left over dropped)."""
    n, c, h, w = x.shape
    h, w = h // size * size, w // size * size
    return x[:, :, :h, :w].reshape(n, c, h // size, size, w // size, size).max(axis=(3, 5))


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
    if key == "W5":
        from sklearn import datasets
        bunch = datasets.load_digits()
        epochs = 3 if quick else 10
        # specs/cnn_digits.nn's network: two conv layers (3x3, padded) with ReLU and 2x2 max pooling,
        # then a ReLU hidden layer and the logits
        return Workload("W5", f"W5 digits CNN: 1x8x8, conv 8 and 16 3x3 + ReLU + max pool 2, 64-32-10, "
                              f"softmax CE, SGD batch 32, {epochs} epochs",
                        [64, 32, 10], "relu", "softmax_ce", 0.05, epochs, 32, True, "samples/s", epochs * 1797,
                        np.ascontiguousarray((bunch.data / 16.0).reshape(-1, 1, 8, 8)),
                        bunch.target.astype(np.int64), "data digits", convs=((8, 3, 1), (16, 3, 1)),
                        reference="torch")
    if key.startswith("D") and key[1:].isdigit():  # depth: how compile time grows with the layers
        from sklearn import datasets
        bunch, d = datasets.load_digits(), int(key[1:])
        return Workload(key, f"{key}: MLP 64-(64 x {d})-10 tanh, softmax CE, SGD batch 32, 1 epoch",
                        [64] + [64] * d + [10], "tanh", "softmax_ce", 0.05, 1, 32, True, "samples/s", 1797,
                        np.ascontiguousarray(bunch.data / 16.0), bunch.target.astype(np.int64), "data digits")
    raise KeyError(key)
