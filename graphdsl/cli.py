"""The `graphdsl` command: run (and train), predict, evaluate, check, summary, draw, explain, show-ir,
show-code, sweep and lsp.

Exit codes: 0 ok, 1 a check failed, 2 a usage or spec error, 3 a bug in graphdsl, 130 Ctrl-C.
"""
from __future__ import annotations

import errno
import math
import os
import sys

import click
import numpy as np

from graphdsl.errors import DataError, Span, SpecError, WriteError
from graphdsl.tools.formats import FORMATS

spec_path = click.argument("spec", type=click.Path(exists=True, dir_okay=False))
engine_opt = click.option("--engine", type=click.Choice(["numpy", "numba"]), default="numpy", show_default=True,
                          help="numpy interprets at once; numba compiles kernels (cached) first")
format_opt = click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                          help="text to read; markdown or latex for a solution sheet; json for scripts (docs/output.md)")
# float64 carries 17 significant digits: more would print noise
precision_opt = click.option("--precision", default=6, show_default=True, type=click.IntRange(1, 17),
                             help="significant digits printed")
sets_opt = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                        help="change a setting, an option of `minimize` or an optimizer setting (repeatable)")


def read_spec(path: str) -> str:
    """The text of a spec file; a file that cannot be read, or is not UTF-8, is a SpecError."""
    from graphdsl.files import read_regular

    try:
        data = read_regular(path)
        return data.decode("utf-8-sig")  # -sig: drop the byte-order mark some editors write
    except UnicodeDecodeError as err:
        before = data[:err.start].decode("utf-8-sig", errors="replace")  # the text up to the byte, to locate it
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
        text = data.decode("utf-8-sig", errors="replace")
        raise SpecError(f"the file is not UTF-8 text: byte {err.start} (0x{data[err.start]:02x}) cannot be read",
                        Span(line, col, line, col + 1), filename=path, text=text,
                        hint="save the file as UTF-8; a Latin-1 or Windows-1252 editor writes accents and "
                             "symbols this way") from None
    except OSError as err:
        raise SpecError(f"cannot read the file: {err.strerror}", filename=path) from None


def open_spec(path: str, engine: str = "numpy", settings: dict | None = None):
    from graphdsl.model import Model

    return Model(checked(path, settings), engine)


def checked(path: str, settings: dict | None = None):
    """The checked Spec in a file, its warnings printed on stderr, located like errors."""
    from graphdsl import pipeline

    spec = pipeline.check(read_spec(path), path, settings=settings)
    for found in spec.warnings:
        click.echo(str(found), err=True)
    return spec


# What writing to stdout raises (no file name: our own files' errors name theirs) when its reader
# has gone (`| head`), or the disk or file it goes to is full.
STREAM_ERRORS = (errno.EPIPE, errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)


