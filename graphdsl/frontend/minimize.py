"""The `minimize` and `data` statements: what a spec says about training, read and checked.

Lowering hands these statements what it found as plain values (a `Lowered`), the value of each
constant they hold included: `constants` lists those, and `read` reads the statements."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphdsl.frontend import ast
from graphdsl.errors import DataError, SpecError
from graphdsl.frontend.names import known
from graphdsl.training.config import OPTIONS, WORDS, DataSource, Training, check_option
from graphdsl.training.metrics import CLASSIFIERS, REGRESSORS
from graphdsl.training.optimizers import OPTIMIZERS
from graphdsl.training.schedules import SCHEDULES
from graphdsl.ir.shapes import fmt_shape

FREEZE = "freeze"  # the option naming params that training leaves as they are
SCHEDULE = "schedule"  # the option naming the learning-rate schedule: `schedule=cosine(warmup=5)`
PATHS = ("validation",)  # the options that may name a file
NAMED = ("monitor", "per")  # the settings any name given to is a word, right or wrong, never a value


@dataclass(frozen=True)
class Lowered:
    """What lowering found, as the training statements read it."""

    kinds: dict   # name -> input | target | param | const | node, for every name the spec defines
    shapes: dict  # name -> its value's shape
    calls: dict   # name -> (function, argument node ids), for each value a function call computed
    values: dict  # (what, expression) from `constants` -> the value, or the SpecError evaluating it raised

    def value(self, key: tuple) -> np.ndarray:
        """A constant's value; the error evaluating it is raised here, where reading reaches it, so
        that a spec's errors are found in the order `read` checks."""
        value = self.values[key]
        if isinstance(value, SpecError):
            raise value
        return value


def data_key(key: ast.Ident, val) -> tuple:
    """(what, expression) of the examples `data` gives for one input or target."""
    return f"the data for `{key.text}`", val


def option_key(key: ast.Ident, val) -> tuple | None:
    """(what, expression) of a `minimize` option, optimizer or schedule setting; None for a word
    (`batch=all`, `per=step`) or a path."""
    if isinstance(val, ast.Name) and (val.id in WORDS.get(key.text, ()) or key.text in NAMED):
        return None
    return None if isinstance(val, ast.Quoted) else (f"`{key.text}`", val)


def written_settings(val) -> tuple:
    """The (name, value) pairs a call writes (`schedule=cosine(length=50)`); none for a bare name."""
    return val.kwargs if isinstance(val, ast.Call) else ()


def constants(statements: list) -> list:
    """(what, expression) for each constant the `minimize` and `data` statements hold, for lowering
    to evaluate before `read`."""
    found = []
    for stmt in statements:
        if isinstance(stmt, ast.Data):
            found += [data_key(key, val) for key, val in stmt.arrays]
        elif isinstance(stmt, ast.Minimize):
            pairs = [*stmt.optimizer.kwargs, *(pair for key, val in stmt.options if key.text == SCHEDULE
                                               for pair in written_settings(val))]
            pairs += [(key, val) for key, val in stmt.options if key.text not in (FREEZE, SCHEDULE)]
            keys = (option_key(key, val) for key, val in pairs)
            found += [k for k in keys if k is not None]
    return found


def option_value(low: Lowered, key: ast.Ident, val):
    """A `minimize` option, optimizer or schedule setting written in the spec: a word, a path (a
    DataSource) or a constant number."""
    if isinstance(val, ast.Quoted):
        if key.text not in PATHS:
            raise SpecError(f"`{key.text}` takes a number, not a quoted path", val.span,
                            hint=f"of the options, {' and '.join(f'`{k}`' for k in PATHS)} may name a file")
        return DataSource(files=(val.text,))
    constant = option_key(key, val)
    if constant is None:
        return val.id
    value = low.value(constant)
    if value.shape != ():
        raise SpecError(f"`{key.text}` must be a number, not {fmt_shape(value.shape)}", val.span)
    return float(value)


def read_minimize(low: Lowered, stmt: ast.Minimize, data: DataSource | None, seed: int) -> Training:
    loss = known(stmt.loss, low.kinds)
    shape = low.shapes[loss]
    if shape != ():
        raise SpecError(f"the loss `{loss}` must be a scalar (one example's loss), but it is {fmt_shape(shape)}",
                        stmt.loss.span, hint=f"reduce it, e.g. `sum({loss})` or `mean({loss})`")
    name, settings = read_optimizer(low, stmt.optimizer)
    options, frozen, schedule = {**OPTIONS, "seed": seed}, (), ("constant", SCHEDULES["constant"].defaults())
    for key, val in ast.given_once(stmt.options):
        if key.text == FREEZE:
            frozen = frozen_params(low, val)
            continue
        if key.text == SCHEDULE:
            schedule = read_schedule(low, val)
            continue
        if key.text not in OPTIONS:
            raise SpecError(f"`minimize` has no option `{key.text}`", key.span,
                            hint=f"it takes {', '.join((*OPTIONS, FREEZE, SCHEDULE))}")
        try:
            options[key.text] = check_option(key.text, option_value(low, key, val))
        except DataError as err:
            raise SpecError(str(err), val.span) from None
    return Training(loss, name, settings, options, data, metric_of(low, loss), frozen, stmt.span, *schedule,
                    regression_of(low, loss))


