"""The peers: graphdsl, PyTorch eager, JAX (whole loop jitted, and a jitted step), NumPy by hand.

Each peer is a class built from a Workload and a dtype; `warmup()` does whatever compiling the
peer needs (its time is reported separately) and `run()` trains once from the workload's initial
weights and returns the final layers [(W[out, in], b[out]), ...] as NumPy arrays. Only `run()` is
timed; the data and the batch schedule are prepared in the constructor.
"""
from __future__ import annotations

import os
import time

import numpy as np


class Peer:
    name = "?"

    def __init__(self, wl, dtype=np.float64):
        self.wl, self.dtype = wl, np.dtype(dtype)

    def warmup(self) -> float:
        return 0.0

    def run(self) -> list:
        raise NotImplementedError


# -- graphdsl ------------------------------------------------------------------------------

class Graphdsl(Peer):
    """graphdsl's `model.train()`; data passed as arrays (like the peers, loading is not timed)."""

    name = "graphdsl"
    threads = None  # train()'s default: the cores other processes leave free
    # the compiled loop, whatever the run's length: the "auto" engine would interpret a run it
    # estimates quicker uncompiled (W2's and W3's are near that line), and its speed is not the loop's
    engine = "numba"

    def __init__(self, wl, dtype=np.float64):
        super().__init__(wl, dtype)
        import graphdsl
        self.graphdsl = graphdsl
        self.text = wl.spec()
        self.init = wl.graphdsl_params(wl.init())
        # in the peer's dtype, as NumPy by hand gets it: graphdsl then trains on the arrays as given
        self.data = {"x": wl.X.astype(self.dtype), "y" if wl.out == "bce" else "k": wl.Y.astype(self.dtype)}

    def model(self):
        m = self.graphdsl.compile(self.text, engine=self.engine)
        for k, v in self.init.items():
            m.params[k][...] = v
        return m

    def warmup(self) -> float:
        """Code generation and Numba compiling (or loading from the cache): the first train() in this
        process, of one epoch, or of enough epochs that it is not too short to compile (SHORT_RUN)."""
        from graphdsl.training.trainer import SHORT_RUN

        m = self.model()
        per_epoch = len(self.wl.batches()) // self.wl.epochs
        t = time.perf_counter()
        m.train(data=self.data, epochs=1 if per_epoch > SHORT_RUN else SHORT_RUN + 1, dtype=self.dtype.name,
                threads=self.threads)
        return time.perf_counter() - t

    def prepare(self):
        self._m = self.model()

    def run(self) -> list:
        self._m.train(data=self.data, dtype=self.dtype.name, threads=self.threads)
        return self.wl.graphdsl_layers(self._m.params)


class Graphdsl1(Graphdsl):
    """graphdsl with BLAS on one thread, train(threads=1), and on two: the rows of a loaded machine."""

    name = "graphdsl, 1 thread"
    threads = 1


class Graphdsl2(Graphdsl):
    name = "graphdsl, 2 threads"
    threads = 2


class GraphdslAuto(Graphdsl):
    """graphdsl as a user gets it: the default engine, which interprets a run too small to repay
    compiling its loop (the depth workloads' one epoch)."""

    name = "graphdsl, auto engine"
    engine = "auto"


# -- NumPy by hand --------------------------------------------------------------------------

def _np_act(name, z):
    if name == "sigmoid":
        a = 1.0 / (1.0 + np.exp(-z))
        return a, a * (1.0 - a)
    if name == "tanh":
        a = np.tanh(z)
        return a, 1.0 - a * a
    return np.maximum(z, 0.0), (z > 0.0).astype(z.dtype)


class NumPy(Peer):
    name = "NumPy by hand"

    def __init__(self, wl, dtype=np.float64):
        super().__init__(wl, dtype)
        if wl.convs:
            raise NotImplementedError("NumPy by hand trains dense networks only; PyTorch is W5's reference")
        self.X = wl.X.astype(self.dtype)
        self.Y = wl.Y.astype(self.dtype) if wl.out == "bce" else wl.Y
        self.batches = wl.batches()
        self.full = self.batches[0].size == len(wl.X) and not wl.shuffle

    def run(self) -> list:
        wl, dt = self.wl, self.dtype
        layers = [(W.astype(dt), b.astype(dt)) for W, b in wl.init()]
        lr, act, n_layers = dt.type(wl.lr), wl.act, len(layers)
        X, Y = self.X, self.Y
        for ids in self.batches:
            x, y = (X, Y) if self.full else (X[ids], Y[ids])
            m = len(x)
            acts, derivs = [x], []
            a = x
            for W, b in layers[:-1]:
                a, d = _np_act(act, a @ W.T + b)
                acts.append(a)
                derivs.append(d)
            W, b = layers[-1]
            z = a @ W.T + b
            if wl.out == "bce":
                dz = (1.0 / (1.0 + np.exp(-z)) - y[:, None]) / dt.type(m)
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                dz = e / e.sum(axis=1, keepdims=True)
                dz[np.arange(m), y] -= 1.0
                dz /= dt.type(m)
            new = []
            for i in range(n_layers - 1, -1, -1):
                W, b = layers[i]
                gW, gb = dz.T @ acts[i], dz.sum(axis=0)
                if i:
                    dz = (dz @ W) * derivs[i - 1]
                new.append((W - lr * gW, b - lr * gb))
            layers = new[::-1]
        return layers


