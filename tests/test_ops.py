"""The op registry, op by op: every op has all its rules and facets; its NumPy reference equals an
independent formula (PyTorch or plain NumPy) and its shape rule; its Numba code equals its
reference; and its vjp rule equals central differences of the formula.

PROBES lists every op with the inputs it is tried on; a registry op without probes
fails test_probes_cover_registry, so a new op cannot go untested.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphdsl.backend import codegen
from graphdsl.backend import cache
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.interpret import evaluate
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS, registry
from graphdsl.ir.ops.registry import INFIX, Call, Op, register

RNG = np.random.default_rng(20240611)


def r(*shape):
    return RNG.normal(size=shape)


def pos(*shape):
    return RNG.uniform(0.5, 2.0, size=shape)


def away0(*shape):
    return RNG.choice([-1.0, 1.0], size=shape) * RNG.uniform(0.3, 1.5, size=shape)


def T(fn):
    """A torch function as a NumPy one: float64 tensors in, an array out."""
    def run(*arrays, **attrs):
        out = fn(*(torch.tensor(np.asarray(a, dtype=np.float64)) for a in arrays), **attrs)
        return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    return run


@dataclass(frozen=True)
class Probe:
    args: tuple
    expected: Callable          # expected(*args, **attrs): the independent formula
    attrs: dict = field(default_factory=dict)
    smooth: bool = True         # False where central differences mislead: a kink, a tie, entries ~1000
    nondiff: tuple = ()         # positions of arguments that are not differentiable (class indices)


def unbroadcast_expected(g, *, shape):
    return T(lambda t: t.sum_to_size(shape) if shape else t.sum())(g)


def expand_expected(g, *, shape, axis=None):
    t = torch.tensor(np.asarray(g, dtype=np.float64))
    return (t if axis is None else t.unsqueeze(axis)).expand(shape).numpy()


def scatter_expected(g, *, shape, idx):
    out = torch.zeros(shape, dtype=torch.float64)
    out[tuple(slice(*i) if isinstance(i, tuple) else i for i in idx)] = torch.tensor(np.asarray(g))
    return out.numpy()


def conv_t(x, k, stride):
    return F.conv1d(x[None, None], k[None, None], stride=stride)[0, 0]


def conv_dx_expected(g, k, *, n, stride):
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(conv_t(x, torch.tensor(k), stride), x, torch.tensor(g))[0].numpy()


def conv_dk_expected(g, x, *, d, stride):
    k = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(conv_t(torch.tensor(x), k, stride), k, torch.tensor(g))[0].numpy()


def conv2d_t(x, k, stride, padding):
    return F.conv2d(x[None], k, stride=stride, padding=padding)[0]


def conv2d_dx_expected(g, k, *, height, width, stride, padding):
    x = torch.zeros((k.shape[1], height, width), dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(conv2d_t(x, torch.tensor(k), stride, padding), x, torch.tensor(g))[0].numpy()


def conv2d_dk_expected(g, x, *, height, width, stride, padding):
    k = torch.zeros((g.shape[0], x.shape[0], height, width), dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(conv2d_t(torch.tensor(x), k, stride, padding), k, torch.tensor(g))[0].numpy()


def unfold_t(x, window, stride, padding):
    """im2col in torch: x [..., C, H, W] (a tensor) to [C kh kw, N Ho Wo], images side by side."""
    cols = F.unfold(x.reshape((-1,) + x.shape[-3:]), window, padding=padding, stride=stride)  # [N, C kh kw, L]
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)


def im2col_expected(x, *, window, stride, padding):
    return unfold_t(torch.tensor(np.asarray(x, dtype=np.float64)), window, stride, padding).numpy()


def col2im_expected(g, *, window, stride, padding, shape):
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(unfold_t(x, window, stride, padding), x, torch.tensor(g))[0].numpy()


def pool_t(fn, x, size, stride):
    """A torch pooling function applied to each [H, W] plane of a tensor x [..., H, W]."""
    y = fn(x.reshape((-1, 1) + x.shape[-2:]), size, stride)
    return y.reshape(x.shape[:-2] + y.shape[-2:])


def pooled(fn):
    return lambda x, *, size, stride: pool_t(fn, torch.tensor(np.asarray(x, dtype=np.float64)), size, stride).numpy()


def pool_dx_expected(fn, g, x, size, stride):
    x = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    return torch.autograd.grad(pool_t(fn, x, size, stride), x, torch.tensor(g))[0].numpy()


def maxpool_dx_expected(g, x, *, size, stride):
    return pool_dx_expected(F.max_pool2d, g, x, size, stride)


def avgpool_dx_expected(g, *, size, stride, height, width):
    return pool_dx_expected(F.avg_pool2d, g, np.zeros(np.shape(g)[:-2] + (height, width)), size, stride)


def pick_expected(z, k):
    z, k = torch.tensor(z), torch.tensor(np.asarray(k)).long()
    return torch.gather(z, -1, k.unsqueeze(-1)).squeeze(-1).numpy()


def onehot_expected(k, *, classes):
    return F.one_hot(torch.tensor(np.asarray(k)).long(), classes).double().numpy()


def binary(fn, first=r):
    """Probes for an elementwise binary op: equal shapes, and a scalar, a vector and a column broadcast."""
    return [Probe((first(2, 3), pos(2, 3)), fn), Probe((pos(), r(2, 3)), fn), Probe((pos(2, 3), pos()), fn),
            Probe((first(3), pos(2, 3)), fn), Probe((pos(2, 1), pos(1, 3)), fn), Probe((pos(), pos()), fn)]


def along(fn):
    """A torch reduction taking graphdsl's axis=None | k."""
    return T(lambda x, axis=None: fn(x) if axis is None else fn(x, axis))