class Cli(click.Group):
    """Turns SpecError and DataError into a message on stderr and exit code 2, a file or stdout that
    could not be written mid-run into exit code 1, and Ctrl-C into exit code 130; anything else is
    a bug, reported in one line unless GRAPHDSL_DEBUG is set."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WriteError as err:
            click.echo(str(err), err=True)
            sys.exit(1)
        except OSError as err:
            if err.filename is not None or err.errno not in STREAM_ERRORS:
                internal_error(err)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit does not flush into it again
            if err.errno != errno.EPIPE:  # a reader that left needs no message
                click.echo(f"graphdsl: cannot write the output: {err.strerror}", err=True)
            sys.exit(1)
        except (SpecError, DataError) as err:
            click.echo(str(err), err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C outside the training loop, which reports its own stop
            click.echo("graphdsl: interrupted (Ctrl-C) before it finished", err=True)
            sys.exit(130)
        except Exception as err:
            internal_error(err)


def internal_error(err: Exception):
    """Exit 3 for a bug in graphdsl, in one line (GRAPHDSL_DEBUG=1: the traceback)."""
    if os.environ.get("GRAPHDSL_DEBUG"):
        raise err
    click.echo(f"graphdsl: internal error ({type(err).__name__}: {err}). This is a bug in graphdsl; "
               "please report it with your spec. GRAPHDSL_DEBUG=1 shows the details.", err=True)
    sys.exit(3)


@click.group(cls=Cli)
@click.version_option(package_name="graphdsl")
def main():
    """graphdsl: differentiable computation graphs written like maths, compiled to Numba."""


def requested(model, requests, precision: int, fmt: str = "text") -> str:
    """The tables `requests` ask for (show, grad, jacobian), at the model's params as they are now."""
    from graphdsl.tools.formats import between
    from graphdsl.tools.report import table

    # the forward pass only where a request reads a value that is not a param: the params of a
    # spec whose inputs live in its data show without them
    reads = {n for r in requests if r.kind != "grad" for n in (r.names if r.kind == "show" else r.names[1:])}
    values = model.forward() if reads - set(model.params) else dict(model.params)
    blocks = []
    for r in requests:
        if r.kind == "show":
            blocks.append(table("values", [(n, values[n]) for n in r.names], precision, fmt))
        elif r.kind == "grad":
            grads = model.grad(r.loss)
            blocks.append(table(f"gradients of {r.loss}", [(f"d{r.loss}/d{n}", grads[n]) for n in r.names], precision,
                                fmt))
        else:
            of, wrt = r.names
            point = values[wrt] if r.at is None else r.at
            jac = model.jacobian(of, wrt, **({} if r.at is None else {wrt: r.at}))
            blocks.append(table(f"jacobian of {of} with respect to {wrt}",
                                [(wrt, point), (f"d{of}/d{wrt}", jac)], precision, fmt))
    return between(fmt).join(blocks)


def in_order(model) -> tuple:
    """The spec's requests written before its `minimize` statement, and those after it: the first
    are answered at the given params, the others at the trained ones."""
    train = model.spec.training
    line = train.span.line if train is not None else math.inf
    requests = model.spec.requests
    return [r for r in requests if r.span.line < line], [r for r in requests if r.span.line >= line]


PRINTED_PARAMS = 100  # more trained numbers than this are not printed


def trained(model, history, precision: int, fmt: str = "text", saved: str | None = None) -> str:
    """What training did: the loss and metrics at the weights it ended with (not an epoch's mean,
    taken as the weights moved), then each step of a short run (every param before it, its
    gradient and after it), or else the params it ended with."""
    from graphdsl.tools.formats import between, note
    from graphdsl.tools.report import table

    epochs = len(history.epoch)
    blocks = [table(f"after {epochs} epoch{'s' if epochs != 1 else ''} of training, at the trained weights",
                    list(history.metrics.items()), precision, fmt)]
    count = sum(v.size for v in model.params.values())
    if count > PRINTED_PARAMS:
        kept = f"{saved} keeps them" if saved else "--save FILE.npz keeps them"
        return blocks[0] + between(fmt) + note(f"{count} trained params ({kept})", fmt)
    train = model.spec.training
    step = train.described()
    for number, params in history.updates or []:
        if not params:  # every param frozen: the steps changed nothing
            break
        rows = [row for n, (old, grad, new) in params.items()
                for row in ((n, old), (f"d{train.loss}/d{n}", grad), (f"{n} after", new))]
        blocks.append(table(f"step {number} of {step}: each param, its gradient, and the param after", rows,
                            precision, fmt))
    if not history.updates:
        blocks.append(table("trained params", list(model.params.items()), precision, fmt))
    frozen = ", ".join(f"`{n}`" for n in train.frozen)
    return between(fmt).join(blocks + ([note(f"frozen, so left as they were: {frozen}", fmt)] if frozen else []))


def predictions(model, data, node: str | None = None) -> str:
    """CSV, one row an example: the predicted values (of `node`, by default what the loss compares
    with its target), then the class for a classifier: one an example, or one an entry for a cut."""
    from graphdsl.training.evaluate import prediction_of
    from graphdsl.training.metrics import decided
    from graphdsl.training.records import csv_row, flat_names, quoted_line

    values = model.predict(data, node)
    train = model.spec.training
    name = node or model.spec.graph.name_of(prediction_of(train)) or "prediction"
    metric = train.metric[0] if node is None and train.metric else None
    found = decided(metric, values).reshape(len(values), -1) if metric else np.zeros((len(values), 0), np.int64)
    header = flat_names(name, values.shape[1:])
    header += flat_names("class", () if metric.argmax else values.shape[1:]) if metric else []
    lines = [quoted_line(header)]
    lines += [csv_row([*row.tolist(), *decision.tolist()]) for row, decision in zip(values.reshape(len(values), -1), found)]
    return "".join(lines)


