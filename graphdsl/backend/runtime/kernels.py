"""Numba helpers that generated code calls (as `K.name`), compiled once into Numba's cache:
row-wise stable softmax and log-softmax, class-index checks, conv1d and conv2d
with their gradients, the patch matrices (im2col) a minibatch of convolutions multiplies,
max and average pooling with their gradients, and matrix products through BLAS."""
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
def _span(size, count, offset, stride):
    """(lo, hi): the window positions o, of `count`, at which a tap `offset` entries from the
    window's start (less the padding) reads inside the image, 0 <= o * stride + offset < size:
    lo <= o < hi. The others read the zero padding."""
    lo = max(0, (stride - 1 - offset) // stride)
    return lo, max(lo, min(count, (size - 1 - offset) // stride + 1))


@njit(cache=True)
def _zero(out):
    flat = out.reshape(out.size)
    for i in range(flat.size):
        flat[i] = 0.0


# The convolution helpers fill a buffer of the caller's and allocate nothing, so a training step
# that calls them allocates nothing either. Padding is never materialised: each tap reads the
# rows and columns `_span` finds inside the image.

@njit(cache=True)
def conv2d(x, k, stride, padding, out):
    """out [F, Ho, Wo] = the cross-correlation of x [C, H, W] with k [F, C, kh, kw]."""
    _zero(out)
    nf, nc, kh, kw = k.shape
    for f in range(nf):
        for c in range(nc):
            for a in range(kh):
                i0, i1 = _span(x.shape[1], out.shape[1], a - padding, stride)
                for b in range(kw):
                    j0, j1 = _span(x.shape[2], out.shape[2], b - padding, stride)
                    tap = k[f, c, a, b]
                    for i in range(i0, i1):
                        src, dst = x[c, i * stride + a - padding], out[f, i]
                        for j in range(j0, j1):
                            dst[j] += tap * src[j * stride + b - padding]


@njit(cache=True)
def conv2d_dx(g, k, stride, padding, out):
    """out [C, H, W] = the gradient of conv2d's image, for its output's gradient g [F, Ho, Wo]."""
    _zero(out)
    nf, nc, kh, kw = k.shape
    for f in range(nf):
        for c in range(nc):
            for a in range(kh):
                i0, i1 = _span(out.shape[1], g.shape[1], a - padding, stride)
                for b in range(kw):
                    j0, j1 = _span(out.shape[2], g.shape[2], b - padding, stride)
                    tap = k[f, c, a, b]
                    for i in range(i0, i1):
                        src, dst = g[f, i], out[c, i * stride + a - padding]
                        for j in range(j0, j1):
                            dst[j * stride + b - padding] += tap * src[j]


@njit(cache=True)
def conv2d_dk(g, x, stride, padding, out):
    """out [F, C, kh, kw] = the gradient of conv2d's kernels, for its output's gradient g [F, Ho, Wo]."""
    nf, nc, kh, kw = out.shape
    for f in range(nf):
        for c in range(nc):
            for a in range(kh):
                i0, i1 = _span(x.shape[1], g.shape[1], a - padding, stride)
                for b in range(kw):
                    j0, j1 = _span(x.shape[2], g.shape[2], b - padding, stride)
                    acc = 0.0
                    for i in range(i0, i1):
                        src, grad = x[c, i * stride + a - padding], g[f, i]
                        for j in range(j0, j1):
                            acc += grad[j] * src[j * stride + b - padding]
                    out[f, c, a, b] = acc


@njit(cache=True)
def _images(x):
    """x [..., C, H, W] as [N, C, H, W]: a view (x is a buffer, C-contiguous)."""
    return np.ascontiguousarray(x).reshape((-1,) + x.shape[-3:])


@njit(cache=True)
def im2col(x, window, stride, padding, out):
    """out [C kh kw, N Ho Wo]: row (c, a, b) holds tap (a, b) of channel c of every window position
    of every image of x [..., C, H, W] (N of them), image by image, row by row; 0 in the padding."""
    images = _images(x)
    n, nc, height, width = images.shape
    kh, kw = window
    rows, cols = (height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    _zero(out)
    for c in range(nc):
        for a in range(kh):
            i0, i1 = _span(height, rows, a - padding, stride)
            for b in range(kw):
                j0, j1 = _span(width, cols, b - padding, stride)
                taps = out[(c * kh + a) * kw + b].reshape((n, rows, cols))
                for m in range(n):
                    for i in range(i0, i1):
                        src, dst = images[m, c, i * stride + a - padding], taps[m, i]
                        for j in range(j0, j1):
                            dst[j] = src[j * stride + b - padding]


@njit(cache=True)
def col2im(g, window, stride, padding, out):
    """The gradient of im2col: out [..., C, H, W] = each entry of g [C kh kw, N Ho Wo] added to the
    image entry it was read from."""
    images = _images(out)
    n, nc, height, width = images.shape
    kh, kw = window
    rows, cols = (height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    _zero(out)
    for c in range(nc):
        for a in range(kh):
            i0, i1 = _span(height, rows, a - padding, stride)
            for b in range(kw):
                j0, j1 = _span(width, cols, b - padding, stride)
                taps = g[(c * kh + a) * kw + b].reshape((n, rows, cols))
                for m in range(n):
                    for i in range(i0, i1):
                        src, dst = taps[m, i], images[m, c, i * stride + a - padding]
                        for j in range(j0, j1):
                            dst[j * stride + b - padding] += src[j]


@njit(cache=True)
def swap01(x, out):
    """out = x with its first two axes exchanged: [A, B, ...] to [B, A, ...]."""
    rows, cols = x.reshape((x.shape[0], x.shape[1], -1)), out.reshape((x.shape[1], x.shape[0], -1))
    for a in range(rows.shape[0]):
        for b in range(rows.shape[1]):
            src, dst = rows[a, b], cols[b, a]
            for i in range(src.size):
                dst[i] = src[i]


@njit(cache=True)
def _planes(x):
    """x [..., H, W] as [N, H, W]: a view (x is a buffer, C-contiguous)."""
    return np.ascontiguousarray(x).reshape((-1,) + x.shape[-2:])


@njit(cache=True)
def maxpool2d(x, size, stride, out):
    """out [..., Ho, Wo] = the largest entry of each size x size window of x [..., H, W] (nan if
    the window holds one)."""
    planes, tops = _planes(x), _planes(out)
    for m in range(planes.shape[0]):
        for i in range(tops.shape[1]):
            for j in range(tops.shape[2]):
                top = -np.inf
                for a in range(i * stride, i * stride + size):
                    for b in range(j * stride, j * stride + size):
                        top = np.maximum(top, planes[m, a, b])
                tops[m, i, j] = top


@njit(cache=True)
def maxpool2d_dx(g, x, size, stride, out):
    """The gradient of maxpool2d: out (x's shape) = each window's entry of g [..., Ho, Wo] added at
    the window's first largest entry of x, row by row, as PyTorch and JAX choose (at its first nan
    if it holds one, as np.argmax)."""
    planes, grads = _planes(x), _planes(g)
    plane, into = planes.reshape(planes.size), out.reshape(out.size)
    _zero(out)
    width = planes.shape[2]
    for m in range(planes.shape[0]):
        for i in range(grads.shape[1]):
            for j in range(grads.shape[2]):
                corner = (m * planes.shape[1] + i * stride) * width + j * stride
                top, at = -np.inf, corner
                for a in range(size):
                    for b in range(size):
                        k = corner + a * width + b
                        # selects, not branches: which tap wins is data, which branches mispredict
                        take = (plane[k] > top) | ((plane[k] != plane[k]) & (top == top))
                        top = plane[k] if take else top
                        at = k if take else at
                into[at] += grads[m, i, j]


@njit(cache=True)
def avgpool2d(x, size, stride, out):
    """out [..., Ho, Wo] = the mean of each size x size window of x [..., H, W]."""
    planes, means = _planes(x), _planes(out)
    for m in range(planes.shape[0]):
        for i in range(means.shape[1]):
            for j in range(means.shape[2]):
                acc = 0.0
                for a in range(i * stride, i * stride + size):
                    for b in range(j * stride, j * stride + size):
                        acc += planes[m, a, b]
                means[m, i, j] = acc / (size * size)


@njit(cache=True)
def avgpool2d_dx(g, size, stride, out):
    """The gradient of avgpool2d: out [..., H, W] = each window's entry of g [..., Ho, Wo] shared
    equally by the entries of the window (overlapping windows add up)."""
    grads, dx = _planes(g), _planes(out)
    _zero(out)
    for m in range(grads.shape[0]):
        for i in range(grads.shape[1]):
            for j in range(grads.shape[2]):
                share = grads[m, i, j] / (size * size)
                for a in range(i * stride, i * stride + size):
                    for b in range(j * stride, j * stride + size):
                        dx[m, a, b] += share


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