def unary(fn, draw=r, kink=None):
    """A matrix and a scalar, plus the kink point itself (for the reference, not differences)."""
    probes = [Probe((draw(2, 3),), fn), Probe((draw(),), fn)]
    if kink is not None:
        probes.append(Probe((np.array([[kink, 1.0, -1.0], [kink, -2.0, 0.5]]),), fn, smooth=False))
    return probes


TIES = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, -1.0], [0.5, 2.0, 2.0]])

PROBES = {
    "add": binary(lambda a, b: a + b),
    "sub": binary(lambda a, b: a - b),
    "mul": binary(lambda a, b: a * b),
    "div": [Probe((r(2, 3), away0(2, 3)), lambda a, b: a / b), Probe((r(), away0(3)), lambda a, b: a / b),
            Probe((r(2, 3), away0(3)), lambda a, b: a / b), Probe((r(2, 1), away0()), lambda a, b: a / b)],
    "pow": binary(T(torch.pow), pos) + [Probe((r(4), np.float64(2.0)), T(torch.pow)),
                                  Probe((np.float64(2.0), r(4)), T(torch.pow))],
    "eq": [Probe((np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])), T(lambda a, b: (a == b).double())),
           Probe((np.array([[1.0, 2.0], [2.0, 1.0]]), np.float64(2.0)), T(lambda a, b: (a == b).double())),
           Probe((np.float64(1.5), np.float64(1.5)), T(lambda a, b: (a == b).double()))],
    "neg": unary(lambda x: -x),
    "exp": unary(T(torch.exp)),
    "log": unary(T(torch.log), pos),
    "sin": unary(T(torch.sin)),
    "cos": unary(T(torch.cos)),
    "sqrt": unary(T(torch.sqrt), pos),
    "abs": unary(T(torch.abs), away0, kink=0.0),
    "sign": unary(T(torch.sign), away0, kink=0.0),
    "sigmoid": unary(T(torch.sigmoid)) + [Probe((np.array([-800.0, 800.0, 0.0]),), T(torch.sigmoid), smooth=False)],
    "tanh": unary(T(torch.tanh)),
    "relu": unary(T(torch.relu), away0, kink=0.0),
    "step": unary(T(lambda x: (x > 0).double()), away0, kink=0.0),
    "is_zero": unary(T(lambda x: (x == 0).double()), away0, kink=0.0),
    "softplus": unary(T(F.softplus)) + [Probe((np.array([-800.0, 800.0, 30.0]),), T(F.softplus), smooth=False)],
    "matmul": [Probe((r(2, 3), r(3, 4)), T(torch.matmul)), Probe((r(2, 3), r(3)), T(torch.matmul)),
               Probe((r(2), r(2, 3)), T(torch.matmul)), Probe((r(3), r(3)), T(torch.matmul))],
    "transpose": [Probe((r(2, 3),), lambda x: np.array(x.T)), Probe((r(3),), lambda x: x), Probe((r(),), lambda x: x),
                  Probe((r(2, 3, 4),), T(lambda x: x.permute(2, 1, 0)))],
    "outer": [Probe((r(2), r(3)), T(torch.outer))],
    "sum": [Probe((r(2, 3),), along(torch.sum)), Probe((r(2, 3),), along(torch.sum), {"axis": 0}),
            Probe((r(2, 3),), along(torch.sum), {"axis": 1}), Probe((r(4),), along(torch.sum), {"axis": 0}),
            Probe((r(),), along(torch.sum)), Probe((r(2, 3, 2),), along(torch.sum), {"axis": 1})],
    "max": [Probe((r(2, 3),), along(torch.amax)), Probe((r(3, 3),), along(torch.amax), {"axis": 0}),
            Probe((r(2, 4),), along(torch.amax), {"axis": 1}), Probe((r(4),), along(torch.amax)),
            Probe((r(4),), along(torch.amax), {"axis": 0}), Probe((r(2, 2, 2),), along(torch.amax)),
            Probe((TIES,), along(torch.amax), smooth=False),
            Probe((TIES,), along(torch.amax), {"axis": 0}, smooth=False),
            Probe((TIES,), along(torch.amax), {"axis": 1}, smooth=False)],
    "min": [Probe((r(2, 3),), along(torch.amin)), Probe((r(3, 3),), along(torch.amin), {"axis": 0}),
            Probe((r(2, 4),), along(torch.amin), {"axis": 1}), Probe((r(4),), along(torch.amin)),
            Probe((r(2, 3, 2),), along(torch.amin), {"axis": 1}), Probe((r(),), along(torch.amin)),
            Probe((-TIES,), along(torch.amin), smooth=False),
            Probe((-TIES,), along(torch.amin), {"axis": 0}, smooth=False),
            Probe((-TIES,), along(torch.amin), {"axis": 1}, smooth=False)],
    "expand": [Probe((r(),), expand_expected, {"shape": (2, 3), "axis": None}),
               Probe((r(3),), expand_expected, {"shape": (2, 3), "axis": 0}),
               Probe((r(2),), expand_expected, {"shape": (2, 3), "axis": 1}),
               Probe((r(),), expand_expected, {"shape": (3,), "axis": 0}),
               Probe((r(2, 3),), expand_expected, {"shape": (2, 4, 3), "axis": 1})],
    "unbroadcast": [Probe((r(2, 3),), unbroadcast_expected, {"shape": shape})
                    for shape in [(3,), (), (1, 3), (2, 1), (1, 1)]]
                   + [Probe((r(3),), unbroadcast_expected, {"shape": (1,)}),
                      Probe((r(2, 2, 3),), unbroadcast_expected, {"shape": (2, 1, 3)})],
    "scalar": [Probe((), lambda *, value: np.float64(value), {"value": 2.5}),
               Probe((), lambda *, value: np.float64(value), {"value": -1e-3})],
    "index": [Probe((r(4),), lambda x, *, idx: x[idx], {"idx": (1,)}),
              Probe((r(2, 3),), lambda x, *, idx: x[idx], {"idx": (1, 2)}),
              Probe((r(2, 3),), lambda x, *, idx: x[idx], {"idx": (1,)}),
              Probe((r(2, 3, 2),), lambda x, *, idx: x[idx], {"idx": (1, 0)}),
              Probe((r(5),), lambda x, *, idx: x[1:4], {"idx": ((1, 4, 1),)}),
              Probe((r(5),), lambda x, *, idx: x[0:5:2], {"idx": ((0, 5, 2),)}),
              Probe((r(3, 4),), lambda x, *, idx: x[:, 2], {"idx": ((0, 3, 1), 2)}),
              Probe((r(3, 4),), lambda x, *, idx: x[1:, 1:4:2], {"idx": ((1, 3, 1), (1, 4, 2))})],
    "scatter": [Probe((r(),), scatter_expected, {"shape": (4,), "idx": (2,)}),
                Probe((r(),), scatter_expected, {"shape": (2, 3), "idx": (1, 0)}),
                Probe((r(3),), scatter_expected, {"shape": (2, 3), "idx": (1,)}),
                Probe((r(2),), scatter_expected, {"shape": (2, 3, 2), "idx": (0, 2)}),
                Probe((r(2, 2),), scatter_expected, {"shape": (3, 4), "idx": ((1, 3, 1), (0, 4, 2))})],
    "stack": [Probe((r(), r(), r()), T(lambda *xs: torch.stack(xs))),
              Probe((r(3), r(3)), T(lambda *xs: torch.stack(xs))),
              Probe((r(2, 2), r(2, 2)), T(lambda *xs: torch.stack(xs)))],
    "concat": [Probe((r(), r(2), r(), r(3)), T(lambda *xs: torch.cat([x.reshape(-1) for x in xs]))),
               Probe((r(2), r(2)), T(lambda *xs: torch.cat(xs))),
               Probe((r(2, 3), r(1, 3), r(3, 3)), T(lambda *xs: torch.cat(xs)))],
    "reshape": [Probe((r(2, 3),), T(lambda x, *, shape: x.reshape(shape)), {"shape": (3, 2)}),
                Probe((r(4),), T(lambda x, *, shape: x.reshape(shape)), {"shape": (4, 1)})],
    "softmax": [Probe((r(4),), T(lambda x: x.softmax(-1))), Probe((r(2, 3),), T(lambda x: x.softmax(-1))),
                Probe((r(2, 2, 3),), T(lambda x: x.softmax(-1))),
                Probe((np.array([1000.0, 1001.0, 1002.0]),), T(lambda x: x.softmax(-1)), smooth=False)],
    # the largest score's entry is a small number (-log(1 + e^-20) = -2.06e-9) after large shifts: to
    # atol 1e-14 only where the log of the sum is subtracted from the shifted scores, not from x;
    # 8 entries or more (r(3, 4), the second row pair) go through a scratch buffer, as logsumexp's do
    "log_softmax": [Probe((r(4),), T(lambda x: x.log_softmax(-1))), Probe((r(2, 3),), T(lambda x: x.log_softmax(-1))),
                    Probe((r(3, 4),), T(lambda x: x.log_softmax(-1))),
                    Probe((np.array([1000.0, 1001.0, 1002.0]),), T(lambda x: x.log_softmax(-1)), smooth=False),
                    Probe((np.array([-5000.0, -5020.0]),), T(lambda x: x.log_softmax(-1)), smooth=False),
                    Probe((np.array([[-5000.0, -5020.0, -5030.0, -5025.0], [8000.0, 7980.0, 7975.0, 7990.0]]),),
                          T(lambda x: x.log_softmax(-1)), smooth=False)],
    # 8 entries or more are shifted and exponentiated in a scratch buffer (r(3, 4), r(10), r(2, 2, 3), the rows
    # of large numbers); fewer in the row loop (r(4))
    "logsumexp": [Probe((r(4),), T(lambda x: x.logsumexp(-1))), Probe((r(3, 4),), T(lambda x: x.logsumexp(-1))),
                  Probe((r(10),), T(lambda x: x.logsumexp(-1))), Probe((r(2, 2, 3),), T(lambda x: x.logsumexp(-1))),
                  Probe((np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]]),),
                        T(lambda x: x.logsumexp(-1)), smooth=False),
                  Probe((np.array([[1000.0, 1001.0, 1002.0, 999.0], [-1000.0, -1001.0, -1e300, -1002.0]]),),
                        T(lambda x: x.logsumexp(-1)), smooth=False)],
    "pick": [Probe((r(4), np.float64(2.0)), pick_expected, nondiff=(1,)),
             Probe((r(3, 4), np.array([0.0, 3.0, 1.0])), pick_expected, nondiff=(1,)),
             Probe((r(2, 2, 3), np.array([[0.0, 2.0], [1.0, 1.0]])), pick_expected, nondiff=(1,))],
    "onehot": [Probe((np.float64(2.0),), onehot_expected, {"classes": 4}, nondiff=(0,)),
               Probe((np.array([0.0, 3.0, 1.0]),), onehot_expected, {"classes": 4}, nondiff=(0,)),
               Probe((np.array([[0.0, 2.0], [1.0, 1.0]]),), onehot_expected, {"classes": 3}, nondiff=(0,))],
    "conv1d": [Probe((r(7), r(3)), T(conv_t), {"stride": 1}), Probe((r(9), r(3)), T(conv_t), {"stride": 2}),
               Probe((r(8), r(3)), T(conv_t), {"stride": 2}), Probe((r(3), r(3)), T(conv_t), {"stride": 1})],
    "conv1d_dx": [Probe((r(5), r(3)), conv_dx_expected, {"n": 7, "stride": 1}),
                  Probe((r(3), r(3)), conv_dx_expected, {"n": 8, "stride": 2})],
    "conv1d_dk": [Probe((r(5), r(7)), conv_dk_expected, {"d": 3, "stride": 1}),
                  Probe((r(3), r(8)), conv_dk_expected, {"d": 3, "stride": 2})],
    # square and oblong kernels; stride 2 leaving the last row and column unread; a kernel as large as the image
    "conv2d": [Probe((r(2, 5, 5), r(3, 2, 3, 3)), T(conv2d_t), {"stride": 1, "padding": 0}),
               Probe((r(2, 5, 5), r(3, 2, 3, 3)), T(conv2d_t), {"stride": 2, "padding": 1}),
               Probe((r(1, 7, 6), r(2, 1, 2, 3)), T(conv2d_t), {"stride": 2, "padding": 0}),
               Probe((r(2, 3, 3), r(1, 2, 3, 3)), T(conv2d_t), {"stride": 1, "padding": 0})],
    "conv2d_dx": [Probe((r(3, 3, 3), r(3, 2, 3, 3)), conv2d_dx_expected,
                        {"height": 5, "width": 5, "stride": 1, "padding": 0}),
                  Probe((r(3, 3, 3), r(3, 2, 3, 3)), conv2d_dx_expected,
                        {"height": 5, "width": 5, "stride": 2, "padding": 1}),
                  Probe((r(2, 3, 2), r(2, 1, 2, 3)), conv2d_dx_expected,
                        {"height": 7, "width": 6, "stride": 2, "padding": 0})],
    "conv2d_dk": [Probe((r(3, 3, 3), r(2, 5, 5)), conv2d_dk_expected,
                        {"height": 3, "width": 3, "stride": 1, "padding": 0}),
                  Probe((r(3, 3, 3), r(2, 5, 5)), conv2d_dk_expected,
                        {"height": 3, "width": 3, "stride": 2, "padding": 1}),
                  Probe((r(2, 3, 2), r(1, 7, 6)), conv2d_dk_expected,
                        {"height": 2, "width": 3, "stride": 2, "padding": 0})],
    # one image and a batch; stride 2 with padding; an oblong window leaving the last column unread
    "im2col": [Probe((r(2, 4, 4),), im2col_expected, {"window": (3, 3), "stride": 1, "padding": 1}),
               Probe((r(3, 2, 5, 5),), im2col_expected, {"window": (3, 3), "stride": 2, "padding": 1}),
               Probe((r(2, 1, 6, 7),), im2col_expected, {"window": (2, 3), "stride": 2, "padding": 0})],
    "col2im": [Probe((r(18, 16),), col2im_expected, {"window": (3, 3), "stride": 1, "padding": 1, "shape": (2, 4, 4)}),
               Probe((r(18, 27),), col2im_expected,
                     {"window": (3, 3), "stride": 2, "padding": 1, "shape": (3, 2, 5, 5)}),
               Probe((r(6, 18),), col2im_expected,
                     {"window": (2, 3), "stride": 2, "padding": 0, "shape": (2, 1, 6, 7)})],
    "swap01": [Probe((r(2, 3, 4),), T(lambda x: x.transpose(0, 1))), Probe((r(2, 3),), T(lambda x: x.transpose(0, 1))),
               Probe((r(3, 2, 2, 2),), T(lambda x: x.transpose(0, 1)))],
    # windows that tile the image, overlap (stride 1), leave a row and column unread, and a batch of images
    "maxpool2d": [Probe((r(2, 4, 4),), pooled(F.max_pool2d), {"size": 2, "stride": 2}),
                  Probe((r(1, 5, 5),), pooled(F.max_pool2d), {"size": 3, "stride": 1}),
                  Probe((r(5, 5),), pooled(F.max_pool2d), {"size": 2, "stride": 2}),
                  Probe((r(2, 2, 4, 6),), pooled(F.max_pool2d), {"size": 2, "stride": 2}),
                  # ties, as a ReLU before the pool makes them: PyTorch's first largest entry takes the gradient
                  Probe((np.array([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]]]),), pooled(F.max_pool2d),
                        {"size": 2, "stride": 2}, smooth=False)],
    "maxpool2d_dx": [Probe((r(2, 2, 2), r(2, 4, 4)), maxpool_dx_expected, {"size": 2, "stride": 2}),
                     Probe((r(1, 3, 3), r(1, 5, 5)), maxpool_dx_expected, {"size": 3, "stride": 1}),
                     Probe((r(2, 2, 2, 3), r(2, 2, 4, 6)), maxpool_dx_expected, {"size": 2, "stride": 2}),
                     Probe((r(1, 1, 2), np.array([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]]])),
                           maxpool_dx_expected, {"size": 2, "stride": 2})],
    "avgpool2d": [Probe((r(2, 4, 4),), pooled(F.avg_pool2d), {"size": 2, "stride": 2}),
                  Probe((r(1, 5, 5),), pooled(F.avg_pool2d), {"size": 3, "stride": 1}),
                  Probe((r(5, 5),), pooled(F.avg_pool2d), {"size": 2, "stride": 2}),
                  Probe((r(2, 2, 4, 6),), pooled(F.avg_pool2d), {"size": 2, "stride": 2})],
    "avgpool2d_dx": [Probe((r(2, 2, 2),), avgpool_dx_expected, {"size": 2, "stride": 2, "height": 4, "width": 4}),
                     Probe((r(1, 3, 3),), avgpool_dx_expected, {"size": 3, "stride": 1, "height": 5, "width": 5}),
                     Probe((r(2, 2),), avgpool_dx_expected, {"size": 2, "stride": 2, "height": 5, "width": 5})],
}
ALL = [(op, i) for op in PROBES for i in range(len(PROBES[op]))]