def command_line_data(data: str | None):
    """--data: a built-in set, or files (comma-separated) relative to the current directory."""
    from graphdsl.training.data import BUILTIN

    if data is None or data in BUILTIN:
        return data
    paths = tuple(os.path.abspath(part) for part in data.split(","))
    return paths if len(paths) > 1 else paths[0]


def refuse_overwriting(spec: str, model, data, outputs: dict, **reads) -> None:
    """Before any work: no output (option -> path) may name a file the run reads (the spec, the
    training data and validation examples, `reads`: option -> path or --data SOURCE) or another
    output, nor a device or FIFO (files.check_outputs). --checkpoint may name --resume's file: that is
    how a run goes on."""
    from graphdsl.files import check_outputs
    from graphdsl.training.examples import data_files, run_inputs

    inputs = [("the spec", spec), *run_inputs(model, model.spec.training, data)]
    for option, given in reads.items():
        if option == "predict" and given:
            inputs += [("a --predict file", path) for path in data_files(model, command_line_data(given))]
        else:
            inputs.append((f"the --{option} file", given))
    check_outputs(inputs, [("--" + flag, path) for flag, path in outputs.items()],
                  may_share=(("--checkpoint", "the --resume file"),))


def finite(param, value: float, positive: bool) -> float:
    """A tolerance or a step given on the command line: a finite number, at least 0 (above, if `positive`)."""
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise click.BadParameter(f"must be a finite number {'above' if positive else 'at least'} 0, not {value}",
                                 param=param)
    return value


def settings_from(pairs) -> dict:
    from graphdsl.frontend.expand import parse_override, split_pair

    return {name: parse_override(value) for name, value in (split_pair(pair, "--set") for pair in pairs)}


@main.command()
@spec_path
@engine_opt
@precision_opt
@format_opt
@sets_opt
@click.option("--data", "data", metavar="SOURCE", help="train on this file (or files, comma-separated), or on `iris` or `digits`")
@click.option("--trace", type=click.Path(dir_okay=False), help="write every step's loss, params and gradients to CSV")
@click.option("--log", type=click.Path(dir_okay=False), help="write one row of metrics an epoch to CSV")
@click.option("--plot", type=click.Path(dir_okay=False), help="draw loss and accuracy per epoch to a PNG")
@click.option("--load", "load_from", type=click.Path(exists=True, dir_okay=False), help="start from weights in an .npz")
@click.option("--save", type=click.Path(dir_okay=False), help="save the trained weights to an .npz")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="save weights and optimizer state as training goes")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), help="go on from a checkpoint")
@click.option("--predict", "predict_from", metavar="SOURCE",
              help="after training, print the prediction for each example in SOURCE as CSV "
                   "(its inputs, or a file laid out as training reads it)")
@click.option("--detect-anomaly", is_flag=True,
              help="name the first value or gradient that is not finite (exit 1), before printing")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="BLAS threads while training  [default: the cores other processes leave free]")
