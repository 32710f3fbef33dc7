"""Elementwise ops. Binary ones broadcast as NumPy does; autodiff sums a
broadcast cotangent back to each operand's shape, so rules here ignore it."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.ops.registry import register


def broadcast(a: tuple, b: tuple) -> tuple:
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise ShapeError(f"shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast "
                         "(trailing sizes must match or be 1)") from None


def same(x: tuple, **_) -> tuple:
    return x


def binary(name, ref, code, vjp, doc):
    register(name, shape=broadcast, ref=ref, code=code, vjp=vjp, doc=doc, elementwise=True)


def unary(name, ref, code, vjp, doc):
    register(name, shape=same, ref=ref, code=code, vjp=vjp, doc=doc, elementwise=True)


binary("add", np.add, "({0} + {1})", lambda g, y, a, b: (g, g), "a + b")
binary("sub", np.subtract, "({0} - {1})", lambda g, y, a, b: (g, -g), "a - b")
binary("mul", np.multiply, "({0} * {1})", lambda g, y, a, b: (g * b, g * a), "a * b, elementwise")
binary("div", np.divide, "({0} / {1})", lambda g, y, a, b: (g / b, -g * y / b), "a / b, elementwise")
binary("pow", np.power, "({0} ** {1})",
       lambda g, y, a, b: (g * b * a ** (b - 1.0), g * y * a.op("log")), "a ^ b, elementwise")
binary("eq", lambda a, b: np.equal(a, b).astype(np.float64), "(({0} == {1}) * 1.0)",
       lambda g, y, a, b: (None, None), "1 where a == b exactly, else 0; zero gradient")

unary("neg", np.negative, "(-{0})", lambda g, y, x: (-g,), "-x")
unary("exp", np.exp, "{math}.exp({0})", lambda g, y, x: (g * y,), "e^x")
unary("log", np.log, "np.log({0})", lambda g, y, x: (g / x,), "natural logarithm")
unary("sin", np.sin, "np.sin({0})", lambda g, y, x: (g * x.op("cos"),), "sine")
unary("cos", np.cos, "np.cos({0})", lambda g, y, x: (-g * x.op("sin"),), "cosine")
unary("sqrt", np.sqrt, "np.sqrt({0})", lambda g, y, x: (g * 0.5 / y,), "square root")
unary("abs", np.abs, "np.abs({0})", lambda g, y, x: (g * x.op("sign"),), "|x|; gradient sign(x), 0 at 0")
unary("sign", np.sign, "np.sign({0})", lambda g, y, x: (None,), "-1, 0 or 1; zero gradient")
unary("sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x)), "(1.0 / (1.0 + {math}.exp(-{0})))",
      lambda g, y, x: (g * y * (1.0 - y),), "logistic 1 / (1 + e^-x); gradient reuses the output")
unary("tanh", np.tanh, "{math}.tanh({0})", lambda g, y, x: (g * (1.0 - y * y),), "hyperbolic tangent")
unary("relu", lambda x: np.maximum(x, 0.0), "np.maximum({0}, 0.0)",
      lambda g, y, x: (g * x.op("step"),), "max(x, 0); gradient 0 at 0, as in PyTorch and JAX")
unary("step", lambda x: np.greater(x, 0.0).astype(np.float64), "(({0} > 0.0) * 1.0)",
      lambda g, y, x: (None,), "Heaviside: 1 where x > 0, else 0; zero gradient")
unary("is_zero", lambda x: np.equal(x, 0.0).astype(np.float64), "(({0} == 0.0) * 1.0)",
      lambda g, y, x: (None,), "1 where x == 0 exactly, else 0; zero gradient")
unary("softplus", lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
      "(np.maximum({0}, 0.0) + np.log1p({math}.exp(-np.abs({0}))))",
      lambda g, y, x: (g * x.op("sigmoid"),), "log(1 + e^x), computed stably")