def probe_id(p):
    return f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p)


# -- completeness ----------------------------------------------------------------

def test_probes_cover_registry():
    assert set(OPS) - set(PROBES) == set(), "registry ops without probes: add them to PROBES"
    assert set(PROBES) - set(OPS) == set(), "probes for ops the registry does not have"


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_has_every_rule(name):
    op = OPS[name]
    assert op.name == name
    assert callable(op.shape), "shape rule"
    assert callable(op.ref), "NumPy reference"
    assert callable(op.code) or callable(op.emit), "code template, or a loop emitter (emit)"
    assert op.doc.strip(), "doc"
    if op.backward_only:
        assert op.vjp is None, "a backward-only op is never differentiated, so it has no vjp rule"
    else:
        assert callable(op.vjp), "vjp rule"


FLAGS = ("elementwise", "reads_fused", "blas")
OPTIONAL = ("view", "fused_read", "scratch")  # a function, or None where the op has no such facet


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_has_every_facet(name):
    """Every facet of the entry is present and of its kind, so an op cannot go without one."""
    op = OPS[name]
    assert (op.code is None) != (op.emit is None), "code (a template) or emit (loops), not both"
    assert callable(op.batch), "minibatch rule (batching.unbatchable where there is none)"
    for p in PROBES[name]:
        shapes = [np.shape(a) for a in p.args]
        count = op.mults(shapes, tuple(op.shape(*shapes, **p.attrs)))
        assert isinstance(count, int) and count >= 0, "multiplication count (registry.no_mults if none)"
        assert op.class_index is None or 0 < op.class_index < len(p.args), "class_index: an operand after the scores"
    assert op.call is None or (isinstance(op.call, Call) and op.call.params
                               and all(isinstance(p, str) for p in op.call.params)
                               and all(len(kind_default) == 2 for kind_default in op.call.kwargs.values())), "call"
    assert op.infix is None or INFIX[op.infix] == name, "infix"
    for flag in FLAGS:
        assert isinstance(getattr(op, flag), bool), flag
    for facet in OPTIONAL:
        assert getattr(op, facet) is None or callable(getattr(op, facet)), facet


