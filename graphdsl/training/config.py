"""What a spec says about training, checked: its options, its optimizer's settings, its data."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from graphdsl.errors import DataError
from graphdsl.frontend.expand import one_number
from graphdsl.training.optimizers import OPTIMIZERS
from graphdsl.training.schedules import SCHEDULES

# Training options, their defaults, and what values they take.
OPTIONS = {
    "epochs": 1,          # passes over the examples; 0 trains nothing (to use loaded weights as they are)
    "batch": "all",       # examples a step, or all of them
    "reduce": "mean",     # how a step combines its examples' losses: mean or sum
    "shuffle": 1,         # 1: a seeded new order every epoch; 0: the data's order
    "seed": 0,            # for the shuffles and the validation split
    "validation": 0.0,    # the fraction of examples held out, or where validation examples come from
    "every": 1,           # the trace keeps every k-th step
    "dtype": "float64",   # the loop's numbers; float32 halves memory traffic and runs single-precision BLAS
    "clip": 0.0,          # the most the gradients' total norm may be (clip_grad_norm_); 0: no clipping
    "patience": 0,        # epochs `monitor` may go without improving before training stops; 0: never
    "monitor": "val_loss",  # what early stopping watches, epoch by epoch
}
WORDS = {"batch": ("all",), "reduce": ("mean", "sum"), "dtype": ("float64", "float32"),
         "monitor": ("val_loss", "val_accuracy", "loss", "accuracy")}
NUMBER_OR_WORD = ("batch",)  # the other options in WORDS take their words only

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
    schedule: str = "constant"  # the learning-rate schedule
    schedule_settings: dict = field(default_factory=SCHEDULES["constant"].defaults)  # its, defaults filled in
    regression: tuple | None = None  # (prediction id, target id) of a loss comparing numbers (mse, half_se)

    def described(self) -> str:
        """The optimizer as a spec writes it, each setting given but flags that are off, and the
        schedule where there is one, with the settings it changes: `sgd(lr=0.1, momentum=0,
        weight_decay=0), schedule=cosine(warmup=2)`."""
        flags = OPTIMIZERS[self.optimizer].flags
        text = f"{self.optimizer}({written((k, v) for k, v in self.settings.items() if k not in flags or v)})"
        defaults = SCHEDULES[self.schedule].defaults()
        changed = [(k, v) for k, v in self.schedule_settings.items() if v != defaults[k]]
        if self.schedule == "constant" and not changed:
            return text
        return f"{text}, schedule={self.schedule}({written(changed)})"

    def trained(self, params) -> list:
        """Of a spec's params, in order, those this training updates."""
        return [p for p in params if p not in self.frozen]

    def updated(self, changes: dict) -> "Training":
        """A copy with optimizer or schedule settings or options changed (from `--set` or Python)."""
        optimizer = changes.get("optimizer", self.optimizer)
        if optimizer not in OPTIMIZERS:
            raise DataError(f"unknown optimizer `{optimizer}`; the optimizers are {', '.join(OPTIMIZERS)}")
        schedule = changes.get("schedule", self.schedule)
        if schedule not in SCHEDULES:
            raise DataError(f"unknown schedule `{schedule}`; the schedules are {', '.join(SCHEDULES)}")
        settings, options = kept(self.settings, OPTIMIZERS[optimizer].settings), dict(self.options)
        timing = kept(self.schedule_settings, SCHEDULES[schedule].defaults())
        for key, value in changes.items():
            if key in ("optimizer", "schedule"):
                continue
            if key in settings:
                settings[key] = one_number(f"`{key}`, a setting of `{optimizer}`,", value)
            elif key in timing:
                timing[key] = value if key == "per" else one_number(f"`{key}`, a setting of `{schedule}`,", value)
            elif key in OPTIONS:
                options[key] = check_option(key, value)
            else:
                raise DataError(f"`{key}` is not a setting, an option of `minimize` or a setting of `{optimizer}` "
                                f"or `{schedule}`; those are {', '.join([*OPTIONS, *settings, *timing])}")
        for problem in (OPTIMIZERS[optimizer].problem(settings), SCHEDULES[schedule].problem(timing)):
            if problem:
                raise DataError(problem[1])
        return replace(self, optimizer=optimizer, settings=settings, options=options, schedule=schedule,
                       schedule_settings=timing)


def written(settings) -> str:
    """(name, value) pairs as a spec writes them: `lr=0.1, per=step`."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings)


def kept(old: dict, defaults: dict) -> dict:
    """Settings for an optimizer or a schedule: `defaults`, with the values of `old` that it shares."""
    return {k: old.get(k, v) for k, v in defaults.items()}


def is_number(value) -> bool:
    """A number, NumPy's included, or one given as a one-entry list (`--set validation=0.2`)."""
    if isinstance(value, (tuple, list, np.ndarray)):
        return len(value) == 1 and is_number(np.ravel(value)[0])
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def check_option(key: str, value):
    """An option's value, checked; raises DataError with the reason."""
    words = WORDS.get(key, ())
    if key == "validation" and not is_number(value):
        return value  # examples, as data.load reads them: a path (or several), a built-in set, arrays by name
    if isinstance(value, str) or (words and key not in NUMBER_OR_WORD):
        if value not in words:
            shown = f"{value:g}" if isinstance(value, float) else value
            raise DataError(f"`{key}` must be {' or '.join(words) or 'a number'}, not `{shown}`")
        return value
    value = one_number(f"`{key}`", value)
    if key == "validation":
        if not 0.0 <= value < 1.0:
            raise DataError(f"`validation` is a fraction from 0 up to (not including) 1, not {value:g}")
        return value
    if key == "clip":
        if value < 0:
            raise DataError(f"`clip` is the largest gradient norm allowed (0 for none), not {value:g}")
        return value
    least = 0 if key in ("seed", "shuffle", "epochs", "patience") else 1
    if value != int(value) or value < least:
        raise DataError(f"`{key}` must be a whole number of at least {least}, not {value:g}")
    if value >= 2**53:  # whole numbers beyond are not all floats, nor do their counts fit the loop's integers
        raise DataError(f"`{key}` must be below 2^53, not {value:g}")
    if key == "shuffle" and value > 1:
        raise DataError("`shuffle` must be 0 or 1")
    return int(value)
