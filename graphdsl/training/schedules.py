"""The learning-rate schedules training offers, one entry each: what a spec may set, and the
vector the runtime's `T.learning_rate` reads them from (backend/runtime/step.py holds the
formulas, each PyTorch's lr_scheduler's)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REST = 0.0  # a `length` of 0: the rest of the run, after the warm-up
REQUIRED = object()  # a setting without a default (never a value a user can give)

# Settings every schedule takes: epochs (or steps) of linear warm-up, and what it counts in.
COMMON = {"warmup": 0.0, "per": "epoch"}
UNITS = ("epoch", "step")


@dataclass(frozen=True)
class Schedule:
    """A schedule: its name (upper-cased, the runtime's constant for it) and its own settings,
    with defaults, in the order `T.learning_rate` reads them (a, b, c)."""

    name: str
    settings: dict

    def defaults(self) -> dict:
        return {**self.settings, **COMMON}

    def problem(self, settings: dict) -> tuple | None:
        """(the setting, what is wrong with it) for the first setting PyTorch refuses, or None."""
        for key, value in settings.items():
            if value is REQUIRED:
                return key, f"`{self.name}` needs `{key}`, as in `{self.name}({key}={EXAMPLES[key]})`"
        whole = {"warmup": 0, "size": 1, "length": 0}
        for key, least in whole.items():
            if key in settings and (settings[key] != int(settings[key]) or settings[key] < least):
                return key, f"`{key}` must be a whole number of at least {least}, not {settings[key]:g}"
        per = settings["per"]
        if per not in UNITS:
            return "per", f"`per` is {' or '.join(UNITS)}, not `{f'{per:g}' if isinstance(per, float) else per}`"
        checks = {"gamma": (lambda v: v > 0, "above 0"), "min_lr": (lambda v: v >= 0, "at least 0"),
                  "start": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
                  "end": (lambda v: 0 <= v <= 1, "from 0 to 1")}
        for key, (good, wanted) in checks.items():
            if key in settings and not good(settings[key]):
                return key, f"`{key}` must be {wanted}, not {settings[key]:g}"
        return None


EXAMPLES = {"size": 10, "gamma": 0.95}

SCHEDULES = {s.name: s for s in (
    Schedule("constant", {}),
    Schedule("step", {"size": REQUIRED, "gamma": 0.1}),           # StepLR(step_size, gamma)
    Schedule("exponential", {"gamma": REQUIRED}),          # ExponentialLR(gamma)
    Schedule("cosine", {"length": REST, "min_lr": 0.0}),        # CosineAnnealingLR(T_max, eta_min)
    Schedule("linear", {"length": REST, "start": 1.0, "end": 0.0}),  # LinearLR(start, end, total_iters)
)}


def schedule_vector(name: str, settings: dict, lr: float, epochs: int, steps_per_epoch: int) -> np.ndarray:
    """What `T.learning_rate` reads: [kind, lr, per step, warm-up, a, b, c], for a run of `epochs`
    epochs of `steps_per_epoch` steps; a `length` of REST becomes the run's epochs (or steps)
    after the warm-up, at least 1."""
    from graphdsl.backend.runtime import step as T  # here: reading a spec needs no Numba

    schedule = SCHEDULES[name]
    per_step = settings["per"] == "step"
    own = [settings[k] for k in schedule.settings]
    if "length" in schedule.settings and settings["length"] == REST:
        total = epochs * steps_per_epoch if per_step else epochs
        own[0] = max(1.0, total - settings["warmup"])
    own += [0.0] * (3 - len(own))
    kind = getattr(T, name.upper())
    return np.array([kind, lr, float(per_step), settings["warmup"], *own], dtype=np.float64)
