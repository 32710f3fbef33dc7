"""Spec values for many examples at once, in the interpreter: validation metrics and predict()."""
from __future__ import annotations

import numpy as np

from graphdsl import pipeline
from graphdsl.backend.runtime import step as T
from graphdsl.errors import DataError
from graphdsl.training import data as datasets
from graphdsl.training.config import Training
from graphdsl.training.examples import fields
from graphdsl.transforms.interpret import evaluate


def evaluate_all(model, nodes: list, arrays: dict) -> dict:
    """Values of spec nodes (ids) for every example in `arrays` (name -> one row an example), with the
    interpreter on one minibatch graph of them all."""
    spec = model.spec
    data = [spec.graph.names[name] for name in arrays]
    g, new = pipeline.batched_graph(spec, data, nodes, len(next(iter(arrays.values()))))
    values = {leaf.id: g.values.get(leaf.id) for leaf in g.leaves()}
    values.update({new[d]: arrays[name] for d, name in zip(data, arrays)})
    values.update({new[spec.graph.names[p]]: v for p, v in model.params.items()})
    with np.errstate(all="ignore"):
        found = evaluate(g, values, [new[x] for x in nodes])
    return {x: found[new[x]] for x in nodes}


def evaluate_examples(model, train: Training, arrays: dict) -> dict:
    """Mean loss (and accuracy) over examples."""
    loss = model.spec.graph.names[train.loss]
    pred = [train.metric[1]] if train.metric else []
    found = evaluate_all(model, [loss, *pred], arrays)
    out = {"loss": float(np.mean(found[loss]))}
    if train.metric:
        metric, p, target = train.metric
        ones = np.ones(len(found[loss]))
        want = np.asarray(arrays[model.spec.graph.name_of(target)], dtype=np.float64)
        out["accuracy"] = hits(metric, found[p], want, ones) / len(ones)
    return out


def hits(metric, scores, target, weights, compiled: bool = True) -> float:
    """Examples (weight > 0) the metric reads as their target's class, as the training loop counts
    them; `compiled=False` runs the counting in Python, for work too small to compile for."""
    count = T.hits_argmax if metric.argmax else T.hits_threshold
    count = count if compiled else count.py_func
    return count(scores, target, weights) if metric.argmax else count(scores, target, weights, metric.cut)


def predict(model, data, node: str | None = None) -> np.ndarray:
    """`node` (by default what the loss compares with the target) for every example in `data`."""
    train = model.spec.training
    if node is None and (train is None or train.metric is None):
        raise DataError("say which node to predict, e.g. predict(data, node=\"y_hat\")")
    target = pipeline.node_id(model.spec, node) if node else train.metric[1]
    needed = model.spec.graph.ancestors([target])
    inputs = [i for i in (model.spec.graph.names[n] for n in model.spec.names_of("input")) if i in needed]
    examples = datasets.load(data, fields(model, inputs), None)
    return np.array(evaluate_all(model, [target], examples)[target])  # never a view of the caller's data
