"""The `minimize` and `data` statements: what a spec says about training, read and checked."""
from __future__ import annotations

from graphdsl.frontend import ast
from graphdsl.errors import DataError, SpecError
from graphdsl.training.config import OPTIONS, WORDS, DataSource, Training, check_option
from graphdsl.training.metrics import CLASSIFIERS
from graphdsl.training.optimizers import OPTIMIZERS
from graphdsl.ir.shapes import fmt_shape


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
