"""The step trace's layout: which columns of a row hold what. The generated loop writes its rows
in it (backend/train_loop.py) and the trainer names its columns (records.TraceWriter, History)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from graphdsl.backend.train_loop import slots
from graphdsl.training.records import flat_names, grad_names


@dataclass(frozen=True)
class TraceLayout:
    """A trace row: the step, the epoch, the loss, then the entries of each traced value, of every
    param (`theta`) and of every gradient (`grad`), each value flat in C order."""

    traced: tuple   # the traced values' shapes
    params: tuple   # the params' shapes, in theta order

    STEP, EPOCH, LOSS = 0, 1, 2  # whole numbers, then values from LOSS on

    def traced_slots(self) -> list:
        """(start, stop) of each traced value's columns."""
        return [(self.LOSS + 1 + a, self.LOSS + 1 + b) for a, b in slots(self.traced)]

    @property
    def params_slot(self) -> tuple:
        start = self.LOSS + 1 + sum(math.prod(s) for s in self.traced)
        return start, start + sum(math.prod(s) for s in self.params)

    @property
    def grads_slot(self) -> tuple:
        start, stop = self.params_slot
        return stop, 2 * stop - start

    @property
    def width(self) -> int:
        return self.grads_slot[1]

    def columns(self, loss: str, traced: list, params: list) -> list:
        """Names of the columns after step and epoch, given the names of the loss, the traced
        values and the params: a value's entries as records.flat_names, a gradient's as grad_names."""
        return ([loss] + [c for t, s in zip(traced, self.traced) for c in flat_names(t, s)]
                + [c for p, s in zip(params, self.params) for c in flat_names(p, s)]
                + [c for p, s in zip(params, self.params) for c in grad_names(loss, p, s)])
