"""graphdsl.backend.runtime.vecmath's exp and tanh against extended-precision references (np.longdouble, 64-bit
mantissa on x86), measured in float64 ulps, plus the values where a formula could go wrong
(those need no long double)."""
import numpy as np
import pytest
from numba import njit

from graphdsl.backend.runtime import vecmath as M

# the ulp measurements need a reference more precise than float64
extended = pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs an extended long double")


def looped(f):
    """f over an array, in a loop as generated code runs it."""
    @njit
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = f(x[i])
        return out
    return apply


apply_exp, apply_tanh = looped(M.exp), looped(M.tanh)


def ulps(got, exact):
    """|got - exact| in units of the float64 spacing at the exact value."""
    spacing = np.spacing(np.abs(exact.astype(np.float64)))
    return np.abs(got.astype(np.longdouble) - exact) / spacing.astype(np.longdouble)


def sample(rng, low, high, n=100_000):
    tiny = 10.0 ** rng.uniform(-300, 0, n // 4) * rng.choice([-1.0, 1.0], n // 4)
    return np.concatenate([rng.uniform(low, high, n), rng.normal(0.0, 3.0, n), tiny])


@extended
def test_exp_is_within_one_ulp():
    x = sample(np.random.default_rng(1), -708.0, 709.0)
    assert ulps(apply_exp(x), np.exp(x.astype(np.longdouble))).max() <= 1.0


@extended
def test_tanh_is_within_three_ulp():
    x = sample(np.random.default_rng(2), -25.0, 25.0)
    assert ulps(apply_tanh(x), np.tanh(x.astype(np.longdouble))).max() <= 3.0


def test_exp_at_the_edges():
    x = np.array([0.0, -0.0, np.inf, -np.inf, 709.78, 709.79, 1000.0, -745.1, -745.2, -1000.0])
    got = apply_exp(x)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == np.inf and got[3] == 0.0
    assert np.isfinite(got[4]) and got[5] == np.inf and got[6] == np.inf
    assert got[7] == 5e-324 and got[8] == 0.0 and got[9] == 0.0  # the least subnormal, then underflow
    assert np.isnan(apply_exp(np.array([np.nan])))[0]


@extended
def test_exp_keeps_subnormal_results():
    x = np.linspace(-744.0, -708.5, 2001)  # e^x below 2^-1022, where 2^k has no bit pattern of its own
    assert ulps(apply_exp(x), np.exp(x.astype(np.longdouble))).max() <= 1.0


def test_tanh_at_the_edges():
    x = np.array([0.0, -0.0, np.inf, -np.inf, 22.0, -30.0, 1e-300, -5e-324, 1.0, -1.0])
    got = apply_tanh(x)
    assert got[0] == 0.0 and not np.signbit(got[0]) and got[1] == 0.0 and np.signbit(got[1])
    assert got[2] == 1.0 and got[3] == -1.0 and got[4] == 1.0 and got[5] == -1.0
    assert got[6] == 1e-300 and got[7] == -5e-324
    assert abs(got[8] - np.tanh(1.0)) <= np.spacing(np.tanh(1.0)) and got[9] == -got[8]
    assert np.isnan(apply_tanh(np.array([np.nan])))[0]


def test_float32_arguments_are_computed_in_float64():
    """float32 loops call the same functions: the argument is widened, the float64 result rounded once."""
    x = sample(np.random.default_rng(3), -80.0, 80.0, 10_000).astype(np.float32)
    wide = x.astype(np.float64)
    for apply in (apply_exp, apply_tanh):
        with np.errstate(over="ignore"):
            assert np.array_equal(apply(x), apply(wide).astype(np.float32))
