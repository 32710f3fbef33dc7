"""A model's examples for its data leaves (from data passed in, the spec's `data`, or the spec's
own values), and the order training visits them in, epoch by epoch."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphdsl.errors import DataError
from graphdsl.training import data as datasets
from graphdsl.training.config import DataSource, Training


def fields(model, leaves: list) -> list:
    """The data.Field of each leaf (a spec node id): what one example holds for it."""
    g = model.spec.graph
    return [datasets.Field(g.name_of(d), g.nodes[d].op, g.nodes[d].shape, model.classes.get(d)) for d in leaves]


def source(model, train: Training | None, data) -> tuple:
    """(what data.load is to read, the folder its paths are relative to, or None): `data` (what
    data.load reads), else the spec's `data`, else None. The spec's paths are relative to its folder; a
    path passed in, to the current directory (as `--data` and `predict` take it)."""
    spec = model.spec
    base = Path(spec.filename).parent if data is None and Path(spec.filename).exists() else None
    data = data if data is not None else train.data if train is not None else None
    return (data.loadable() if isinstance(data, DataSource) else data), base


def validation_source(model, train: Training) -> tuple:
    """(where validation examples come from, the folder its paths are relative to, or None), as
    source() gives it for the data: a path in the spec is relative to the spec's folder; one passed in
    (`--set validation=...`, `train(validation=...)`), to the current directory."""
    found = train.options["validation"]
    if not isinstance(found, DataSource):
        return found, None
    return found.loadable(), Path(model.spec.filename).parent if Path(model.spec.filename).exists() else None


def files_of(found, base) -> list:
    """The files a source of examples (as data.load reads it) names, relative to `base`."""
    if isinstance(found, (str, os.PathLike)) and found not in datasets.BUILTIN:
        found = [found]
    paths = [p for p in found if isinstance(p, (str, os.PathLike))] if isinstance(found, (list, tuple)) else []
    return [Path(base, path) if base is not None else Path(path) for path in paths]


def data_files(model, data) -> list:
    """The files training on `data` (as examples() takes it) reads examples from, or predict() does:
    a run must not write over them."""
    return files_of(*source(model, model.spec.training, data))


def validation_files(model, train: Training | None) -> list:
    """The files training reads its validation examples from (none for a fraction of the data)."""
    return files_of(*validation_source(model, train)) if train is not None else []


def run_inputs(model, train: Training | None, data) -> list:
    """(what, path) for every file a run reads: the spec, its training data and validation examples."""
    spec = [("the spec", model.spec.filename)] if os.path.isfile(model.spec.filename) else []
    return [*spec, *(("a data file", p) for p in files_of(*source(model, train, data))),
            *(("the validation file", p) for p in validation_files(model, train))]


def examples(model, train: Training, data, leaves: list) -> dict:
    """Every example for the data leaves: from `data` or the spec's `data` (`source`), or the spec's
    own values."""
    spec = model.spec
    wanted = fields(model, leaves)
    data, base = source(model, train, data)
    if data is None and not wanted:  # a function of the params alone, minimised: no examples at all
        return {}
    if data is None:  # no data anywhere: the spec's values are the one example
        missing = [f.name for f in wanted if spec.graph.names[f.name] not in spec.graph.values]
        if missing:
            raise DataError(f"`{missing[0]}` has no value and the spec gives no data: add "
                            f"`data \"examples.csv\"` (or `data {missing[0]} = [...]`), or pass --data")
        data = {f.name: spec.graph.values[spec.graph.names[f.name]][None] for f in wanted}
    return datasets.load(data, wanted, base, np.dtype(train.options["dtype"]))


def orders(n: int, seed: int, shuffle: bool, first: int, count: int) -> np.ndarray:
    """Example order of epochs first .. first+count-1, epoch first+i in row i % rows: one row, the
    data's order, when not shuffled. A shuffled epoch e's order depends only on (seed, e), so a
    resumed run sees the same orders as an uninterrupted one."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)[None]
    return np.stack([np.random.default_rng([seed, e]).permutation(n) for e in range(first, first + count)])
