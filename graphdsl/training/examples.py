"""A model's examples for its data leaves (from data passed in, the spec's `data`, or the spec's
own values), and the order training visits them in, epoch by epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graphdsl.errors import DataError
from graphdsl.training import data as datasets
from graphdsl.training.config import DataSource, Training


def fields(model, leaves: list) -> list:
    """The data.Field of each leaf (a spec node id): what one example holds for it."""
    g = model.spec.graph
    return [datasets.Field(g.name_of(d), g.nodes[d].op, g.nodes[d].shape, model.classes.get(d)) for d in leaves]


def examples(model, train: Training, data, leaves: list) -> dict:
    """Every example for the data leaves: from `data` (what data.load reads), the spec's `data`, or
    the spec's own values. The spec's paths are relative to its folder; a path passed in, to the
    current directory (as `--data` and `predict` take it)."""
    spec = model.spec
    from_spec = data is None
    data = data if data is not None else train.data
    wanted = fields(model, leaves)
    if isinstance(data, DataSource):
        data = data.loadable()
    if data is None:  # no data anywhere: the spec's values are the one example
        missing = [f.name for f in wanted if spec.graph.names[f.name] not in spec.graph.values]
        if missing:
            raise DataError(f"`{missing[0]}` has no value and the spec gives no data: add "
                            f"`data \"examples.csv\"` (or `data {missing[0]} = [...]`), or pass --data")
        data = {f.name: spec.graph.values[spec.graph.names[f.name]][None] for f in wanted}
    base = Path(spec.filename).parent if from_spec and Path(spec.filename).exists() else None
    return datasets.load(data, wanted, base, np.dtype(train.options["dtype"]))


def orders(n: int, seed: int, shuffle: bool, first: int, count: int) -> np.ndarray:
    """Example order of epochs first .. first+count-1, epoch first+i in row i % rows: one row, the
    data's order, when not shuffled. A shuffled epoch e's order depends only on (seed, e), so a
    resumed run sees the same orders as an uninterrupted one."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)[None]
    return np.stack([np.random.default_rng([seed, e]).permutation(n) for e in range(first, first + count)])
