"""Numba helpers the generated training loop calls (as `T.name`): minibatch
gathering, the checks a step passes before it updates anything, the learning rate
of a schedule, gradient-norm clipping, optimizer updates on the flat parameter
vector, and accuracy counts.

An interpreted training run (training/interpreted.py) calls the same functions
uncompiled (`.py_func`; its update compiled where that is quicker), so none of
those it calls may call another jitted function: that would compile it."""
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
    needs no pass of its own to measure it. A row's squares add up in its dtype, as quick as the
    copy alone (widening each float32 to float64 made the gather 1.6 times slower), raised by
    their rounding's bound so the check stays certain; a row whose sum overflows the dtype is
    summed again in float64, so only a square that overflows it (or an entry not finite) makes
    the norm inf or nan."""
    rows = examples.reshape((examples.shape[0], -1))
    flat = out.reshape((out.shape[0], -1))
    acc = 0.0
    for i in range(ids.size):  # a loop, not a slice assignment: see `put`
        src, dst = rows[ids[i]], flat[i]  # one row at a time, so LLVM copies it as one contiguous
        if dst.size == 0:                 # run rather than indexing [i, j] entry by entry
            continue
        part = src[0] - src[0]  # 0 in the row's dtype (nan where the entry is not finite)
        for j in range(dst.size):
            dst[j] = src[j]
            part += dst[j] * dst[j]
        row = float(part)
        if row == np.inf:
            row = 0.0
            for j in range(dst.size):
                row += dst[j] * dst[j]
        acc += row * (1.0 + dst.size * np.finfo(dst.dtype).eps)
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


# Learning-rate schedules, as training/schedules.py names them (schedule[0] is one of these).
CONSTANT, STEP, EXPONENTIAL, COSINE, LINEAR = range(5)


@njit(cache=True)
def learning_rate(schedule, step, epoch):
    """The lr of step `step` (counted from 1) in epoch `epoch` (counted from 0), as
    torch.optim.lr_scheduler sets it when stepped once an epoch (schedule[2] == 0) or once a
    step (1). schedule = [kind, lr, per step, warm-up, a, b, c]: warm-up counts epochs (or
    steps) k = 1..W at lr k / (W + 1), as LinearLR(start_factor=1/(W+1), total_iters=W) in a
    SequentialLR before the schedule, which then counts n from 0. The closed forms are PyTorch's
    (`_get_closed_form_lr`); its recursive ones differ from them only in rounding."""
    kind, lr, warmup = schedule[0], schedule[1], schedule[3]
    n = float(step - 1) if schedule[2] != 0.0 else float(epoch)
    if n < warmup:
        return lr * (n + 1.0) / (warmup + 1.0)
    n -= warmup
    a, b, c = schedule[4], schedule[5], schedule[6]
    if kind == STEP:  # StepLR(step_size=a, gamma=b)
        return lr * b ** (n // a)
    if kind == EXPONENTIAL:  # ExponentialLR(gamma=a)
        return lr * a ** n
    if kind == COSINE:  # CosineAnnealingLR(T_max=a, eta_min=b): after a it rises again, as PyTorch's
        return b + (lr - b) * (1.0 + math.cos(math.pi * n / a)) / 2.0
    if kind == LINEAR:  # LinearLR(start_factor=b, end_factor=c, total_iters=a)
        return lr * (b + (c - b) * min(n, a) / a)
    return lr


@njit(cache=True)
def clip_factor(total_norm, max_norm):
    """What torch.nn.utils.clip_grad_norm_ multiplies every gradient by, given their total
    (2-)norm: max_norm / (total_norm + 1e-6), at most 1."""
    return min(max_norm / (total_norm + 1e-6), 1.0)


@njit(cache=True)
def scale(values, factor):
    """values *= factor, in place."""
    for i in range(values.size):
        values[i] *= factor


@njit(cache=True)
def sgd(theta, grad, state, hyper):
    """PyTorch's SGD: weight decay added to the gradient, then momentum (buffer starts at 0),
    Nesterov's when hyper[3] is 1."""
    lr, momentum, decay, nesterov = hyper[0], hyper[1], hyper[2], hyper[3]
    for i in range(theta.size):
        g = grad[i] + decay * theta[i]
        if momentum != 0.0:
            state[i] = momentum * state[i] + g
            g = g + momentum * state[i] if nesterov != 0.0 else state[i]
        theta[i] -= lr * g


@njit(cache=True)
def adam(theta, grad, state, hyper, t):
    """PyTorch's Adam (L2 weight decay, bias correction) written the way it computes it, or its
    AdamW where hyper[5] is 1 (weight decay decoupled: theta *= 1 - lr decay first);
    state holds the first moments, then the second; t counts steps from 1."""
    lr, beta1, beta2, eps, decay = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    decoupled = hyper[5] != 0.0
    n = theta.size
    step_size = lr / (1.0 - beta1 ** t)
    root = math.sqrt(1.0 - beta2 ** t)
    for i in range(n):
        if decoupled:
            theta[i] *= 1.0 - lr * decay
            g = grad[i]
        else:
            g = grad[i] + decay * theta[i]
        state[i] += (1.0 - beta1) * (g - state[i])
        state[n + i] = state[n + i] * beta2 + (1.0 - beta2) * g * g
        theta[i] -= step_size * (state[i] / (math.sqrt(state[n + i]) / root + eps))


@njit(cache=True)
def rmsprop(theta, grad, state, hyper):
    """PyTorch's RMSprop: weight decay added to the gradient; state holds the mean squares, the
    mean gradients (centered, hyper[5] = 1) and the momentum buffers, each starting at 0."""
    lr, alpha, eps, decay, momentum, centered = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]
    n = theta.size
    for i in range(n):
        g = grad[i] + decay * theta[i]
        state[i] = state[i] * alpha + (1.0 - alpha) * g * g
        if centered != 0.0:
            state[n + i] += (1.0 - alpha) * (g - state[n + i])
            avg = math.sqrt(state[i] - state[n + i] * state[n + i]) + eps
        else:
            avg = math.sqrt(state[i]) + eps
        if momentum > 0.0:
            state[2 * n + i] = state[2 * n + i] * momentum + g / avg
            theta[i] -= lr * state[2 * n + i]
        else:
            theta[i] -= lr * (g / avg)


@njit(cache=True)
def adagrad(theta, grad, state, hyper, t):
    """PyTorch's Adagrad: weight decay added to the gradient, lr decayed to lr / (1 + (t-1)
    lr_decay); state holds the sums of squared gradients (starting at initial_accumulator_value,
    which the trainer fills in)."""
    lr, lr_decay, decay, eps = hyper[0], hyper[1], hyper[2], hyper[4]
    clr = lr / (1.0 + (t - 1) * lr_decay)
    for i in range(theta.size):
        g = grad[i] + decay * theta[i]
        state[i] += g * g
        theta[i] -= clr * (g / (math.sqrt(state[i]) + eps))


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
