"""The optimizers training offers, one entry each: what a spec may set, and what the training
loop's code generation and the trainer need to know about the update."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Optimizer:
    """An optimizer. Its update is the runtime's `T.<name>(theta, grad, state, hyper[, t])`
    (backend/runtime/step.py), which reads the settings from `hyper` in the order `settings`
    lists them, and keeps `state` entries for each parameter entry."""

    name: str
    settings: dict              # each setting and its default, in `hyper` order
    state: int                  # optimizer state, in multiples of the parameter count
    counts_steps: bool          # the update takes the step count `t` (Adam's bias correction)
    plain_when_zero: tuple | None = None  # settings that, all zero, leave theta -= lr * grad

    def hyper(self, settings: dict) -> list:
        """The settings' values, in the order the update reads them."""
        return [settings[k] for k in self.settings]

    def is_plain(self, settings: dict) -> bool:
        """Whether the update is theta -= lr * grad (lr is hyper[0]), which the loop can do inside
        the matrix product that makes a gradient (train_loop.sgd_products)."""
        return self.plain_when_zero is not None and all(settings[k] == 0 for k in self.plain_when_zero)


OPTIMIZERS = {o.name: o for o in (
    Optimizer("sgd", {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}, state=1, counts_steps=False,
              plain_when_zero=("momentum", "weight_decay")),
    Optimizer("adam", {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}, state=2,
              counts_steps=True),
)}