def run(spec, engine, precision, fmt, sets, data, trace, log, plot, load_from, save, checkpoint, resume, predict_from,
        detect_anomaly, threads):
    """Evaluate SPEC, train it if it says `minimize`, and print what it asks for: what it asks
    before `minimize` at the given params, what it asks after at the trained ones."""
    from graphdsl.training import records

    model = open_spec(spec, engine, settings_from(sets))
    data = command_line_data(data)
    refuse_overwriting(spec, model, data, {"trace": trace, "log": log, "plot": plot, "save": save,
                                           "checkpoint": checkpoint}, load=load_from, resume=resume,
                       predict=predict_from)
    if load_from:
        model.load_weights(load_from)
    if model.spec.training is None and (data or trace or log or plot or save or checkpoint or resume):
        raise click.UsageError("training options need a spec that says `minimize L using ...`")
    before, after = in_order(model)
    printed = []  # the blocks printed so far: each is printed as soon as it is known
    if not predict_from:
        answer(model, before, precision, detect_anomaly, printed, model.spec.training is not None, fmt)
    if plot:
        records.plotting(plot)  # a missing matplotlib is found before training, not after it
    if predict_from:  # so is a source that cannot be predicted from
        from graphdsl.training.evaluate import prediction_examples

        predict_from = prediction_examples(model, command_line_data(predict_from))[1]
    if model.spec.training is not None:
        history = train_for_run(model, data, trace, log, checkpoint, resume, threads)
        if save:  # the weights first: what can fail after them must not lose them
            records.save_weights(save, model.params)
        if plot:
            records.plot_history(history, plot)
        if not predict_from:
            say(trained(model, history, precision, fmt, save), printed, fmt)
    if predict_from:
        click.echo(predictions(model, predict_from), nl=False)
        return
    answer(model, after if model.spec.requests or printed else None, precision, detect_anomaly, printed, bool(printed),
           fmt)


def say(block: str, printed: list, fmt: str = "text") -> None:
    from graphdsl.tools.formats import between

    click.echo((between(fmt)[1:] if printed else "") + block)  # echo ends the line: what is left is the gap
    printed.append(block)


def answer(model, requests, precision: int, detect_anomaly: bool, printed: list, optional: bool,
           fmt: str = "text") -> None:
    """Print what `requests` ask for (None: every value), once --detect-anomaly finds nothing wrong.
    `optional`: values that live in the training data are noted as not printed instead of refused."""
    from graphdsl.tools.anomaly import detect_anomaly as anomaly
    from graphdsl.tools.formats import note
    from graphdsl.tools.report import table

    if requests == []:
        return
    try:
        found = anomaly(model) if detect_anomaly else None
        if found:
            click.echo(found, err=True)
            sys.exit(1)
        say(requested(model, requests, precision, fmt) if requests is not None
            else table("values", list(model.forward().items()), precision, fmt), printed, fmt)
    except DataError as err:
        if not optional:
            raise
        say(note(f"(what the spec shows is not printed: {err})", fmt), printed, fmt)


def train_for_run(model, data, trace, log, checkpoint, resume, threads):
    """model.train for `graphdsl run`: a failed or interrupted run exits with its message."""
    from graphdsl.training.progress import TrainingInterrupted
    from graphdsl.training.trainer import TrainingError

    try:
        return model.train(data, trace=trace, log=log, checkpoint=checkpoint, resume=resume, progress=True,
                           threads=threads)
    except TrainingError as err:
        click.echo(str(err), err=True)
        sys.exit(1)
    except TrainingInterrupted as stop:  # Ctrl-C: saved only where --checkpoint asked, like every chunk
        kept = (f"the checkpoint {checkpoint} holds them; go on with --resume {checkpoint}" if checkpoint
                else "nothing was saved (--checkpoint FILE keeps the progress of a run)")
        click.echo(f"interrupted: the weights after epoch {stop.epoch} (step {stop.step}) are complete; {kept}",
                   err=True)
        sys.exit(130)


weights_opt = click.option("--load", "load_from", required=True, type=click.Path(exists=True, dir_okay=False),
                           help="the weights, an .npz as --save or Model.save writes")


def saved_model(spec: str, load_from: str, sets):
    """The spec's model at the weights in `load_from`, trained no further."""
    model = open_spec(spec, settings=settings_from(sets))
    model.load_weights(load_from)
    return model


@main.command()
@spec_path
@weights_opt
@click.argument("data")
@click.option("--node", help="the node to predict  [default: what the loss compares with its target]")
@sets_opt
def predict(spec, load_from, data, node, sets):
    """Print, as CSV, the prediction for each example in DATA (a CSV, .npz or IDX file, or iris or
    digits; its inputs alone, or laid out as training reads it, targets and all) at the weights in
    --load, with no training: the values the loss compares with its target, and the class for a
    classifier (softmax_ce, bce, bce_logits)."""
    click.echo(predictions(saved_model(spec, load_from, sets), command_line_data(data), node), nl=False)


