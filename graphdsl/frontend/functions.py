"""The functions a spec may call, each built from registry ops.

A function is either one op (`sigmoid`), made from the op's `call` facet, or a composite
of several (`mse`, `softmax_ce`), so every gradient still comes from the registry's rules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.ops import OPS
from graphdsl.ir.ops.registry import Op
from graphdsl.ir.sym import Sym


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple            # positional parameter names
    build: Callable          # build(*syms, **kwargs) -> Sym
    doc: str
    kwargs: dict = field(default_factory=dict)  # name -> (kind, default); kind: int | count | axis | reduce | shape
    optional: int = 0        # how many of the last params a call may leave out (build gives them defaults)


FUNCTIONS: dict[str, Function] = {}
REDUCE = ("mean", "sum")


def define(name, params, build, doc, optional=0, **kwargs):
    FUNCTIONS[name] = Function(name, tuple(params), build, doc, kwargs, optional)


def one_op(op: Op) -> Callable:
    """A call of `op` itself, giving it every setting: the call's, else the default."""
    def build(*args: Sym, **given) -> Sym:
        settings = {key: given.get(key, default) for key, (_, default) in op.call.kwargs.items()}
        return args[0].op(op.name, *args[1:], **settings)
    return build


for _op in OPS.values():
    if _op.call is not None:
        define(_op.name, _op.call.params, one_op(_op), _op.doc, **_op.call.kwargs)


def mean(x: Sym, axis=None) -> Sym:
    return x.op("sum", axis=axis) / float(np.prod(x.shape if axis is None else x.shape[axis]))


define("mean", ["x"], mean, "mean of all entries, or along axis=k", axis=("axis", None))


def dot(a: Sym, b: Sym) -> Sym:
    if len(a.shape) != 1 or a.shape != b.shape:
        raise ShapeError(f"needs two vectors of one length, not {fmt_shape(a.shape)} and {fmt_shape(b.shape)}")
    return a @ b


define("dot", ["u", "v"], dot, "u . v for two vectors of one length")


def conv2d(x: Sym, k: Sym, b: Sym | None = None, stride=1, padding=0) -> Sym:
    z = x.op("conv2d", k, stride=stride, padding=padding)
    if b is None:
        return z
    if b.shape != z.shape[:1]:
        raise ShapeError(f"the bias must be {fmt_shape(z.shape[:1])}, one entry per kernel, not {fmt_shape(b.shape)}")
    # b[f] is added at every output position of kernel f: a column [F, 1, 1] broadcast, whose
    # gradient is one sum over the positions (and a minibatch's examples)
    return z + b.op("reshape", shape=b.shape + (1, 1))


define("conv2d", ["x", "k", "b"], conv2d,
       "2-D cross-correlation of an image x [C, H, W] with kernels k [F, C, kh, kw], plus an optional bias b [F]",
       optional=1, stride=("int", 1), padding=("count", 0))


def pool(op: str) -> Callable:
    """A pooling op's call: the windows move by their size unless a stride is given, as in PyTorch."""
    def build(x: Sym, size=2, stride=None) -> Sym:
        return x.op(op, size=size, stride=size if stride is None else stride)
    return build


for _op in ("maxpool2d", "avgpool2d"):
    define(_op, ["x"], pool(_op), OPS[_op].doc + "; stride=size unless given", size=("int", 2),
           stride=("int", None))


def reshape(x: Sym, shape=None) -> Sym:
    if shape is None:
        raise ShapeError("give the new shape, as in `reshape(x, shape=[2, 3])`")
    return x.op("reshape", shape=shape)


define("reshape", ["x"], reshape, "the same entries in shape=[...], read and filled row by row (C order, as in NumPy)",
       shape=("shape", None))
define("flatten", ["x"], lambda x: x.op("reshape", shape=(math.prod(x.shape),)),
       "all entries in one vector, row by row (C order, as NumPy's ravel and PyTorch's flatten)")


# -- losses: an elementwise (or per-row) loss, then the declared reduction ---

def reduce_loss(per_item: Sym, reduce: str) -> Sym:
    if per_item.shape == ():
        return per_item
    return mean(per_item) if reduce == "mean" else per_item.op("sum")


def check_pair(pred: Sym, target: Sym) -> None:
    """A target of the prediction's shape, or one number for every entry. Any other shape is refused,
    even where it broadcasts: a [2] target against a [2, 2] prediction is almost surely a product
    typed wrong upstream, and broadcasting it would print a wrong loss."""
    if target.shape not in (pred.shape, ()):
        raise ShapeError(f"the prediction is {fmt_shape(pred.shape)} but the target is {fmt_shape(target.shape)}")


