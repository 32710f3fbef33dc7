"""The NumPy reference interpreter: runs any graph with each op's `ref`.

It defines what every op means, is the oracle the compiled kernels are tested
against, and is the fast path for one-shot work where compiling costs more.
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