class Gemm(Peer):
    """Not a peer: the matrix products of every step of the run and nothing else (np.dot at the
    layer shapes: 3 forward, 3 weight-gradient and 2 input-gradient products a step), timed in
    the same rotation as the peers. Its time bounds a run from below; W4 reports the fraction of
    it graphdsl reaches. `layout`: "contiguous", every operand a C array (the bound), or
    "graphdsl", the operands as graphdsl's loop reads them: W[out, in] transposed in the forward
    product, the output gradient dZ[B, out] transposed in the weight gradient's."""

    name = "np.dot products alone"

    def __init__(self, wl, dtype=np.float64, layout="contiguous"):
        super().__init__(wl, dtype)
        B, rng, as_graphdsl = wl.batch, np.random.default_rng(0), layout == "graphdsl"

        def operand(rows, cols, transposed=False):  # [rows, cols], or the transpose of a C array
            return (rng.random((cols, rows)).T if transposed else rng.random((rows, cols))).astype(self.dtype)
        products = []
        for i, (fi, fo) in enumerate(zip(wl.sizes[:-1], wl.sizes[1:])):
            products.append((operand(B, fi), operand(fi, fo, as_graphdsl)))    # forward  A W'
            products.append((operand(fo, B, as_graphdsl), operand(B, fi)))     # dW = dZ' A
            if i:
                products.append((operand(B, fo), operand(fo, fi)))            # dA = dZ W
        self.products = [(a, b, np.empty((a.shape[0], b.shape[1]), self.dtype)) for a, b in products]
        self.steps = len(wl.batches())
        self.flops = self.steps * sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in self.products)
        for a, b, out in self.products:  # BLAS starts its threads outside the timing
            np.dot(a, b, out)

    def run(self) -> None:
        for _ in range(self.steps):
            for a, b, out in self.products:
                np.dot(a, b, out)


# -- PyTorch eager --------------------------------------------------------------------------

class Torch(Peer):
    name = "PyTorch eager"

    threads = os.cpu_count()

    def __init__(self, wl, dtype=np.float64):
        super().__init__(wl, dtype)
        import torch
        self.torch = torch
        self.tdtype = torch.float64 if self.dtype == np.float64 else torch.float32
        self.X = torch.tensor(wl.X, dtype=self.tdtype)
        self.Y = (torch.tensor(wl.Y, dtype=self.tdtype) if wl.out == "bce" else torch.tensor(wl.Y))
        batches = wl.batches()
        self.full = batches[0].size == len(wl.X) and not wl.shuffle
        self.batches = [torch.from_numpy(b) for b in batches]

    def run(self) -> list:
        torch, wl = self.torch, self.wl
        torch.set_num_threads(self.threads)
        F = torch.nn.functional
        act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[wl.act]
        params = []
        for W, b in wl.init():
            params += [torch.tensor(W, dtype=self.tdtype, requires_grad=True),
                       torch.tensor(b, dtype=self.tdtype, requires_grad=True)]
        opt = torch.optim.SGD(params, lr=wl.lr)
        X, Y = self.X, self.Y
        pairs = list(zip(params[0::2], params[1::2]))
        convs = len(wl.convs)
        for ids in self.batches:
            x, y = (X, Y) if self.full else (X[ids], Y[ids])
            a = x
            for (K, c), (_, _, padding) in zip(pairs, wl.convs):
                a = F.max_pool2d(torch.relu(F.conv2d(a, K, c, padding=padding)), wl.pool)
            a = a.flatten(1)
            for W, b in pairs[convs:-1]:
                a = act(F.linear(a, W, b))
            z = F.linear(a, *pairs[-1])
            if wl.out == "bce":
                loss = F.binary_cross_entropy(torch.sigmoid(z[:, 0]), y)
            else:
                loss = F.cross_entropy(z, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return [(W.detach().numpy().copy(), b.detach().numpy().copy()) for W, b in pairs]


class Torch1(Torch):
    """The same, one thread: on a loaded 2-core machine PyTorch's pool of os.cpu_count() threads
    can be much slower than one thread."""

    name = "PyTorch eager, 1 thread"
    threads = 1


# -- JAX --------------------------------------------------------------------------------------

def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_loss(wl):
    jax = _jax()
    jnp = jax.numpy
    act = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}[wl.act]

    def loss(params, x, y, w):
        a = x
        for (K, c), (_, _, padding) in zip(params, wl.convs):
            z = jax.lax.conv_general_dilated(a, K, (1, 1), [(padding, padding)] * 2) + c[:, None, None]
            window = (1, 1, wl.pool, wl.pool)
            a = jax.lax.reduce_window(jax.nn.relu(z), -jnp.inf, jax.lax.max, window, window, "VALID")
        a = a.reshape(a.shape[0], -1)
        for W, b in params[len(wl.convs):-1]:
            a = act(a @ W.T + b)
        W, b = params[-1]
        z = a @ W.T + b
        if wl.out == "bce":
            p = jax.nn.sigmoid(z[:, 0])
            per = -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
        else:
            per = jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
        return jnp.sum(w * per)

    return loss