def pairwise(name, per_item, doc):
    def build(pred, target, reduce="mean"):
        check_pair(pred, target)
        return reduce_loss(per_item(pred, target), reduce)
    define(name, ["prediction", "target"], build, doc, reduce=("reduce", "mean"))


pairwise("mse", lambda p, t: (p - t) * (p - t), "(p - t)^2, averaged (reduce=mean) or summed (reduce=sum)")
pairwise("half_se", lambda p, t: 0.5 * (p - t) * (p - t), "0.5 (p - t)^2, averaged or summed")


def bce_logits(z: Sym, t: Sym) -> Sym:
    return z.op("softplus") - t * z


def bce(p: Sym, t: Sym) -> Sym:
    """On a sigmoid written inside the call, the logits form: the same value, finite where p rounds
    to 0 or 1, and a gradient of sigmoid(z) - t that skips two divisions. A named sigmoid stays: its
    own gradient must come through it."""
    node = p.g.nodes[p.id]
    if node.op == "sigmoid" and p.id not in p.g.names.values():
        return bce_logits(Sym(p.g, node.args[0]), t)
    return -(t * p.op("log") + (1.0 - t) * (1.0 - p).op("log"))


pairwise("bce", bce, "binary cross-entropy -(t log p + (1-t) log(1-p)) on probabilities p, natural log;"
         " bce(sigmoid(z), t) is computed as bce_logits(z, t)")
pairwise("bce_logits", bce_logits, "binary cross-entropy on logits z, stable: softplus(z) - t z")


def softmax_ce(z, t, reduce="mean"):
    if not z.shape:
        raise ShapeError("the scores are a scalar, but softmax_ce needs one score a class: a vector, or a matrix "
                         "of rows; for one probability, use bce or bce_logits")
    if t.shape == z.shape:
        per_row = -(t * z.op("log_softmax")).op("sum", axis=len(z.shape) - 1)
    elif t.shape == z.shape[:-1]:
        literal = t.g.nodes[t.id]
        classes = z.shape[-1]
        if literal.op == "scalar" and literal.kw["value"] not in range(classes):
            raise ShapeError(f"class index {literal.kw['value']:g} is not a whole number from 0 to {classes - 1}")
        per_row = -z.op("log_softmax").op("pick", t)  # not logsumexp(z) - z[k], which cancels
    else:
        index = "a class index (a scalar)" if len(z.shape) == 1 else f"class indices {fmt_shape(z.shape[:-1])}"
        onehot = "a one-hot vector" if len(z.shape) == 1 else "one-hot rows"
        raise ShapeError(f"scores are {fmt_shape(z.shape)}, so the target must be {index} "
                         f"or {onehot} {fmt_shape(z.shape)}, not {fmt_shape(t.shape)}")
    return reduce_loss(per_row, reduce)


define("softmax_ce", ["scores", "target"], softmax_ce,
       "softmax cross-entropy of scores against class indices or one-hot rows, stable form",
       reduce=("reduce", "mean"))

# Initialisers give a param its first value; each maps to the settings it takes.
INITIALISERS = {
    "zeros": (),
    "ones": (),
    "normal": ("mean", "std", "seed"),       # mean 0, std 1
    "uniform": ("low", "high", "seed"),      # low -1, high 1
    "xavier": ("seed",),                     # Glorot uniform, limit sqrt(6 / (fan_in + fan_out))
    "he": ("seed",),                         # He normal, std sqrt(2 / fan_in)
}


def draw(kind: str, kw: dict, shape: tuple, rng) -> np.ndarray:
    """An initialiser's values. W[out, in] is read as fan_out = out, fan_in = in; a conv kernel
    [F, C, kh, kw] as fan_in = C kh kw and fan_out = F kh kw, as PyTorch reads them."""
    window = math.prod(shape[2:])
    fan_in, fan_out = (shape[1] * window, shape[0] * window) if len(shape) > 1 else (shape[-1], shape[-1])
    if kind in ("zeros", "ones"):
        return np.full(shape, 0.0 if kind == "zeros" else 1.0)
    if kind == "normal":
        return rng.normal(kw.get("mean", 0.0), kw.get("std", 1.0), shape)
    if kind == "uniform":
        return rng.uniform(kw.get("low", -1.0), kw.get("high", 1.0), shape)
    if kind == "xavier":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
