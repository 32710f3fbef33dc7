"""The NumPy reference interpreter: runs any graph with each op's `ref`.

It defines what every op means, is the oracle the compiled kernels are tested
against, and is the fast path for one-shot work where compiling costs more. It also finds
where a value first goes non-finite, for the trainer's and the anomaly check's messages.
"""
from __future__ import annotations

import numpy as np

from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS


def evaluate(graph: Graph, leaves: dict, outputs) -> dict:
    """Values of `outputs` (node ids) given every leaf's value by id; only needed nodes run."""
    needed = graph.ancestors(outputs)
    values = {}
    with np.errstate(all="ignore"):  # non-finite values are reported by the caller, by node
        for node in graph.nodes:
            if node.id not in needed:
                continue
            if node.is_leaf:
                values[node.id] = leaves[node.id]
            else:
                values[node.id] = OPS[node.op].ref(*(values[a] for a in node.args), **node.kw)
    return {o: values[o] for o in outputs}


def first_non_finite(graph: Graph, leaves: dict, outputs):
    """The first node, in graph order, whose value is not finite among those `outputs` need, or None.
    Graph order is computation order, so this is where the trouble starts, not where it ends up."""
    needed = sorted(graph.ancestors(outputs))
    found = evaluate(graph, leaves, needed)
    return next((graph.nodes[i] for i in needed if not np.all(np.isfinite(found[i]))), None)


def describe(graph: Graph, node) -> str:
    """A node as messages name it: by its name, else by its op."""
    label = graph.name_of(node.id)
    return f"`{label}`" if label else f"a `{node.op}` value"
