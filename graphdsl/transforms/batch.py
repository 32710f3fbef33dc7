"""A minibatch is a bigger graph: rewrite a one-example graph to run B examples at once.

The spec is written for one example. For a minibatch, every value that depends
on the data gains a leading axis of B examples, params stay as they are, and
each op is rewritten by its rule below, so `W x` becomes one matrix product
`X W'` that BLAS runs for the whole batch. The result is an ordinary graph, so
the usual autodiff, interpreter and code generator serve it unchanged.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from graphdsl.errors import SpecError
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import fmt_shape
from graphdsl.ir.ops import OPS
from graphdsl.ir.sym import Sym

PER_ROW = {"softmax", "log_softmax", "logsumexp", "pick", "onehot"}  # along the last axis already


class Unbatchable(Exception):
    """An op that has no minibatch rule for these operands."""


def flat(x: Sym, batched: bool) -> Sym:
    """x with each example's entries in one row (or one vector if not batched)."""
    shape = x.shape[1:] if batched else x.shape
    n = int(np.prod(shape))
    want = (x.shape[0], n) if batched else (n,)
    return x if x.shape == want else x.op("reshape", shape=want)


def aligned(x: Sym, rank: int, batched: bool) -> Sym:
    """A batched operand with size-1 axes after the batch axis, so it broadcasts like its example."""
    if not batched or len(x.shape) - 1 == rank:
        return x
    return x.op("reshape", shape=x.shape[:1] + (1,) * (rank - len(x.shape) + 1) + x.shape[1:])


def matmul(a: Sym, b: Sym, ba: bool, bb: bool) -> Sym:
    ra, rb = len(a.shape) - ba, len(b.shape) - bb
    if ba and bb:
        if ra == rb == 1:
            return (a * b).op("sum", axis=1)
        raise Unbatchable("a product of two per-example matrices")
    if bb:
        if rb != 1:
            raise Unbatchable("a product with a per-example matrix on the right")
        return b @ a.T   # W x for each row x: X W'
    if ra == 1:
        return a @ b                                        # x' W for each row x: X W
    rows = a.op("reshape", shape=(a.shape[0] * a.shape[1], a.shape[2]))
    out = rows @ b                                          # A b for each matrix A: stack them
    return out.op("reshape", shape=(a.shape[0], a.shape[1]) + b.shape[1:])


def placed(items: list, flags: list, widths: list, total: int) -> Sym:
    """The items' rows laid side by side: each goes through a 0/1 matrix placing it in its columns."""
    out, at = None, 0
    for x, batched, n in zip(items, flags, widths):
        place = np.zeros((n, total))
        place[np.arange(n), at + np.arange(n)] = 1.0
        part = flat(x, batched) @ x.g_array(place)
        out = part if out is None else out + part
        at += n
    return out


def rule(node, args: list, flags: list, batch: int) -> Sym:
    op, kw = node.op, node.kw
    if OPS[op].elementwise:
        rank = len(node.shape)
        first, *rest = (aligned(a, rank, f) for a, f in zip(args, flags))
        return first.op(op, *rest)
    if op in PER_ROW:
        if op == "pick" and not all(flags):
            raise Unbatchable("a class index that is the same for every example")
        return args[0].op(op, *args[1:], **kw)
    if op == "matmul":
        return matmul(args[0], args[1], flags[0], flags[1])
    if op == "transpose":
        if len(node.shape) > 1:
            raise Unbatchable("a transposed per-example matrix")
        return args[0]
    if op == "outer":
        u, v = args
        u = u.op("reshape", shape=u.shape + (1,))
        v = v.op("reshape", shape=v.shape[:1] + (1,) + v.shape[1:]) if flags[1] else v
        return u * v
    if op in ("sum", "max"):
        axis = kw.get("axis")
        if axis is None:
            return flat(args[0], True).op(op, axis=1)
        if op == "max" and len(node.shape) > 0:
            raise Unbatchable("max along an axis of a per-example matrix")
        return args[0].op(op, axis=axis + 1)
    if op == "reshape":
        return args[0].op("reshape", shape=(batch,) + kw["shape"])
    if op == "index":
        x = args[0]
        n = int(np.prod(x.shape[1:]))
        read = np.arange(n).reshape(x.shape[1:])[kw["idx"]]   # the entries this index reads
        pick = np.zeros((n, read.size))
        pick[np.ravel(read), np.arange(read.size)] = 1.0
        out = flat(x, True) @ x.g_array(pick)
        return out if out.shape == (batch,) + node.shape else out.op("reshape", shape=(batch,) + node.shape)
    if op in ("stack", "concat"):
        widths = [int(np.prod(a.shape[f:])) for a, f in zip(args, flags)]
        out = placed(args, flags, widths, sum(widths))
        return out if len(node.shape) == 1 else out.op("reshape", shape=(batch,) + node.shape)
    raise Unbatchable(f"`{op}`")


def batched(graph: Graph, data: list, outputs: list, batch: int) -> tuple:
    """(new graph, old id -> new id) with the `data` leaves holding `batch` examples each.

    Every leaf and the nodes the outputs need are rewritten; a node that depends on no data is
    copied as is.
    """
    g = Graph()
    new, flags = {}, {}
    needed = graph.ancestors(outputs)
    for node in graph.nodes:
        if node.id not in needed and not node.is_leaf:
            continue
        if node.is_leaf:
            shape = ((batch,) if node.id in data else ()) + node.shape
            new[node.id] = g.leaf(node.op, graph.values.get(node.id), shape, node.span)
            flags[node.id] = node.id in data
            continue
        arg_flags = [flags[a] for a in node.args]
        if not any(arg_flags):
            new[node.id] = g.add(node.op, [new[a] for a in node.args], node.kw, node.span)
            flags[node.id] = False
            continue
        try:
            out = rule(node, [Sym(g, new[a]) for a in node.args], arg_flags, batch)
        except Unbatchable as why:
            raise SpecError(f"this cannot be trained in minibatches yet: {why} (one example is "
                            f"{fmt_shape(node.shape)})", node.span,
                            hint="train one example a step with `batch=1`") from None
        assert g.nodes[out.id].shape == (batch,) + node.shape, (node, g.nodes[out.id].shape)
        g.nodes[out.id] = replace(g.nodes[out.id], span=node.span)  # errors point at the spec's text
        new[node.id], flags[node.id] = out.id, True
    g.names = {name: new[i] for name, i in graph.names.items() if i in new}
    return g, new