def test_every_facet_is_checked_and_described():
    """A facet added to Op is checked above and listed in the registry's docstring."""
    checked = {"name", "doc", "shape", "ref", "vjp", "code", "emit", "batch", "mults", "call", "infix",
               "class_index", *FLAGS, *OPTIONAL}
    assert {f.name for f in fields(Op)} == checked
    assert [f for f in checked - {"name"} if f"- {f}" not in registry.__doc__] == []


def test_an_op_without_a_facet_fails_to_register():
    facets = dict(doc="x", shape=lambda x: x, ref=lambda x: x, vjp=lambda g, y, x: (g,), code="{0}",
                  batch=lambda node, args, flags, size: args[0], mults=registry.no_mults, call=None)
    for left_out in ("vjp", "batch", "mults", "call", "code"):
        with pytest.raises(TypeError):
            register("incomplete", **{k: v for k, v in facets.items() if k != left_out})
    with pytest.raises(TypeError):
        register("incomplete", **facets, emit=lambda out, args, in_shapes, out_shape: [])
    assert "incomplete" not in OPS


# -- the reference against independent formulas and the shape rule ---------------

@pytest.mark.parametrize("probe", ALL, ids=probe_id)
def test_ref_matches_independent_formula(probe):
    op, i = probe
    p = PROBES[op][i]
    with np.errstate(over="ignore"):
        got = OPS[op].ref(*p.args, **p.attrs)
    want = p.expected(*p.args, **p.attrs)
    shape = OPS[op].shape(*(np.shape(a) for a in p.args), **p.attrs)
    assert np.shape(got) == tuple(shape), f"ref gives {np.shape(got)}, shape rule says {shape}"
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# -- the Numba code against the reference ------------------------------------------