@main.command()
@spec_path
@weights_opt
@click.argument("data", required=False)
@precision_opt
@format_opt
@sets_opt
def evaluate(spec, load_from, data, precision, fmt, sets):
    """Print the loss and metrics over the examples in DATA (inputs and targets; by default the spec's
    data) at the weights in --load, with no training: accuracy, precision, recall, F1 and the
    confusion matrix of a classifier, or the mean absolute error and R^2 of a regressor."""
    from graphdsl.tools.report import table

    model = saved_model(spec, load_from, sets)
    found = model.evaluate(command_line_data(data))
    click.echo(table(f"at the weights in {load_from}", list(found.items()), precision, fmt))


@main.command()
@spec_path
@engine_opt
@click.option("--rtol", default=1e-5, show_default=True, callback=lambda c, p, v: finite(p, v, positive=False))
@click.option("--atol", default=1e-7, show_default=True, callback=lambda c, p, v: finite(p, v, positive=False))
@click.option("--eps", default=1e-6, show_default=True, help="central-difference step",
              callback=lambda c, p, v: finite(p, v, positive=True))
def check(spec, engine, rtol, atol, eps):
    """Parse and shape-check SPEC, then check its gradients against finite differences."""
    from graphdsl.tools.gradcheck import check_point, gradcheck

    model = open_spec(spec, engine)
    if model.loss is None:
        click.echo(f"{spec}: ok (parsed and shape-checked; no `grad` or `minimize` statement, so no loss to check)")
        return
    inputs, where = check_point(model)
    errors, bad = gradcheck(model, eps=eps, rtol=rtol, atol=atol, inputs=inputs)
    for name, err in errors.items():
        click.echo(f"  d{model.loss}/d{name}  max |analytic - numeric| = {err:.3g}")
    for m in bad:
        click.echo(f"  mismatch d{model.loss}/d{m.name}{list(m.index)}: analytic {m.analytic:.10g}, "
                   f"numeric {m.numeric:.10g}")
    if bad:
        click.echo(f"{spec}: gradient check FAILED for {len(bad)} entries", err=True)
        sys.exit(1)
    click.echo(f"{spec}: ok (gradients of {model.loss} agree with central differences{where})")


@main.command()
@spec_path
@format_opt
@sets_opt
def summary(spec, fmt, sets):
    """Print each named node's op, output shape, parameter count and multiplications, then the
    total, trainable and non-trainable params (frozen ones are not trainable)."""
    click.echo(open_spec(spec, settings=settings_from(sets)).summary().render(fmt))


@main.command()
@spec_path
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write the picture to FILE  [default: stdout]")
@click.option("--format", "fmt", type=click.Choice(["dot", "svg", "png"]),
              help="what to write  [default: from the extension of -o, else dot]")
@sets_opt
def draw(spec, output, fmt, sets):
    """Draw SPEC's graph: a box per named node with its shape, value and gradient, params and inputs
    styled apart, each edge labelled with the ops that read the value. SVG and PNG are laid out by
    Graphviz's `dot` program; DOT text needs no program."""
    from graphdsl.files import check_outputs, replace_atomically
    from graphdsl.tools.draw import DrawError, picture
    from graphdsl.training.examples import data_files, validation_files

    fmt = fmt or {".svg": "svg", ".png": "png"}.get(os.path.splitext(output or "")[1].lower(), "dot")
    if fmt == "png" and output is None and sys.stdout.isatty():
        raise click.UsageError("a PNG is binary: write it to a file with -o FILE.png")
    model = open_spec(spec, settings=settings_from(sets))
    # as run's outputs are: never the spec, its data or validation file, a device or a FIFO, nor in a
    # missing folder
    check_outputs([("the spec itself", spec), *(("the data file", path) for path in data_files(model, None)),
                   *(("the validation file", path) for path in validation_files(model, model.spec.training))],
                  [("-o", output)])
    try:
        data = picture(model, fmt)
    except DrawError as err:
        click.echo(f"graphdsl draw: {err}", err=True)
        sys.exit(2)
    if output is None:
        sys.stdout.buffer.write(data)  # bytes as they are: a PNG piped on, SVG and DOT as UTF-8
        sys.stdout.flush()
        return
    try:
        replace_atomically(output, lambda f: f.write(data))
    except OSError as err:
        raise DataError(f"cannot write {output}: {err.strerror or err}") from None


