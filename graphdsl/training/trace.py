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
    param (`theta`), of every gradient (`grad`) and of the loss's gradient with respect to each
    other value a `grad` statement names (the deltas of backpropagation), each value flat in C order."""

    traced: tuple   # the traced values' shapes
    params: tuple   # the params' shapes, in theta order
    deltas: tuple = ()  # the shapes of the other values whose gradients are traced

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

    def deltas_slots(self) -> list:
        """(start, stop) of each traced gradient's columns."""
        return [(self.grads_slot[1] + a, self.grads_slot[1] + b) for a, b in slots(self.deltas)]

    @property
    def width(self) -> int:
        return self.grads_slot[1] + sum(math.prod(s) for s in self.deltas)

    def columns(self, loss: str, traced: list, params: list, deltas: list) -> list:
        """Names of the columns after step and epoch, given the names of the loss, the traced
        values, the params and the deltas: a value's entries as records.flat_names, a gradient's as
        grad_names."""
        return ([loss] + [c for t, s in zip(traced, self.traced) for c in flat_names(t, s)]
                + [c for p, s in zip(params, self.params) for c in flat_names(p, s)]
                + [c for p, s in zip([*params, *deltas], self.params + self.deltas) for c in grad_names(loss, p, s)])

    def updates(self, rows, unflatten, final: dict) -> list:
        """Each step of a short run, from its trace rows: (step, {param: (before, gradient, after)}).
        `unflatten` turns the params' columns into arrays by name; `final` holds them after the last."""
        (a, b), (c, d) = self.params_slot, self.grads_slot
        after = [unflatten(r[a:b]) for r in rows[1:]] + [final]
        steps = []
        for row, new in zip(rows, after):
            old, grad = unflatten(row[a:b]), unflatten(row[c:d])
            steps.append((int(row[self.STEP]), {n: (old[n], grad[n], new[n]) for n in new}))
        return steps
