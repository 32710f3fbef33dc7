"""Validation: the examples training holds out (a seeded fraction of its data, or examples of
their own, from a file), and early stopping on a metric measured on them each epoch, with the
best epoch's weights kept."""
from __future__ import annotations

import math

import numpy as np

from graphdsl.errors import DataError
from graphdsl.training import data as datasets
from graphdsl.training.config import Training
from graphdsl.training.examples import fields, validation_source


def held_out(model, train: Training, examples: dict, leaves: list) -> tuple:
    """(training examples, validation examples in float64): a seeded fraction of `examples`
    (data.split), or all of them and the examples `validation` names. A path the spec gives is
    relative to its folder; one passed in, to the current directory (as for `data`)."""
    source, base = validation_source(model, train)
    if isinstance(source, (int, float)):
        fit, val = datasets.split(examples, source, train.options["seed"])
    else:
        # in the loop's dtype first, so that float32 training validates on float32 examples either way
        fit, val = examples, datasets.load(source, fields(model, leaves), base, np.dtype(train.options["dtype"]))
    return fit, {k: v.astype(np.float64, copy=False) for k, v in val.items()}


class EarlyStopping:
    """Keras' EarlyStopping(monitor, patience, restore_best_weights=True): after each epoch, a
    `monitor` lower than the best so far (higher, for an accuracy) is the new best and its weights
    are kept; `patience` epochs in a row without one stop training. At the end the model takes the
    best epoch's weights, whether training stopped early or ran out of epochs. patience 0: never
    stops, keeps nothing. `on_epoch(epoch, metrics)`, when given, is called after each epoch with
    each metric's value, and stops training by returning True (as a sweep's pruner does)."""

    def __init__(self, train: Training, validated: bool, on_epoch=None):
        self.monitor, self.patience = train.options["monitor"], train.options["patience"]
        self.on_epoch, self.halted = on_epoch, False
        if self.patience and self.monitor.startswith("val_") and not validated:
            given = train.options["validation"]
            why = (f"validation={given:g} holds out none of these examples" if isinstance(given, float) and given
                   else "no examples are held out for validation")
            raise DataError(f"early stopping (`patience`) watches `{self.monitor}`, but {why}: hold out more, as "
                            "validation=0.2 (a fraction) or validation=\"val.csv\"")
        if self.patience and self.monitor.endswith("accuracy") and not train.metric:
            raise DataError(f"early stopping watches `{self.monitor}`, but `{train.loss}` is not a classifier's "
                            "loss: monitor=val_loss")
        self.sign = -1.0 if self.monitor.endswith("accuracy") else 1.0  # lower is better, once signed
        self.best, self.best_epoch, self.wait, self.best_theta = math.inf, 0, 0, None

    @property
    def each_epoch(self) -> bool:
        """Whether metrics are wanted after every epoch, not only after a chunk of them."""
        return bool(self.patience) or self.on_epoch is not None

    @property
    def stopped(self) -> bool:
        return self.halted or (bool(self.patience) and self.wait >= self.patience)

    def epoch(self, epoch: int, columns: dict, theta: np.ndarray) -> None:
        """After epoch `epoch` (from 1), whose metrics are `columns` (one value each), with `theta`."""
        if self.on_epoch is not None:
            stop = self.on_epoch(epoch, {k: float(v[-1]) for k, v in columns.items()})
            if stop is not None and not isinstance(stop, (bool, np.bool_)):
                raise DataError(f"on_epoch returns True to stop training, or False or None to go on; it returned "
                                f"{stop!r}")
            self.halted = bool(stop)
        if not self.patience:
            return
        value = self.sign * float(columns[self.monitor][-1])
        if value < self.best:  # nan never is
            self.best, self.best_epoch, self.wait, self.best_theta = value, epoch, 0, theta.copy()
        else:
            self.wait += 1

    def saved(self) -> tuple:
        """(arrays, numbers) a checkpoint keeps, for `resume` to go on from."""
        if not self.patience or self.best_theta is None:
            return {}, {}
        return {"best": self.best_theta}, {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def resume(self, arrays: dict, meta: dict) -> None:
        if self.patience and "best" in arrays:
            self.best_theta = arrays["best"]
            self.best, self.best_epoch, self.wait = float(meta["best"]), int(meta["best_epoch"]), int(meta["wait"])
