"""Reverse mode: appends backward nodes to the same graph, using each op's vjp rule.

Cotangents of a value used twice are summed; a cotangent that broadcasting
made larger than its operand is summed back to the operand's shape.
"""
from __future__ import annotations

from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.sym import Sym


def descendants(graph: Graph, roots) -> set:
    found = set(roots)
    for node in graph.nodes:
        if any(a in found for a in node.args):
            found.add(node.id)
    return found


def zeros(graph: Graph, shape: tuple) -> int:
    zero = graph.add("scalar", attrs={"value": 0.0})
    return zero if shape == () else graph.add("expand", [zero], {"shape": shape, "axis": None})


def backward(graph: Graph, output: int, wrt, seed: int | None = None) -> dict:
    """Add nodes computing d(output)/d(node) for each node in `wrt`; returns node -> gradient node.

    `seed` is the cotangent of the output (a node of its shape); by default 1.0,
    which needs a scalar output. A Jacobian feeds one basis vector at a time.
    """
    on_path = descendants(graph, wrt) & graph.ancestors([output])
    if seed is None:
        seed = graph.add("scalar", attrs={"value": 1.0})
    adjoint = {output: seed}
    for nid in range(output, -1, -1):
        node = graph.nodes[nid]
        if nid not in adjoint or node.is_leaf:
            continue
        rule = OPS[node.op].vjp
        cotangents = rule(Sym(graph, adjoint[nid]), Sym(graph, nid),
                          *(Sym(graph, a) for a in node.args), **node.kw)
        for arg, cot in zip(node.args, cotangents):
            if cot is None or arg not in on_path:
                continue
            cid = cot.id
            shape = graph.nodes[arg].shape
            if graph.nodes[cid].shape != shape:
                cid = graph.add("unbroadcast", [cid], {"shape": shape})
            adjoint[arg] = graph.add("add", [adjoint[arg], cid]) if arg in adjoint else cid
    return {w: adjoint[w] if w in adjoint else zeros(graph, graph.nodes[w].shape) for w in wrt}