def build(op: str, p: Probe):
    """A graph with a leaf per argument and the op applied to them."""
    g = Graph()
    leaves = [g.leaf("input", None, np.shape(a)) for a in p.args]
    out = g.add(op, leaves, p.attrs)
    return g, leaves, out


def leaf_value(a):
    return float(a) if np.ndim(a) == 0 else np.ascontiguousarray(a, dtype=np.float64)


@lru_cache(maxsize=None)
def compiled_outputs(op: str) -> list:
    """Every probe of one op in one small kernel: one compile per op (large kernels compile slowly)."""
    g, leaves, outs, values = Graph(), [], [], []
    for p in PROBES[op]:
        ids = [g.leaf("input", None, np.shape(a)) for a in p.args]
        outs.append(g.add(op, ids, p.attrs))
        leaves += ids
        values += [leaf_value(a) for a in p.args]
    kernel = cache.load(codegen.module([codegen.function(g, "kernel", leaves, outs)])).kernel
    return list(kernel(*values))


@pytest.mark.parametrize("op", sorted(PROBES))
def test_code_matches_ref(op):
    for p, got in zip(PROBES[op], compiled_outputs(op)):
        with np.errstate(over="ignore"):
            want = OPS[op].ref(*p.args, **p.attrs)
        assert np.shape(got) == np.shape(want), f"{op}{p.attrs}: code gives {np.shape(got)}, ref {np.shape(want)}"
        # Generated code keeps scalars as floats: a 0-d array among floats breaks `np.array([...])`
        # (stacking) when Numba types it.
        assert np.shape(want) != () or not isinstance(got, np.ndarray), f"{op}{p.attrs}: a 0-d array, not a float"
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"{op} {p.attrs}")