@main.command("show-ir")
@spec_path
def show_ir(spec):
    """Print the graph IR, one node a line."""
    click.echo(checked(spec).graph.pretty())


@main.command("show-code")
@spec_path
@click.option("--grad", is_flag=True, help="show the gradient kernel instead of the forward one")
def show_code(spec, grad):
    """Print the Numba source generated for SPEC."""
    from graphdsl import pipeline

    found = checked(spec)
    click.echo((pipeline.grad_program(found) if grad else pipeline.forward_program(found)).source)


@main.command()
def lsp():
    """Serve the graphdsl language server on stdin and stdout, for an editor to start: live errors,
    hover, completion, go to definition and the outline of .nn files (docs/editors.md)."""
    try:
        from graphdsl.editor.server import serve
    except ModuleNotFoundError as err:
        missing = (err.name or "graphdsl").split(".")[0]
        if missing == "graphdsl":
            raise
        click.echo(f'graphdsl lsp needs {missing}, which is not installed: pip install "graphdsl[lsp]"', err=True)
        sys.exit(2)
    serve()


@main.command()
@spec_path
@click.argument("node")
@click.option("--loss", help="the scalar to differentiate  [default: the loss of the spec's first `grad`]")
@precision_opt
@format_opt
def explain(spec, node, loss, precision, fmt):
    """Print dLOSS/dNODE by the chain rule: every path of named nodes from NODE to the loss, each
    local derivative on it as a formula and a number, their products and sum, and the gradient
    autodiff computes. NODE is a scalar or an entry (`'W[0, 1]'`); a vector or matrix (or a row,
    `'W[0]'`) gives a table, entry by entry."""
    from graphdsl.tools.explain import chain_rules, render

    results = chain_rules(open_spec(spec), node, loss)
    click.echo(render(results, fmt, precision))
    if not all(r.agrees for r in results):
        click.echo(f"{spec}: the sum over paths disagrees with autodiff; this is a bug in graphdsl", err=True)
        sys.exit(1)


@main.command()
@spec_path
@click.option("--grid", "grids", multiple=True, metavar="NAME=V1,V2,...",
              help="try each value; a list setting's values are bracketed: hidden=[16],[64,32] (repeatable)")
@click.option("--range", "ranges", multiple=True, metavar="NAME=LOW:HIGH[:log][:int]",
              help="where --random, or --search tpe, draws NAME from (repeatable)")
@click.option("--random", default=0, show_default=True, type=click.IntRange(min=0), metavar="N", help="random points drawn from the --range settings")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="run every point with seeds 0 to N-1 (param initialisation, shuffles, validation split)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="a change every trial shares (repeatable)")
@click.option("--data", "data", metavar="SOURCE", help="train on this file (or files, comma-separated), or on `iris` or `digits`")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the results CSV, one row a trial")
@click.option("--resume", is_flag=True, help="keep the rows already in --out and run only the trials it lacks")
@click.option("--plot", type=click.Path(dir_okay=False), help="draw the metric against each swept setting to a PNG")
@click.option("--address", metavar="tcp://HOST:PORT",
              help="run on this Dask scheduler  [default: DASK_SCHEDULER_ADDRESS, else a local cluster]")
@click.option("--workers", type=click.IntRange(min=1), metavar="N", help="local cluster workers  [default: the cores]; 1 runs here")
@click.option("--search", default="grid", show_default=True, type=click.Choice(["grid", "tpe"]),
              help="grid: every --grid point (crossed with --random draws); tpe: Optuna's TPE proposes --trials "
                   "points from the --grid values and --range bounds, each knowing the results before it")
@click.option("--trials", type=click.IntRange(min=1), metavar="N", help="how many trials --search tpe runs in all")
@click.option("--metric", help="what --search tpe optimises  [default: val_loss with a validation split, else loss]")
@click.option("--prune/--no-prune", default=None,
              help="with --search tpe, stop a trial whose metric falls behind the median of the trials before it  "
                   "[default: --prune]")