def read_optimizer(low: Lowered, call: ast.Call) -> tuple:
    """(name, settings, defaults filled in) of the optimizer `minimize` uses."""
    name = call.func.text
    if name not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer `{name}`", call.func.span, hint=f"the optimizers are {', '.join(OPTIMIZERS)}")
    settings = read_settings(low, call, name, OPTIMIZERS[name].settings)
    refuse_problem(OPTIMIZERS[name].problem(settings), call)
    return name, settings


def read_schedule(low: Lowered, val) -> tuple:
    """(name, settings, defaults filled in) of `schedule=cosine` or `schedule=cosine(length=50)`."""
    func = val.func if isinstance(val, ast.Call) else val
    name = func.text if isinstance(func, ast.Ident) else getattr(func, "id", None)
    if name not in SCHEDULES:
        raise SpecError(f"unknown schedule `{name}`" if name else "`schedule` names a schedule, as in "
                        "`schedule=cosine` or `schedule=step(size=10, gamma=0.5)`", func.span,
                        hint=f"the schedules are {', '.join(SCHEDULES)}")
    settings = SCHEDULES[name].defaults()
    if isinstance(val, ast.Call):
        settings = read_settings(low, val, name, settings)
    refuse_problem(SCHEDULES[name].problem(settings), val)
    return name, settings


def read_settings(low: Lowered, call: ast.Call, name: str, defaults: dict) -> dict:
    """The settings a call gives an optimizer or a schedule, by name, over its defaults."""
    if call.args:
        raise SpecError(f"name each setting of `{name}`, as in `{name}({next(iter(defaults))}=...)`",
                        call.args[0].span)
    settings = dict(defaults)
    for key, val in ast.given_once(call.kwargs):
        if key.text not in settings:
            raise SpecError(f"`{name}` has no setting `{key.text}`", key.span, hint=f"it takes {', '.join(defaults)}")
        settings[key.text] = option_value(low, key, val)
    return settings


def refuse_problem(problem: tuple | None, where) -> None:
    """A setting PyTorch refuses (a problem from Optimizer.problem or Schedule.problem), raised at
    its value in the call, or at the whole call or name where it is not written."""
    if problem is None:
        return
    key, message = problem
    given = {k.text: v for k, v in written_settings(where)} if isinstance(where, ast.Call) else {}
    raise SpecError(message, given[key].span if key in given else where.span)


def frozen_params(low: Lowered, val) -> tuple:
    """`freeze=b` or `freeze=[b1, b2]`: params that training leaves as they are."""
    names = val.items if isinstance(val, ast.Stack) else (val,)
    frozen = []
    for name in names:
        if not isinstance(name, ast.Name):
            raise SpecError("`freeze` takes params by name, as in `freeze=[b1, b2]`", name.span)
        if low.kinds.get(name.id) != "param":
            kind = low.kinds.get(name.id)
            what = "not defined" if kind is None else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
            raise SpecError(f"`freeze` names params, but `{name.id}` is {what}", name.span,
                            hint="inputs, targets and constants are never trained anyway")
        frozen.append(name.id)
    return tuple(dict.fromkeys(frozen))


def metric_of(low: Lowered, loss: str) -> tuple | None:
    call = low.calls.get(loss)
    if call is None or call[0] not in CLASSIFIERS:
        return None
    return (CLASSIFIERS[call[0]], *call[1])


def regression_of(low: Lowered, loss: str) -> tuple | None:
    """(prediction id, target id) where the loss compares a prediction with a target of numbers."""
    call = low.calls.get(loss)
    return tuple(call[1]) if call is not None and call[0] in REGRESSORS else None


def read_data(low: Lowered, stmt: ast.Data) -> DataSource:
    if stmt.files:
        return DataSource(files=tuple(text for text, _ in stmt.files))
    if stmt.builtin is not None:
        return DataSource(builtin=stmt.builtin.text)
    arrays = {}
    for key, val in stmt.arrays:
        name = known(key, low.kinds)
        if low.kinds[name] not in ("input", "target"):
            raise SpecError(f"`data` gives examples for inputs and targets, but `{name}` is a {low.kinds[name]}",
                            key.span)
        arrays[name] = low.value(data_key(key, val))
    return DataSource(arrays=arrays)


def read(low: Lowered, statements: list, seed: int) -> Training | None:
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
