"""Numba helpers that generated code calls (as `K.name`), compiled once into Numba's cache:
row-wise stable softmax and log-softmax, class-index checks, conv1d and conv2d
with their gradients, and matrix products through BLAS."""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic
from numba.np.linalg import ensure_blas

from graphdsl.errors import CLASS_INDEX_PROBLEM, ClassIndexError


@njit(cache=True)
def _rows(x):
    return np.ascontiguousarray(x).reshape((-1, x.shape[-1]))


@njit(cache=True)
def log_softmax(x):
    rows = _rows(x)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        m = rows[r].max()
        out[r] = rows[r] - (m + np.log(np.sum(np.exp(rows[r] - m))))
    return out.reshape(x.shape)


@njit(cache=True)
def softmax(x):
    rows = _rows(x)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        e = np.exp(rows[r] - rows[r].max())
        out[r] = e / e.sum()
    return out.reshape(x.shape)


@njit(cache=True)
def class_index(k, classes):
    c = int(k)
    if c != k or c < 0 or c >= classes:
        raise ClassIndexError(CLASS_INDEX_PROBLEM)
    return c


@njit(cache=True)
def conv1d(x, k, stride):
    m = (x.size - k.size) // stride + 1
    out = np.empty(m)
    for i in range(m):
        out[i] = np.dot(k, x[i * stride:i * stride + k.size])
    return out


@njit(cache=True)
def conv1d_dx(g, k, n, stride):
    dx = np.zeros(n)
    for i in range(g.size):
        dx[i * stride:i * stride + k.size] += g[i] * k
    return dx


@njit(cache=True)
def conv1d_dk(g, x, d, stride):
    dk = np.zeros(d)
    for i in range(g.size):
        dk += g[i] * x[i * stride:i * stride + d]
    return dk


@njit(cache=True)
def _pad2d(x, padding):
    """x [C, H, W] with `padding` zeros around each channel."""
    out = np.zeros((x.shape[0], x.shape[1] + 2 * padding, x.shape[2] + 2 * padding))
    out[:, padding:padding + x.shape[1], padding:padding + x.shape[2]] = x
    return out


@njit(cache=True)
def conv2d(x, k, stride, padding):
    xp = _pad2d(x, padding)
    nf, nc, kh, kw = k.shape
    rows, cols = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((nf, rows, cols))
    for f in range(nf):
        for c in range(nc):
            for a in range(kh):
                for b in range(kw):
                    out[f] += k[f, c, a, b] * xp[c, a:a + stride * rows:stride, b:b + stride * cols:stride]
    return out


@njit(cache=True)
def conv2d_dx(g, k, height, width, stride, padding):
    nf, nc, kh, kw = k.shape
    rows, cols = g.shape[1], g.shape[2]
    dx = np.zeros((nc, height + 2 * padding, width + 2 * padding))
    for f in range(nf):
        for c in range(nc):
            for a in range(kh):
                for b in range(kw):
                    dx[c, a:a + stride * rows:stride, b:b + stride * cols:stride] += k[f, c, a, b] * g[f]
    return dx[:, padding:padding + height, padding:padding + width].copy()


@njit(cache=True)
def conv2d_dk(g, x, height, width, stride, padding):
    xp = _pad2d(x, padding)
    nf, rows, cols = g.shape
    dk = np.zeros((nf, x.shape[0], height, width))
    for f in range(nf):
        for c in range(x.shape[0]):
            for a in range(height):
                for b in range(width):
                    dk[f, c, a, b] = np.sum(g[f] * xp[c, a:a + stride * rows:stride, b:b + stride * cols:stride])
    return dk


@njit(cache=True)
def dot(a, b, out):
    """out = a @ b by BLAS. Compiled once per layout and cached: np.dot written into generated
    code would be typed and compiled again in every spec's module."""
    np.dot(a, b, out)


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """BLAS xGEMM, column-major: c = alpha * op(a) @ op(b) + beta * c, through the entry point
    Numba's own np.dot calls (SciPy's BLAS, found when the code loads, so it caches). Returns
    BLAS's status: 0, or -1 where no BLAS was found."""
    ensure_blas()
    if not (a.dtype == b.dtype == c.dtype and c.dtype in (types.float32, types.float64)):
        return None  # a typing error: operands of one float dtype only
    char, size, ptr = ir.IntType(8), ir.IntType(64), ir.IntType(8).as_pointer()
    scalar_type, array_type = {5: alpha, 10: beta}, {6: a, 8: b, 11: c}
    fnty = ir.FunctionType(ir.IntType(32), [char, char, char, size, size, size, ptr, ptr, size, ptr, size, ptr,
                                            ptr, size])

    def codegen(context, builder, sig, args):
        def passed(i):  # arrays by their data pointer, and BLAS takes alpha and beta by pointer too
            if i in scalar_type:
                value = context.cast(builder, args[i], scalar_type[i], c.dtype)
                return builder.bitcast(cgutils.alloca_once_value(builder, value), ptr)
            if i in array_type:
                return builder.bitcast(context.make_array(array_type[i])(context, builder, args[i]).data, ptr)
            return args[i]

        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        kind = ir.Constant(char, ord("s" if c.dtype == types.float32 else "d"))
        return builder.call(fn, [kind, builder.trunc(args[0], char), builder.trunc(args[1], char),
                                 *(passed(i) for i in range(2, 13))])

    int64 = types.int64
    return types.int32(int64, int64, int64, int64, int64, alpha, a, int64, b, int64, beta, c, int64), codegen


@njit(cache=True)
def _blas_side(x):
    """How BLAS reads a row-major matrix as a column-major one: (transpose flag, leading dimension)."""
    if x.flags.c_contiguous:
        return ord("n"), x.shape[1]
    if x.flags.f_contiguous:
        return ord("t"), x.shape[0]
    raise ValueError("graphdsl: a matrix product's operand is not contiguous")


@njit(cache=True)
def dot_add(a, b, c, alpha):
    """c += alpha * a @ b in one BLAS call (GEMM with beta 1; c C-contiguous). Plain SGD writes a
    weight gradient's product straight into the weights with it: no gradient buffer to zero,
    fill and read back."""
    ta, lda = _blas_side(a)
    tb, ldb = _blas_side(b)
    # row-major c = a b is column-major c' = b' a'
    if _xxgemm(tb, ta, c.shape[1], c.shape[0], a.shape[1], alpha, b, ldb, a, lda, 1.0, c, c.shape[1]) != 0:
        raise RuntimeError("graphdsl: no BLAS found (SciPy provides it to Numba)")
