"""exp and tanh for generated loops (as `M.exp`, `M.tanh`), emitted as LLVM arithmetic that LLVM vectorises.

libm's exp and tanh are opaque calls, so a loop over them runs one element at a time, and Numba's
LLVM has no vector maths library to swap in. These compute the same values to within 1 ulp (exp)
and 3 ulp (tanh) in plain arithmetic that LLVM vectorises; tests/test_vecmath.py measures the
accuracy. (Where a loop cannot be vectorised, libm is quicker: see loops.math_module.)

Each is a Numba intrinsic that writes its instructions straight into the calling loop: nothing
is left for LLVM to inline (it may leave calls out of line in a large loop, which then runs one
element at a time), and Numba has no Python function to type and inline at every call site,
which would cost compile time at each. They take float32 or float64 and compute and return float64.
"""
import math

from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

DOUBLE, INT64 = ir.DoubleType(), ir.IntType(64)
# "contract" lets a multiply and add fuse into one rounding where the machine has FMA
FLAGS = ("contract",)

# Cody-Waite split of ln 2: k * LN2_HI is exact for the |k| < 2^11 used here
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e+00
# C[n] = 1/n!: the Taylor series of expm1 to degree 13 is exact to below half an ulp on
# |r| <= ln2/2 (the next term is r^14/14! < 1.2e-17 |r|)
C = [1.0 / math.factorial(n) for n in range(14)]


class Emit:
    """Double arithmetic written into one IR builder; numbers become constants."""

    def __init__(self, builder):
        self.b = builder

    def value(self, x):
        return ir.Constant(DOUBLE, float(x)) if isinstance(x, (int, float)) else x

    def add(self, x, y):
        return self.b.fadd(self.value(x), self.value(y), flags=FLAGS)

    def sub(self, x, y):
        return self.b.fsub(self.value(x), self.value(y), flags=FLAGS)

    def mul(self, x, y):
        return self.b.fmul(self.value(x), self.value(y), flags=FLAGS)

    def call(self, name, *args):
        fn = self.b.module.declare_intrinsic(name, [DOUBLE], ir.FunctionType(DOUBLE, [DOUBLE] * len(args)))
        return self.b.call(fn, [self.value(a) for a in args])

    def below(self, x, y):
        return self.b.fcmp_ordered("<", self.value(x), self.value(y))

    def pick(self, cond, x, y):
        return self.b.select(cond, self.value(x), self.value(y))

    def least(self, x, y):
        return self.pick(self.below(y, x), y, x)

    def clamp(self, x, low, high):
        return self.least(self.pick(self.below(x, low), low, x), high)

    def pow2(self, k):
        """2^k for a whole number k in [-1022, 1023], built from its exponent bits."""
        bits = self.b.fptosi(self.add(k, 1023.0), INT64)
        return self.b.bitcast(self.b.shl(bits, ir.Constant(INT64, 52)), DOUBLE)

    def reduce(self, x):
        """(k, expm1(r)) where x = k ln2 + r and |r| <= ln2/2."""
        k = self.call("llvm.floor", self.add(self.mul(x, INV_LN2), 0.5))
        r = self.sub(self.sub(x, self.mul(k, LN2_HI)), self.mul(k, LN2_LO))
        # Estrin's scheme: pairs, then pairs of pairs, so the dependency chain is 4 deep, not 12
        r2 = self.mul(r, r)
        r4 = self.mul(r2, r2)
        pair = lambda n: self.add(C[n], self.mul(C[n + 1], r))  # noqa: E731
        q0, q1, q2 = (self.add(pair(n), self.mul(pair(n + 2), r2)) for n in (2, 6, 10))
        p = self.add(self.add(q0, self.mul(q1, r4)), self.mul(q2, self.mul(r4, r4)))
        return k, self.add(r, self.mul(self.mul(r, r), p))

    def nan_kept(self, x, y):
        """y, or x where x is NaN."""
        return self.pick(self.b.fcmp_unordered("uno", x, x), x, y)

    def exp(self, x):
        k, p = self.reduce(self.clamp(x, -746.0, 710.0))  # beyond these exp is 0 or inf; clamping keeps k in range
        half = self.call("llvm.floor", self.mul(k, 0.5))  # 2^k in two factors, each a normal number where 2^k is not
        y = self.mul(self.mul(self.add(p, 1.0), self.pow2(half)), self.pow2(self.sub(k, half)))
        return self.nan_kept(x, y)

    def expm1_small(self, x):
        """e^x - 1 for |x| <= 44, where 2^k - 1 is exact."""
        k, p = self.reduce(x)
        scale = self.pow2(k)
        return self.add(self.mul(scale, p), self.sub(scale, 1.0))

    def tanh(self, x):
        """From expm1 of -2|x| below 1 and of 2|x| above, which keeps full precision at both ends."""
        a = self.call("llvm.fabs", x)
        small = self.below(a, 1.0)
        s = self.expm1_small(self.pick(small, self.mul(a, -2.0), self.mul(self.least(a, 22.0), 2.0)))  # tanh(22) rounds to 1
        signed = self.pick(small, self.b.fneg(s), s)  # tanh a = -s / (s + 2) from below 1, s / (s + 2) above
        y = self.b.fdiv(signed, self.add(s, 2.0), flags=FLAGS)
        return self.nan_kept(x, self.call("llvm.copysign", y, x))


def unary(method):
    """A Numba intrinsic, named `method`, computing Emit.<method> of one float."""
    def function(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, signature, args):
            return getattr(Emit(builder), method)(context.cast(builder, args[0], x, types.float64))
        return types.float64(x), codegen
    function.__name__ = function.__qualname__ = method  # as typing errors and annotations name it
    return intrinsic(function)


exp = unary("exp")
tanh = unary("tanh")