# -- the vjp rule against central differences ---------------------------------------

def central_diff(f, args: list, i: int, eps=1e-6) -> np.ndarray:
    base = np.array(args[i], dtype=np.float64)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        sides = []
        for step in (eps, -eps):
            moved = base.copy()
            moved[index] += step
            sides.append(f(*args[:i], moved, *args[i + 1:]))
        grad[index] = (sides[0] - sides[1]) / (2 * eps)
    return grad


VJP = [(op, i) for op, i in ALL if not OPS[op].backward_only and PROBES[op][i].args and PROBES[op][i].smooth]


@pytest.mark.parametrize("probe", VJP, ids=probe_id)
def test_vjp_matches_differences(probe):
    """L = sum(w * op(args)) for random w: the backward graph's gradients equal differences of
    the independent formula."""
    op, i = probe
    p = PROBES[op][i]
    g, leaves, out = build(op, p)
    w = np.random.default_rng(zlib.crc32(f"{op}-{i}".encode())).normal(size=g.nodes[out].shape)
    w_id = g.leaf("input", None, np.shape(w))
    loss = g.add("sum", [g.add("mul", [w_id, out])])
    diff = [leaf for j, leaf in enumerate(leaves) if j not in p.nondiff]
    grads = backward(g, loss, diff)
    values = {leaf: leaf_value(a) for leaf, a in zip(leaves, p.args)}
    values[w_id] = leaf_value(w)
    got = evaluate(g, values, [grads[d] for d in diff])
    f = lambda *args: float(np.sum(w * p.expected(*args, **p.attrs)))  # noqa: E731
    for j, leaf in enumerate(leaves):
        if j in p.nondiff:
            continue
        want = central_diff(f, list(p.args), j)
        assert np.shape(got[grads[leaf]]) == np.shape(p.args[j]), f"gradient of argument {j} has the wrong shape"
        np.testing.assert_allclose(got[grads[leaf]], want, rtol=1e-6, atol=1e-8, err_msg=f"{op}: argument {j}")
