"""Numba helpers the generated training loop calls (as `T.name`): minibatch
gathering, the checks a step passes before it updates anything, optimizer updates
on the flat parameter vector, and accuracy counts."""
import math

import numpy as np
from numba import njit


@njit(cache=True)
def batch_rows(order, step, size, mean, ids, weights):
    """Example ids and loss weights for one step; a short last batch repeats its first
    example with weight 0, so every step has the same shapes. Returns the real count."""
    start = step * size
    count = min(size, order.size - start)
    for i in range(size):
        ids[i] = order[start + i] if i < count else order[start]
        weights[i] = (1.0 / count if mean else 1.0) if i < count else 0.0
    return count


@njit(cache=True, fastmath={"reassoc"})
def take(examples, ids, out):
    """out[i] = examples[ids[i]] for arrays of any rank (rows flattened). Returns out's Frobenius
    norm (see `norm`) for `product_fits`, summed as the rows stream in from memory, so the batch
    needs no pass of its own to measure it."""
    rows = examples.reshape((examples.shape[0], -1))
    flat = out.reshape((out.shape[0], -1))
    acc = 0.0
    for i in range(ids.size):  # a loop, not a slice assignment: see `put`
        src, dst = rows[ids[i]], flat[i]  # one row at a time, so LLVM copies it as one contiguous
        for j in range(dst.size):        # run rather than indexing [i, j] entry by entry
            dst[j] = src[j]
            acc += dst[j] * dst[j]
    return math.sqrt(acc)


@njit(cache=True, fastmath={"reassoc"})
def finite(values):
    """Whether every entry of a 1-D span (of `grad`) is finite: x * 0 is nan for inf and nan, and
    a nan stays in a sum.
    With no early exit (and the sum free to reassociate) LLVM vectorises it."""
    acc = 0.0
    for i in range(values.size):
        acc += values[i] * 0.0
    return acc == 0.0


@njit(cache=True, fastmath={"reassoc"})
def norm(values):
    """The Frobenius norm of a C-order array, summed in float64; inf or nan where an entry is not
    finite (or its square overflows the array's dtype). Vectorised as `finite` is."""
    flat = values.reshape(values.size)
    acc = 0.0
    for i in range(flat.size):
        acc += flat[i] * flat[i]
    return math.sqrt(acc)


@njit(cache=True)
def product_fits(norm_a, norm_b, like):
    """Whether a product of matrices with these Frobenius norms (`norm`) is certainly finite in
    like's dtype, every partial sum BLAS forms included: by Cauchy-Schwarz none exceeds
    |a| |b|. False also where a norm is not finite. Like the check of an unfused gradient, it
    bounds the gradient, not lr times it or the updated weight."""
    return norm_a * norm_b < np.finfo(like.dtype).max


@njit(cache=True)
def sgd(theta, grad, state, hyper):
    """PyTorch's SGD: weight decay added to the gradient, then momentum (buffer starts at 0)."""
    lr, momentum, decay = hyper[0], hyper[1], hyper[2]
    for i in range(theta.size):
        g = grad[i] + decay * theta[i]
        if momentum != 0.0:
            state[i] = momentum * state[i] + g
            g = state[i]
        theta[i] -= lr * g


@njit(cache=True)
def adam(theta, grad, state, hyper, t):
    """PyTorch's Adam (L2 weight decay, bias correction) written the way it computes it;
    state holds the first moments, then the second; t counts steps from 1."""
    lr, beta1, beta2, eps, decay = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    n = theta.size
    step_size = lr / (1.0 - beta1 ** t)
    root = math.sqrt(1.0 - beta2 ** t)
    for i in range(n):
        g = grad[i] + decay * theta[i]
        state[i] += (1.0 - beta1) * (g - state[i])
        state[n + i] = state[n + i] * beta2 + (1.0 - beta2) * g * g
        theta[i] -= step_size * (state[i] / (math.sqrt(state[n + i]) / root + eps))


@njit(cache=True)
def hit(scores, label):
    """1 if the largest score is at class `label`, else 0: one example's accuracy."""
    return 1 if np.argmax(scores) == int(label) else 0


@njit(cache=True)
def hits_argmax(scores, target, weights):
    """Examples (weight > 0) whose largest score is their class; target holds class
    indices, or one-hot rows."""
    rows = scores.reshape((weights.size, -1))
    labels = target.reshape((weights.size, -1))
    hits = 0
    for i in range(weights.size):
        want = np.argmax(labels[i]) if labels.shape[1] > 1 else int(labels[i, 0])
        if weights[i] > 0.0 and np.argmax(rows[i]) == want:
            hits += 1
    return hits


@njit(cache=True)
def hits_threshold(score, target, weights, cut):
    """Examples (weight > 0) whose score is on the target's side of `cut` (targets 0 or 1)."""
    scores, labels = score.reshape(-1), target.reshape(-1)
    per = scores.size // weights.size
    hits = 0
    for i in range(scores.size):
        if weights[i // per] > 0.0 and (scores[i] >= cut) == (labels[i] >= 0.5):
            hits += 1
    return hits / per


@njit(cache=True)
def put(dst, src):
    """dst's entries = src's entries, both in C order. A loop, compiled once here: a slice
    assignment in generated code makes Numba compile its shape-mismatch error path at each one.
    Generated code passes a slice, not an offset: an int constant would compile one
    specialisation per value."""
    flat, into = np.ascontiguousarray(src).reshape(src.size), dst.reshape(dst.size)
    if flat.size != into.size:
        raise ValueError("graphdsl: a generated value does not fit its buffer")
    for i in range(flat.size):
        into[i] = flat[i]
