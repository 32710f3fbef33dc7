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
from graphdsl.training.metrics import CLASSIFIERS
from graphdsl.training.optimizers import OPTIMIZERS
from graphdsl.ir.shapes import fmt_shape

FREEZE = "freeze"  # the option naming params that training leaves as they are


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
    """(what, expression) of a `minimize` option or optimizer setting; None for a word (`batch=all`)."""
    if isinstance(val, ast.Name) and val.id in WORDS.get(key.text, ()):
        return None
    return f"`{key.text}`", val


def constants(statements: list) -> list:
    """(what, expression) for each constant the `minimize` and `data` statements hold, for lowering
    to evaluate before `read`."""
    found = []
    for stmt in statements:
        if isinstance(stmt, ast.Data):
            found += [data_key(key, val) for key, val in stmt.arrays]
        elif isinstance(stmt, ast.Minimize):
            keys = (option_key(key, val) for key, val in (*stmt.optimizer.kwargs, *stmt.options)
                    if key.text != FREEZE)
            found += [k for k in keys if k is not None]
    return found


def option_value(low: Lowered, key: ast.Ident, val):
    """A `minimize` option or optimizer setting written in the spec: a word or a constant number."""
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
    call = stmt.optimizer
    name = call.func.text
    if name not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer `{name}`", call.func.span, hint=f"the optimizers are {', '.join(OPTIMIZERS)}")
    if call.args:
        raise SpecError(f"name each setting of `{name}`, as in `{name}(lr=0.1)`", call.args[0].span)
    settings = dict(OPTIMIZERS[name].settings)
    for key, val in ast.given_once(call.kwargs):
        if key.text not in settings:
            raise SpecError(f"`{name}` has no setting `{key.text}`", key.span,
                            hint=f"it takes {', '.join(OPTIMIZERS[name].settings)}")
        settings[key.text] = option_value(low, key, val)
    options, frozen = {**OPTIONS, "seed": seed}, ()
    for key, val in ast.given_once(stmt.options):
        if key.text == FREEZE:
            frozen = frozen_params(low, val)
            continue
        if key.text not in OPTIONS:
            raise SpecError(f"`minimize` has no option `{key.text}`", key.span,
                            hint=f"it takes {', '.join((*OPTIONS, FREEZE))}")
        try:
            options[key.text] = check_option(key.text, option_value(low, key, val))
        except DataError as err:
            raise SpecError(str(err), val.span) from None
    return Training(loss, name, settings, options, data, metric_of(low, loss), frozen, stmt.span)


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
