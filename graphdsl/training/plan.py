"""The training step's plan: its graph (forward, then backward to every param, for one example or
a minibatch) and what the generated loop feeds each of its leaves."""
from __future__ import annotations

from dataclasses import dataclass, field

from graphdsl.errors import SpecError
from graphdsl.ir.graph import Graph
from graphdsl.ir.sym import Sym
from graphdsl.training.config import Training
from graphdsl.training.optimizers import OPTIMIZERS, Optimizer
from graphdsl.training.trace import TraceLayout
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.batch import batched


@dataclass
class LoopPlan:
    """What the generated loop needs to know about the step graph."""

    graph: Graph
    data: list          # leaves fed with examples, in field order
    consts: list        # the other non-param leaves, passed once
    params: list        # param leaves, in `theta` order
    weights: int | None  # per-example loss weights (minibatch graphs only)
    outputs: list       # loss, one gradient per param, then the prediction, traced nodes, traced gradients
    metric: tuple | None  # (Metric, output index, target leaf)
    traced: list
    first_traced: int
    deltas: list        # the traced gradients, in outputs
    optimizer: Optimizer
    trace: TraceLayout
    loops: dict = field(default_factory=dict, repr=False, compare=False)  # compiled, by (dtype, fuse)


def data_leaves(spec, loss: int) -> list:
    """Inputs and targets the loss depends on: the values each example supplies."""
    needed = spec.graph.ancestors([loss])
    return [spec.graph.names[n] for n in spec.names_of("input", "target") if spec.graph.names[n] in needed]


def make_plan(spec, train: Training, data: list, batch: int | None, traced: list, deltas: list) -> LoopPlan:
    """The step graph (forward, then backward to every param) for one example or `batch` of them;
    `data` are the leaves examples feed, `traced` the nodes whose values a trace records and
    `deltas` those whose gradients it does (one example a step only)."""
    g0 = spec.graph
    loss, params = g0.names[train.loss], [g0.names[n] for n in train.trained(spec.names_of("param"))]
    pred = [train.metric[1]] if train.metric else []
    if batch is None:
        g = g0.copy()
        new, weights, total = {n.id: n.id for n in g0.nodes}, None, loss
    else:
        try:
            g, new = batched(g0, data, [loss, *pred, *traced], batch)
        except SpecError as err:
            raise err.located(spec.filename, spec.text) from None
        weights = g.leaf("input", None, (batch,))
        total = (Sym(g, new[loss]) * Sym(g, weights)).op("sum").id
    grads = backward(g, total, [new[p] for p in params] + [new[d] for d in deltas])
    outputs = [total, *(grads[new[p]] for p in params), *(new[p] for p in pred), *(new[t] for t in traced),
               *(grads[new[d]] for d in deltas)]
    metric = (train.metric[0], len(params) + 1, new[train.metric[2]]) if train.metric else None
    fed = {*(new[d] for d in data), *(new[p] for p in params), weights}
    layout = TraceLayout(tuple(g0.nodes[t].shape for t in traced), tuple(g0.nodes[p].shape for p in params),
                         tuple(g0.nodes[d].shape for d in deltas))
    return LoopPlan(g, [new[d] for d in data], [n.id for n in g.leaves() if n.id not in fed],
                    [new[p] for p in params], weights, outputs, metric,
                    [new[t] for t in traced], 1 + len(params) + len(pred), outputs[len(outputs) - len(deltas):],
                    OPTIMIZERS[train.optimizer], layout)