def sweep(spec, grids, ranges, random, seeds, sets, data, out, resume, plot, address, workers, search, trials,
          metric, prune):
    """Train SPEC once per trial, one row a trial to --out: each --grid combination (crossed with
    --random draws), each with --seeds seeds, or with --search tpe the --trials points Optuna
    proposes. Exits 1 if any trial failed."""
    import time
    from pathlib import Path

    from graphdsl.tools import sweep as sw

    model = open_spec(spec)
    if model.spec.training is None:  # a bad spec is reported once, not once per trial
        raise click.UsageError("a sweep trains: the spec must say `minimize L using ...`")
    refuse_overwriting(spec, model, command_line_data(data), {"out": out, "plot": plot})
    trial_list, searching, swept, metric = sweep_plan(model, search, grids, ranges, random, seeds, sets, trials,
                                                      metric, prune, out)
    if (address or workers != 1) and not sw.dask_available():
        if address:
            raise click.UsageError('--address needs Dask: pip install "dask[distributed]"')
        click.echo("Dask is not installed, so the trials run one after another here", err=True)
    # the absolute path: a worker elsewhere finds the spec's data files relative to it, as `run` does
    job = sw.Job(model.spec.text, str(Path(spec).resolve()), command_line_data(data))

    ran = 0

    def report(row, finished, total):
        nonlocal ran
        ran = finished
        result = (row["error"] if row["status"] == "pruned" else
                  row["status"] + (f": {row['error'].splitlines()[0]}" if row["error"] else ""))
        click.echo(f"[{finished}/{total}] {sw.describe(row, swept)}: {result} ({row['seconds']} s)", err=True)

    began = time.perf_counter()
    rows = sw.run_sweep(job, trial_list, swept, out, resume=resume, address=address, workers=workers, report=report,
                        search=searching)
    took = time.perf_counter() - began
    failed = sum(row["status"] not in ("ok", "pruned") for row in rows)
    this_run = f"{ran} trials in {took:.1f} s ({ran / took:.2f} trials/s)" if ran else "nothing left to run"
    click.echo(f"{out}: {len(rows)} trials, {failed} failed; this run: {this_run}")
    metric, top = sw.best(rows, metric)
    if top is not None:
        click.echo(f"best by {metric}: {sw.describe(top, swept)}: "
                   + ", ".join(f"{m} {top[m]}" for m in sw.METRICS if top.get(m)))
    if plot and top is not None:
        sw.plot(rows, swept, metric, plot)
    if failed:
        sys.exit(1)


def sweep_plan(model, search, grids, ranges, random, seeds, sets, trials, metric, prune, out) -> tuple:
    """(the grid's trials or None, a function of --out's rows giving the search or None, the swept
    names, the metric that ranks trials or None for the default)."""
    from functools import partial

    from graphdsl.frontend.expand import split_pair
    from graphdsl.tools import sweep as sw

    grid = {name: sw.parse_values(v) for name, v in (split_pair(p, "--grid") for p in grids)}
    drawn = {name: sw.Range.parse(v) for name, v in (split_pair(p, "--range") for p in ranges)}
    fixed = settings_from(sets)
    if search == "grid":
        tpe_only = [flag for flag, value in (("--trials", trials), ("--metric", metric), ("--prune", prune))
                    if value is not None]
        if tpe_only:
            raise click.UsageError(f"{tpe_only[0]} is for --search tpe")
        return sw.plan(fixed, grid, drawn, random, seeds), None, [*grid, *drawn], None
    from graphdsl import pipeline
    from graphdsl.tools import search as se

    sw.check_names(fixed, grid, drawn)
    space = se.plan(grid, drawn, random, seeds, trials)
    trained = pipeline.check(model.spec.text, model.spec.filename, settings=fixed).training  # as every trial's
    metric = se.objective(trained, metric)
    return (None, partial(se.Search, space, fixed, metric, trials, prune is not False, where=str(out)),
            [*grid, *drawn], metric)