class _JaxBase(Peer):
    def __init__(self, wl, dtype=np.float64):
        super().__init__(wl, dtype)
        jax = _jax()
        self.jax, self.jnp = jax, jax.numpy
        jnp = jax.numpy
        self.X = jnp.asarray(wl.X, dtype=self.dtype)
        self.Y = jnp.asarray(wl.Y, dtype=self.dtype) if wl.out == "bce" else jnp.asarray(wl.Y)
        ids, weights = wl.schedule()
        self.ids, self.weights = ids, weights.astype(self.dtype)
        self.full = ids.shape[1] == len(wl.X) and not wl.shuffle
        lr = self.dtype.type(wl.lr)
        grad = jax.grad(_jax_loss(wl))

        def step(params, x, y, w):
            g = grad(params, x, y, w)
            return jax.tree_util.tree_map(lambda p, q: p - lr * q, params, g)

        self.step = step

    def params0(self):
        return [(self.jnp.asarray(W, self.dtype), self.jnp.asarray(b, self.dtype)) for W, b in self.wl.init()]

    def result(self, params) -> list:
        return [(np.asarray(W), np.asarray(b)) for W, b in params]


class JaxLoop(_JaxBase):
    """The whole training loop in one jitted function: lax.fori_loop over the steps."""

    name = "JAX jit(fori_loop)"

    def __init__(self, wl, dtype=np.float64):
        super().__init__(wl, dtype)
        jax, jnp, step, full = self.jax, self.jnp, self.step, self.full

        def train(params, X, Y, ids, weights):
            def body(s, p):
                if full:
                    return step(p, X, Y, weights[s])
                rows = ids[s]
                return step(p, X[rows], Y[rows], weights[s])
            return jax.lax.fori_loop(0, ids.shape[0], body, params)

        self.args = (self.params0(), self.X, self.Y, jnp.asarray(self.ids), jnp.asarray(self.weights))
        self.fn = jax.jit(train)

    def warmup(self) -> float:
        t = time.perf_counter()
        self.compiled = self.fn.lower(*self.args).compile()
        return time.perf_counter() - t

    def run(self) -> list:
        out = self.compiled(self.params0(), *self.args[1:])
        return self.result(self.jax.block_until_ready(out))


class JaxStep(_JaxBase):
    """A jitted step (gather, forward, backward, update) called from a Python loop."""

    name = "JAX jit(step)"

    def __init__(self, wl, dtype=np.float64):
        super().__init__(wl, dtype)
        jax, step, full = self.jax, self.step, self.full

        def one(params, X, Y, rows, w):
            if full:
                return step(params, X, Y, w)
            return step(params, X[rows], Y[rows], w)

        self.fn = jax.jit(one)
        # per-step index and weight rows as device arrays, made once
        self.rows = [self.jnp.asarray(r) for r in self.ids]
        self.ws = [self.jnp.asarray(w) for w in self.weights]

    def warmup(self) -> float:
        t = time.perf_counter()
        self.jax.block_until_ready(self.fn(self.params0(), self.X, self.Y, self.rows[0], self.ws[0]))
        return time.perf_counter() - t

    def run(self) -> list:
        p, fn, X, Y = self.params0(), self.fn, self.X, self.Y
        for r, w in zip(self.rows, self.ws):
            p = fn(p, X, Y, r, w)
        return self.result(self.jax.block_until_ready(p))


PEERS = {"graphdsl": Graphdsl, "graphdsl-1t": Graphdsl1, "graphdsl-2t": Graphdsl2, "graphdsl-auto": GraphdslAuto, "torch": Torch, "torch-1t": Torch1, "jax-loop": JaxLoop, "jax-step": JaxStep, "numpy": NumPy}
