"""The optimizers training offers, one entry each: what a spec may set, and what the training
loop's code generation and the trainer need to know about the update."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Optimizer:
    """An optimizer. Its update is the runtime's `T.<update>(theta, grad, state, hyper[, t])`
    (backend/runtime/step.py), which reads the settings from `hyper` in the order `settings`
    lists them, then `fixed`, and keeps `state` entries for each parameter entry."""

    name: str
    settings: dict              # each setting and its default, in `hyper` order
    state: int                  # optimizer state, in multiples of the parameter count
    counts_steps: bool          # the update takes the step count `t` (Adam's bias correction)
    plain_when_zero: tuple | None = None  # settings that, all zero, leave theta -= lr * grad
    update: str = ""            # the runtime function, if not the optimizer's name
    fixed: tuple = ()           # values after the settings in `hyper`, telling one update's variants apart
    flags: tuple = ()           # settings that are 0 or 1
    state_from: str | None = None  # the setting the state starts at (else 0)

    @property
    def function(self) -> str:
        """The name of its update in the runtime (`T.<function>`)."""
        return self.update or self.name

    def hyper(self, settings: dict) -> list:
        """The settings' values, in the order the update reads them, then the fixed values."""
        return [settings[k] for k in self.settings] + list(self.fixed)

    def is_plain(self, settings: dict) -> bool:
        """Whether the update is theta -= lr * grad (lr is hyper[0]), which the loop can do inside
        the matrix product that makes a gradient (train_loop.sgd_products)."""
        return self.plain_when_zero is not None and all(settings[k] == 0 for k in self.plain_when_zero)

    def problem(self, settings: dict) -> tuple | None:
        """(the setting, what is wrong with it) for the first setting PyTorch refuses, or None."""
        for key in self.flags:
            if settings[key] not in (0, 1):
                return key, f"`{key}` is 0 or 1, not {settings[key]:g}"
        for key in ("lr", "eps", "weight_decay", "momentum", "lr_decay", "initial_accumulator_value"):
            if settings.get(key, 0) < 0:
                return key, f"`{key}` must be at least 0, not {settings[key]:g}"
        for key in ("beta1", "beta2", "alpha"):
            if key in settings and not 0 <= settings[key] < 1:
                return key, f"`{key}` must be at least 0 and below 1, not {settings[key]:g}"
        if settings.get("nesterov") and settings["momentum"] == 0:
            return "nesterov", "Nesterov momentum needs a `momentum` above 0"
        return None

ADAM = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

# Defaults are PyTorch's, but for SGD's lr (PyTorch's is 0.001 since 2.2; graphdsl's has been 0.01).
OPTIMIZERS = {o.name: o for o in (
    Optimizer("sgd", {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "nesterov": 0.0}, state=1,
              counts_steps=False, plain_when_zero=("momentum", "weight_decay"), flags=("nesterov",)),
    Optimizer("adam", {**ADAM, "weight_decay": 0.0}, state=2, counts_steps=True, fixed=(0.0,)),
    Optimizer("adamw", {**ADAM, "weight_decay": 0.01}, state=2, counts_steps=True, update="adam", fixed=(1.0,)),
    Optimizer("rmsprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                          "centered": 0.0}, state=3, counts_steps=False, flags=("centered",)),
    Optimizer("adagrad", {"lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0,
                          "eps": 1e-10}, state=1, counts_steps=True, state_from="initial_accumulator_value"),
)}
