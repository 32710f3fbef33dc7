"""What a spec says about training: its `minimize` and `data` statements, checked."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from graphdsl.frontend import ast
from graphdsl.errors import DataError, SpecError
from graphdsl.frontend.expand import one_number
from graphdsl.ir.shapes import fmt_shape

# Each optimizer's settings and defaults; the update rules live in the generated loop.
OPTIMIZERS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
}

# Training options, their defaults, and what values they take.
OPTIONS = {
    "epochs": 1,          # passes over the examples
    "batch": "all",       # examples a step, or all of them
    "reduce": "mean",     # how a step combines its examples' losses: mean or sum
    "shuffle": 1,         # 1: a seeded new order every epoch; 0: the data's order
    "seed": 0,            # for the shuffles and the validation split
    "validation": 0.0,    # the fraction of examples held out
    "every": 1,           # the trace keeps every k-th step
    "dtype": "float64",   # the loop's numbers; float32 halves memory traffic and runs single-precision BLAS
}
WORDS = {"batch": ("all",), "reduce": ("mean", "sum"), "dtype": ("float64", "float32")}

# Losses whose first argument predicts the target: accuracy can be measured for them.
CLASSIFIERS = {"softmax_ce": "argmax", "bce": "half", "bce_logits": "sign"}


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
    metric: tuple | None    # (rule, prediction name/id, target id), or None

    def updated(self, changes: dict) -> "Training":
        """A copy with optimizer settings or options changed (from `--set` or Python)."""
        settings, options = dict(self.settings), dict(self.options)
        optimizer = changes.get("optimizer", self.optimizer)
        if optimizer not in OPTIMIZERS:
            raise DataError(f"unknown optimizer `{optimizer}`; the optimizers are {', '.join(OPTIMIZERS)}")
        if optimizer != self.optimizer:
            settings = {k: settings.get(k, v) for k, v in OPTIMIZERS[optimizer].items()}
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
    least = 0 if key in ("seed", "shuffle") else 1
    if value != int(value) or value < least:
        raise DataError(f"`{key}` must be a whole number of at least {least}, not {value:g}")
    if key == "shuffle" and value > 1:
        raise DataError("`shuffle` must be 0 or 1")
    return int(value)


def option_value(low, key: ast.Ident, val):
    """A `minimize` option or optimizer setting written in the spec: a word or a constant number."""
    if isinstance(val, ast.Name) and val.id in WORDS.get(key.text, ()):
        return val.id
    value = low.constant(val, f"`{key.text}`")
    if value.shape != ():
        raise SpecError(f"`{key.text}` must be a number, not {fmt_shape(value.shape)}", val.span)
    return float(value)


def read_minimize(low, stmt: ast.Minimize, data: DataSource | None, seed: int) -> Training:
    loss = low.known(stmt.loss)
    shape = low.graph.nodes[low.graph.names[loss]].shape
    if shape != ():
        raise SpecError(f"the loss `{loss}` must be a scalar (one example's loss), but it is {fmt_shape(shape)}",
                        stmt.loss.span, hint=f"reduce it, e.g. `sum({loss})` or `mean({loss})`")
    call = stmt.optimizer
    name = call.func.text
    if name not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer `{name}`", call.func.span, hint=f"the optimizers are {', '.join(OPTIMIZERS)}")
    if call.args:
        raise SpecError(f"name each setting of `{name}`, as in `{name}(lr=0.1)`", call.args[0].span)
    settings = dict(OPTIMIZERS[name])
    for key, val in ast.given_once(call.kwargs):
        if key.text not in settings:
            raise SpecError(f"`{name}` has no setting `{key.text}`", key.span,
                            hint=f"it takes {', '.join(OPTIMIZERS[name])}")
        settings[key.text] = option_value(low, key, val)
    options = {**OPTIONS, "seed": seed}
    for key, val in ast.given_once(stmt.options):
        if key.text not in OPTIONS:
            raise SpecError(f"`minimize` has no option `{key.text}`", key.span, hint=f"it takes {', '.join(OPTIONS)}")
        try:
            options[key.text] = check_option(key.text, option_value(low, key, val))
        except DataError as err:
            raise SpecError(str(err), val.span) from None
    return Training(loss, name, settings, options, data, metric_of(low, loss))


def metric_of(low, loss: str) -> tuple | None:
    call = low.calls.get(low.graph.names[loss])
    if call is None or call[0] not in CLASSIFIERS:
        return None
    return (CLASSIFIERS[call[0]], *call[1])


def read_data(low, stmt: ast.Data) -> DataSource:
    if stmt.files:
        return DataSource(files=tuple(text for text, _ in stmt.files))
    if stmt.builtin is not None:
        return DataSource(builtin=stmt.builtin.text)
    arrays = {}
    for key, val in stmt.arrays:
        name = low.known(key)
        if low.kinds[name] not in ("input", "target"):
            raise SpecError(f"`data` gives examples for inputs and targets, but `{name}` is a {low.kinds[name]}",
                            key.span)
        arrays[name] = low.constant(val, f"the data for `{name}`")
    return DataSource(arrays=arrays)


def read(low, statements: list, seed: int) -> Training | None:
    """The spec's training, if it has a `minimize` statement; at most one of each statement."""
    found = {}
    for stmt in statements:
        kind = type(stmt)
        if kind in (ast.Minimize, ast.Data):
            if kind in found:
                word = "minimize" if kind is ast.Minimize else "data"
                raise SpecError(f"a spec has one `{word}` statement; this is the second", stmt.span,
                                hint=f"the first is on line {found[kind].span.line}")
            found[kind] = stmt
    data = read_data(low, found[ast.Data]) if ast.Data in found else None
    if ast.Minimize not in found:
        if data is not None:
            raise SpecError("`data` is given but nothing is trained", found[ast.Data].span,
                            hint="add `minimize L using sgd(lr=0.1)`")
        return None
    return read_minimize(low, found[ast.Minimize], data, seed)
