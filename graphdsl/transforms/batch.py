"""A minibatch is a bigger graph: rewrite a one-example graph to run B examples at once.

The spec is written for one example. For a minibatch, every value that depends
on the data gains a leading axis of B examples, params stay as they are, and
each op is rewritten by the minibatch rule of its registry entry (`batch`), so `W x`
becomes one matrix product `X W'` that BLAS runs for the whole batch. The result is an
ordinary graph, so the usual autodiff, interpreter and code generator serve it unchanged.
"""
from __future__ import annotations

from dataclasses import replace

from graphdsl.errors import SpecError
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import fmt_shape
from graphdsl.ir.ops import OPS
from graphdsl.ir.ops.batching import Unbatchable
from graphdsl.ir.sym import Sym


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
            out = OPS[node.op].batch(node, [Sym(g, new[a]) for a in node.args], arg_flags, batch)
        except Unbatchable as why:
            raise SpecError(f"this cannot be trained in minibatches yet: {why} (one example is "
                            f"{fmt_shape(node.shape)})", node.span,
                            hint="train one example a step with `batch=1`") from None
        assert g.nodes[out.id].shape == (batch,) + node.shape, (node, g.nodes[out.id].shape)
        g.nodes[out.id] = replace(g.nodes[out.id], span=node.span)  # errors point at the spec's text
        new[node.id], flags[node.id] = out.id, True
    g.names = {name: new[i] for name, i in graph.names.items() if i in new}
    return g, new
