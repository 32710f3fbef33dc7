"""Minibatch rules the op families share, and the helpers their own rules build on.

A rule `batch(node, args, flags, size)` rewrites one node of a one-example graph for `size`
examples at once: `args` are its operands, already rewritten (Syms, so rules read like maths),
and `flags` says which of them hold examples (a leading axis of `size`); at least one does. It
returns the node's value for every example (a Sym with that leading axis), or raises
Unbatchable. (Syms are only used here, not imported: ir.sym reads the graph, which reads the
registry.)
"""
from __future__ import annotations

import numpy as np


class Unbatchable(Exception):
    """An op that has no minibatch rule for these operands."""


def unbatchable(node, args: list, flags: list, size: int):
    """The rule of an op with no minibatch form yet."""
    raise Unbatchable(f"`{node.op}`")


def flat(x, batched: bool):
    """x with each example's entries in one row (or one vector if not batched)."""
    shape = x.shape[1:] if batched else x.shape
    n = int(np.prod(shape))
    want = (x.shape[0], n) if batched else (n,)
    return x if x.shape == want else x.op("reshape", shape=want)


def aligned(x, rank: int, batched: bool):
    """A batched operand with size-1 axes after the batch axis, so it broadcasts like its example."""
    if not batched or len(x.shape) - 1 == rank:
        return x
    return x.op("reshape", shape=x.shape[:1] + (1,) * (rank - len(x.shape) + 1) + x.shape[1:])


def placed(items: list, flags: list, widths: list, total: int):
    """The items' rows laid side by side: each goes through a 0/1 matrix placing it in its columns."""
    out, at = None, 0
    for x, batched, n in zip(items, flags, widths):
        place = np.zeros((n, total))
        place[np.arange(n), at + np.arange(n)] = 1.0
        part = flat(x, batched) @ x.g_array(place)
        out = part if out is None else out + part
        at += n
    return out


def elementwise(node, args: list, flags: list, size: int):
    """The op itself, on operands aligned to broadcast as each example's did."""
    rank = len(node.shape)
    first, *rest = (aligned(a, rank, f) for a, f in zip(args, flags))
    return first.op(node.op, *rest)


def per_row(node, args: list, flags: list, size: int):
    """The op itself: it works row by row along the last axis, so the batch axis is one more
    row axis. Every operand must hold examples; a second one gives each row's class index."""
    if not all(flags):
        raise Unbatchable("a class index that is the same for every example")
    return args[0].op(node.op, *args[1:], **node.kw)
