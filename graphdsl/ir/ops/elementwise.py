"""Elementwise ops. Binary ones broadcast as NumPy does; autodiff sums a
broadcast cotangent back to each operand's shape, so rules here ignore it.
A spec writes most binary ones as operators (`infix`) and calls most unary ones by name."""
from __future__ import annotations

import numpy as np

from graphdsl.ir.shapes import ShapeError, fmt_shape
from graphdsl.ir.ops import batching
from graphdsl.ir.ops.registry import UNARY, Call, mult_per_entry, no_mults, register


def broadcast(a: tuple, b: tuple) -> tuple:
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise ShapeError(f"shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast "
                         "(trailing sizes must match or be 1)") from None


def same(x: tuple, **_) -> tuple:
    return x


def binary(name, ref, code, vjp, doc, *, call, infix, mults):
    register(name, doc=doc, shape=broadcast, ref=ref, vjp=vjp, code=code, batch=batching.elementwise,
             mults=mults, call=call, infix=infix, elementwise=True)


def unary(name, ref, code, vjp, doc, *, call):
    register(name, doc=doc, shape=same, ref=ref, vjp=vjp, code=code, batch=batching.elementwise,
             mults=no_mults, call=call, elementwise=True)


binary("add", np.add, "({0} + {1})", lambda g, y, a, b: (g, g), "a + b",
       call=None, infix="+", mults=no_mults)
binary("sub", np.subtract, "({0} - {1})", lambda g, y, a, b: (g, -g), "a - b",
       call=None, infix="-", mults=no_mults)
binary("mul", np.multiply, "({0} * {1})", lambda g, y, a, b: (g * b, g * a), "a * b, elementwise",
       call=None, infix="*", mults=mult_per_entry)  # a product with a scalar too
binary("div", np.divide, "({0} / {1})", lambda g, y, a, b: (g / b, -g * y / b), "a / b, elementwise",
       call=None, infix="/", mults=no_mults)


def pow_vjp(g, y, a, b):
    """b a^(b-1) and a^b log(a), with every value on the way finite where the result is: where b = 0
    the power is a^0, so x^0 has slope 0 at x = 0 (not 0 * inf), and where a = 0 the log is log 1, so
    d(0^b)/db is 0 for b > 0 (not 0 * log 0), as in PyTorch and JAX."""
    return g * b * a ** (b - 1.0 + b.op("is_zero")), g * y * (a + a.op("is_zero")).op("log")


binary("pow", np.power, "({0} ** {1})", pow_vjp, "a ^ b, elementwise (`pow(A, 2)` squares each entry of a square matrix)",
       call=Call(("a", "b")), infix="^", mults=no_mults)
binary("eq", lambda a, b: np.equal(a, b).astype(np.float64), "(({0} == {1}) * 1.0)",
       lambda g, y, a, b: (None, None), "1 where a == b exactly, else 0; zero gradient",
       call=Call(("a", "b")), infix=None, mults=no_mults)

unary("neg", np.negative, "(-{0})", lambda g, y, x: (-g,), "-x", call=None)
unary("exp", np.exp, "{math}.exp({0})", lambda g, y, x: (g * y,), "e^x", call=UNARY)
unary("log", np.log, "np.log({0})", lambda g, y, x: (g / x,), "natural logarithm", call=UNARY)
unary("sin", np.sin, "np.sin({0})", lambda g, y, x: (g * x.op("cos"),), "sine", call=UNARY)
unary("cos", np.cos, "np.cos({0})", lambda g, y, x: (-g * x.op("sin"),), "cosine", call=UNARY)
unary("sqrt", np.sqrt, "np.sqrt({0})", lambda g, y, x: (g * 0.5 / y,), "square root", call=UNARY)
unary("abs", np.abs, "np.abs({0})", lambda g, y, x: (g * x.op("sign"),), "|x|; gradient sign(x), 0 at 0",
      call=UNARY)
unary("sign", np.sign, "np.sign({0})", lambda g, y, x: (None,), "-1, 0 or 1; zero gradient", call=None)
unary("sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x)), "(1.0 / (1.0 + {math}.exp(-{0})))",
      lambda g, y, x: (g * y * (1.0 - y),), "logistic 1 / (1 + e^-x); gradient reuses the output",
      call=UNARY)
unary("tanh", np.tanh, "{math}.tanh({0})", lambda g, y, x: (g * (1.0 - y * y),), "hyperbolic tangent",
      call=UNARY)
unary("relu", lambda x: np.maximum(x, 0.0), "np.maximum({0}, 0.0)",
      lambda g, y, x: (g * x.op("step"),), "max(x, 0); gradient 0 at 0, as in PyTorch and JAX", call=UNARY)
unary("step", lambda x: np.greater(x, 0.0).astype(np.float64), "(({0} > 0.0) * 1.0)",
      lambda g, y, x: (None,), "Heaviside: 1 where x > 0, else 0; zero gradient", call=UNARY)
unary("is_zero", lambda x: np.equal(x, 0.0).astype(np.float64), "(({0} == 0.0) * 1.0)",
      lambda g, y, x: (None,), "1 where x == 0 exactly, else 0; zero gradient", call=UNARY)
unary("softplus", lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
      "(np.maximum({0}, 0.0) + np.log1p({math}.exp(-np.abs({0}))))",
      lambda g, y, x: (g * x.op("sigmoid"),), "log(1 + e^x), computed stably", call=UNARY)
