"""What a spec says about training, checked: its options, its optimizer's settings, its data."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from graphdsl.errors import DataError
from graphdsl.frontend.expand import one_number
from graphdsl.training.optimizers import OPTIMIZERS

# Training options, their defaults, and what values they take.
OPTIONS = {
    "epochs": 1,          # passes over the examples; 0 trains nothing (to use loaded weights as they are)
    "batch": "all",       # examples a step, or all of them
    "reduce": "mean",     # how a step combines its examples' losses: mean or sum
    "shuffle": 1,         # 1: a seeded new order every epoch; 0: the data's order
    "seed": 0,            # for the shuffles and the validation split
    "validation": 0.0,    # the fraction of examples held out
    "every": 1,           # the trace keeps every k-th step
    "dtype": "float64",   # the loop's numbers; float32 halves memory traffic and runs single-precision BLAS
}
WORDS = {"batch": ("all",), "reduce": ("mean", "sum"), "dtype": ("float64", "float32")}

@dataclass(frozen=True)
class DataSource:
    """Where training examples come from: files, a built-in set, or arrays given inline."""

    files: tuple = ()
    builtin: str | None = None
    arrays: dict = field(default_factory=dict)

    def loadable(self):
        """What data.load takes: a built-in name, one path, several paths, or arrays by name."""
        if self.builtin or len(self.files) == 1:
            return self.builtin or self.files[0]
        return self.files or self.arrays


@dataclass(frozen=True)
class Training:
    loss: str
    optimizer: str
    settings: dict          # the optimizer's, defaults filled in
    options: dict           # OPTIONS, defaults filled in
    data: DataSource | None
    metric: tuple | None    # (Metric, prediction id, target id), or None
    frozen: tuple = ()      # params the spec keeps as they are (`freeze=[b1, b2]`): never updated
    span: object = None     # the `minimize` statement's, to tell what a spec asks before and after it

    def trained(self, params) -> list:
        """Of a spec's params, in order, those this training updates."""
        return [p for p in params if p not in self.frozen]

    def updated(self, changes: dict) -> "Training":
        """A copy with optimizer settings or options changed (from `--set` or Python)."""
        settings, options = dict(self.settings), dict(self.options)
        optimizer = changes.get("optimizer", self.optimizer)
        if optimizer not in OPTIMIZERS:
            raise DataError(f"unknown optimizer `{optimizer}`; the optimizers are {', '.join(OPTIMIZERS)}")
        if optimizer != self.optimizer:
            settings = {k: settings.get(k, v) for k, v in OPTIMIZERS[optimizer].settings.items()}
        for key, value in changes.items():
            if key == "optimizer":
                continue
            if key in settings:
                settings[key] = one_number(f"`{key}`, a setting of `{optimizer}`,", value)
            elif key in OPTIONS:
                options[key] = check_option(key, value)
            else:
                raise DataError(f"`{key}` is not a setting, an option of `minimize` or a setting of `{optimizer}`; "
                                f"those are {', '.join([*OPTIONS, *settings])}")
        return replace(self, optimizer=optimizer, settings=settings, options=options)


def check_option(key: str, value):
    """An option's value, checked; raises DataError with the reason."""
    words = WORDS.get(key, ())
    if isinstance(value, str):
        if value not in words:
            raise DataError(f"`{key}` must be {' or '.join(words) or 'a number'}, not `{value}`")
        return value
    value = one_number(f"`{key}`", value)
    if key == "validation":
        if not 0.0 <= value < 1.0:
            raise DataError(f"`validation` is a fraction from 0 up to (not including) 1, not {value:g}")
        return value
    least = 0 if key in ("seed", "shuffle", "epochs") else 1
    if value != int(value) or value < least:
        raise DataError(f"`{key}` must be a whole number of at least {least}, not {value:g}")
    if key == "shuffle" and value > 1:
        raise DataError("`shuffle` must be 0 or 1")
    return int(value)
