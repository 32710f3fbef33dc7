"""Spec values for many examples at once, in the interpreter: validation metrics, the metrics at
the trained weights, predict() and evaluate()."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from graphdsl import pipeline
from graphdsl.backend.runtime import step as T
from graphdsl.errors import DataError
from graphdsl.training import data as datasets
from graphdsl.training.config import Training
from graphdsl.training.examples import examples, fields
from graphdsl.training.metrics import (CLASSIFIERS, REGRESSORS, classes, classifier_scores, confusion, decided,
                                       regressor_scores)
from graphdsl.training.plan import data_leaves
from graphdsl.training.records import flat_names
from graphdsl.transforms.interpret import evaluate


CHUNK = 4096  # examples the interpreter evaluates at once


def evaluate_all(model, nodes: list, arrays: dict, params: dict | None = None) -> dict:
    """Values of spec nodes (ids) for every example in `arrays` (name -> one row an example), with the
    interpreter on one minibatch graph of them all, at `params` (by default the model's)."""
    spec = model.spec
    data = [spec.graph.names[name] for name in arrays]
    n = len(next(iter(arrays.values()))) if arrays else 1  # no data leaves: the spec's values, one example
    if n > CHUNK:  # every value of 60,000 examples at once would take gigabytes: CHUNK at a time
        return in_chunks(model, nodes, arrays, params, n)
    if n == 1:  # one example, the spec's own graph: it may hold any values
        return one_example(model, nodes, arrays, params)
    g, new = pipeline.batched_graph(spec, data, nodes, len(next(iter(arrays.values()))))
    values = {leaf.id: g.values.get(leaf.id) for leaf in g.leaves()}
    values.update({new[d]: arrays[name] for d, name in zip(data, arrays)})
    values.update({new[spec.graph.names[p]]: v for p, v in (model.params if params is None else params).items()})
    with np.errstate(all="ignore"):
        found = evaluate(g, values, [new[x] for x in nodes])
    return {x: found[new[x]] for x in nodes}


def in_chunks(model, nodes: list, arrays: dict, params: dict | None, n: int) -> dict:
    """evaluate_all, CHUNK examples at a time; the last chunk is padded with its first example, so
    one minibatch graph (of CHUNK) serves every chunk."""
    parts = []
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        take = np.concatenate([np.arange(start, stop), np.full(CHUNK - (stop - start), start)])
        found = evaluate_all(model, nodes, {k: np.asarray(v)[take] for k, v in arrays.items()}, params)
        parts.append({x: np.asarray(v)[:stop - start] for x, v in found.items()})
    return {x: np.concatenate([part[x] for part in parts]) for x in nodes}


def one_example(model, nodes: list, arrays: dict, params: dict | None) -> dict:
    """evaluate_all for a single example, on the spec's graph itself: a spec whose example is its
    own values (a homework's matrix of examples as columns) need not be batchable."""
    g = model.spec.graph
    values = {leaf.id: g.values.get(leaf.id) for leaf in g.leaves()}
    values.update({g.names[name]: np.asarray(rows[0], dtype=np.float64) for name, rows in arrays.items()})
    values.update({g.names[p]: v for p, v in (model.params if params is None else params).items()})
    with np.errstate(all="ignore"):
        found = evaluate(g, values, nodes)
    return {x: np.asarray(found[x])[None] for x in nodes}


# examples up to which accuracy is counted in Python (about 30 ms): a homework's few would wait
# half a second for the compiled counter to load
COUNTED_IN_PYTHON = 10_000


def evaluate_examples(model, train: Training, arrays: dict, full: bool = False, params: dict | None = None) -> dict:
    """Mean loss (and accuracy) over examples; `full`: also precision, recall, F1 and the confusion
    matrix of a classifier, or the mean absolute error and R^2 of a regressor."""
    g = model.spec.graph
    loss = g.names[train.loss]
    regression = train.regression if full and train.regression and g.name_of(train.regression[1]) in arrays else None
    compared = train.metric[1:] if train.metric else regression  # (prediction, target) the loss compares
    found = evaluate_all(model, [loss, *compared[:1]] if compared else [loss], arrays, params)
    out = {"loss": float(np.mean(found[loss]))}
    if not compared:
        return out
    scores = found[compared[0]]
    want = np.asarray(arrays[g.name_of(compared[1])], dtype=np.float64)
    if regression:
        return {**out, **regressor_scores(np.asarray(scores, dtype=np.float64), want)}
    ones = np.ones(len(found[loss]))
    out["accuracy"] = hits(train.metric[0], scores, want, ones, len(ones) > COUNTED_IN_PYTHON) / len(ones)
    if full:
        matrix = confusion(*classes(train.metric[0], scores, want))
        out.update(classifier_scores(matrix), confusion=matrix)
    return out


class Scores(Mapping):
    """The metrics at the trained weights (evaluate_examples, full), on the training examples and,
    named `val_...`, the validation examples: measured when first read, so a run that never looks
    pays nothing for them."""

    def __init__(self, model, train: Training, params: dict, examples: dict):
        self.model, self.train, self.examples = model, train, examples  # {prefix: arrays}
        self.params = {k: np.array(v) for k, v in params.items()}  # as trained, whatever changes them later
        self.found = None

    def measured(self) -> dict:
        if self.found is None:
            self.found = {f"{prefix}{k}": v for prefix, arrays in self.examples.items() if arrays
                          for k, v in evaluate_examples(self.model, self.train, arrays, True, self.params).items()}
        return self.found

    def __getitem__(self, key):
        return self.measured()[key]

    def __iter__(self):
        return iter(self.measured())

    def __len__(self) -> int:
        return len(self.measured())

    def __repr__(self) -> str:
        return repr(self.measured())


def hits(metric, scores, target, weights, compiled: bool = True) -> float:
    """Examples (weight > 0) the metric reads as their target's class, as the training loop counts
    them; `compiled=False` runs the counting in Python, for work too small to compile for."""
    count = T.hits_argmax if metric.argmax else T.hits_threshold
    count = count if compiled else count.py_func
    return count(scores, target, weights) if metric.argmax else count(scores, target, weights, metric.cut)


def prediction_of(train: Training | None) -> int:
    """The node a loss written with softmax_ce or a pairwise loss function (mse, bce, ...) compares
    with its target: what predict() gives unless told which node."""
    compared = train and (train.metric[1:] if train.metric else train.regression)
    if not compared:
        why = ("the loss is not written as one of " + ", ".join([*CLASSIFIERS, *REGRESSORS]) if train
               else "the spec says no `minimize L using ...`")
        raise DataError(f"{why}, so say which node to predict: predict(data, node=\"y_hat\"), or --node y_hat")
    return compared[0]


def as_data(model, data, leaves: list):
    """`data` as datasets.load reads it. A NumPy array is the examples of a spec's one input; a
    pandas DataFrame holds a column a flat entry, named as predictions are written (`x[0]`, `x[1]`,
    ...; `k` for a scalar, or for a target vector's class labels)."""
    inputs = model.spec.names_of("input")
    if isinstance(data, np.ndarray) and len(inputs) != 1:
        raise DataError(f"an array holds one input's examples, but this spec has {len(inputs)} inputs "
                        f"({', '.join(inputs)}): pass a dict of arrays by name")
    if isinstance(data, np.ndarray):
        return {inputs[0]: data}
    if not (hasattr(data, "columns") and hasattr(data, "to_numpy")):  # a DataFrame, without importing pandas
        return data
    g, arrays = model.spec.graph, {}
    for leaf in leaves:
        name, shape = g.name_of(leaf), g.nodes[leaf].shape
        columns = [name] if name in data.columns else flat_names(name, shape)
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise DataError(f"the DataFrame has no column `{missing[0]}`: name the columns of `{name}` "
                            f"{', '.join(columns[:3])}{', ...' if len(columns) > 3 else ''}")
        try:
            values = data[columns].to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as err:
            raise DataError(f"the DataFrame's columns of `{name}` are not all numbers ({err})") from None
        arrays[name] = values[:, 0] if columns == [name] else values.reshape((len(values), *shape))
    return arrays


def prediction_examples(model, data, node: str | None = None) -> tuple[int, dict]:
    """(the node predict() gives, by id; the examples of the inputs it needs, from `data` as_data
    reads it). Read before anything else, so that a bad source is found before a run trains. A
    built-in set also holds targets: they are read as training reads them, and left out."""
    train = model.spec.training
    g = model.spec.graph
    target = pipeline.node_id(model.spec, node) if node else prediction_of(train)
    needed = g.ancestors([target])
    targets = [t for t in model.spec.names_of("target") if g.names[t] in needed and g.names[t] not in g.values]
    if targets:
        raise DataError(f"`{g.name_of(target)}` needs the target `{targets[0]}`, which a prediction does not "
                        "know: ask for a node computed from the inputs alone (what the loss compares with the "
                        "target), or evaluate the loss with `graphdsl evaluate` / model.evaluate()")
    inputs = [i for i in (g.names[n] for n in model.spec.names_of("input")) if i in needed]
    trained = data_leaves(model.spec, g.names[train.loss]) if train is not None else inputs
    read = [fields(model, inputs), fields(model, inputs + [t for t in trained if t not in inputs])]
    if isinstance(data, str) and data in datasets.BUILTIN:
        read = read[1:]
    try:
        examples = datasets.load(as_data(model, data, inputs), read[0], None)
    except DataError as alone:  # a file of the inputs alone, or laid out as training reads it (targets left out)
        if len(read) == 1 or isinstance(data, (dict, np.ndarray)) or hasattr(data, "columns"):
            raise
        try:
            examples = datasets.load(data, read[1], None)
        except DataError as laid_out:
            raise DataError(f"read as the inputs alone: {alone}\nread as training reads it "
                            f"({', '.join(f.name for f in read[1])}): {laid_out}") from None
    return target, {g.name_of(i): examples[g.name_of(i)] for i in inputs}


def predict(model, data, node: str | None = None, as_classes: bool = False, params: dict | None = None) -> np.ndarray:
    """`node` (by default what the loss compares with the target, prediction_of) for every example
    in `data` (prediction_examples), at `params`; `as_classes`: the class a classifier's prediction
    says instead."""
    train = model.spec.training
    target, examples = prediction_examples(model, data, node)
    if as_classes and (train is None or train.metric is None or target != train.metric[1]):
        raise DataError("classes=True needs a loss written as " + ", ".join(CLASSIFIERS)
                        + ", and its prediction (leave out node)")
    values = np.array(evaluate_all(model, [target], examples, params)[target])  # never a view of the caller's data
    return decided(train.metric[0], values) if as_classes else values


def evaluate_data(model, data=None, params: dict | None = None) -> dict:
    """The loss and metrics (evaluate_examples, full) over every example of `data` (as train() or
    predict() takes it; by default the spec's data), at `params`."""
    train = model.spec.training
    if train is None:
        raise DataError("evaluating needs the loss: add `minimize L using sgd(lr=0.1)` to the spec")
    leaves = data_leaves(model.spec, model.spec.graph.names[train.loss])
    return evaluate_examples(model, train, examples(model, train, as_data(model, data, leaves), leaves), True, params)
