"""The `graphdsl` command: run, check, summary, show-ir and show-code a spec.

Exit codes: 0 ok, 1 a check failed, 2 a usage or spec error, 3 a bug in graphdsl.
"""
from __future__ import annotations

import os
import sys

import click

from .errors import DataError, SpecError

spec_path = click.argument("spec", type=click.Path(exists=True, dir_okay=False))
engine_opt = click.option("--engine", type=click.Choice(["numpy", "numba"]), default="numpy", show_default=True,
                          help="numpy interprets at once; numba compiles kernels (cached) first")


def open_spec(path: str, engine: str = "numpy"):
    from . import compile

    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"the file is not UTF-8 text (byte {err.start} cannot be read)", filename=path) from None
    except OSError as err:
        raise SpecError(f"cannot read the file: {err.strerror}", filename=path) from None
    return compile(text, filename=path, engine=engine)


class Cli(click.Group):
    """Turns SpecError and DataError into a message on stderr and exit code 2;
    anything else is a bug, reported in one line unless GRAPHDSL_DEBUG is set."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (SpecError, DataError) as err:
            click.echo(str(err), err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:
            if os.environ.get("GRAPHDSL_DEBUG"):
                raise
            click.echo(f"graphdsl: internal error ({type(err).__name__}: {err}). This is a bug in graphdsl; "
                       "please report it with your spec. GRAPHDSL_DEBUG=1 shows the details.", err=True)
            sys.exit(3)


@click.group(cls=Cli)
@click.version_option(package_name="graphdsl")
def main():
    """graphdsl: differentiable computation graphs written like maths, compiled to Numba."""


@main.command()
@spec_path
@engine_opt
@click.option("--precision", default=6, show_default=True, help="significant digits printed")
def run(spec, engine, precision):
    """Evaluate SPEC and print what it asks for (show, grad, jacobian)."""
    from .report import table

    model = open_spec(spec, engine)
    values = model.forward()
    if not model.spec.requests:
        click.echo(table("values", list(values.items()), precision))
        return
    blocks = []
    for r in model.spec.requests:
        if r.kind == "show":
            blocks.append(table("values", [(n, values[n]) for n in r.names], precision))
        elif r.kind == "grad":
            grads = model.grad(r.loss)
            blocks.append(table(f"gradients of {r.loss}", [(f"d{r.loss}/d{n}", grads[n]) for n in r.names], precision))
        else:
            of, wrt = r.names
            point = values[wrt] if r.at is None else r.at
            jac = model.jacobian(of, wrt, **({} if r.at is None else {wrt: r.at}))
            blocks.append(table(f"jacobian of {of} with respect to {wrt}",
                                [(wrt, point), (f"d{of}/d{wrt}", jac)], precision))
    click.echo("\n\n".join(blocks))


@main.command()
@spec_path
@engine_opt
@click.option("--rtol", default=1e-5, show_default=True)
@click.option("--atol", default=1e-7, show_default=True)
@click.option("--eps", default=1e-6, show_default=True, help="central-difference step")
def check(spec, engine, rtol, atol, eps):
    """Parse and shape-check SPEC, then check its gradients against finite differences."""
    from .gradcheck import gradcheck

    model = open_spec(spec, engine)
    if model.loss is None:
        click.echo(f"{spec}: ok (parsed and shape-checked; no `grad` statement, so no loss to check)")
        return
    errors, bad = gradcheck(model, eps=eps, rtol=rtol, atol=atol)
    for name, err in errors.items():
        click.echo(f"  d{model.loss}/d{name}  max |analytic - numeric| = {err:.3g}")
    for m in bad:
        click.echo(f"  mismatch d{model.loss}/d{m.name}{list(m.index)}: analytic {m.analytic:.10g}, "
                   f"numeric {m.numeric:.10g}")
    if bad:
        click.echo(f"{spec}: gradient check FAILED for {len(bad)} entries", err=True)
        sys.exit(1)
    click.echo(f"{spec}: ok (gradients of {model.loss} agree with central differences)")


@main.command()
@spec_path
def summary(spec):
    """Print each named node's op, output shape and parameter count, with totals."""
    click.echo(open_spec(spec).summary())


@main.command("show-ir")
@spec_path
def show_ir(spec):
    """Print the graph IR, one node a line."""
    click.echo(open_spec(spec).spec.graph.pretty())


@main.command("show-code")
@spec_path
@click.option("--grad", is_flag=True, help="show the gradient kernel instead of the forward one")
def show_code(spec, grad):
    """Print the Numba source generated for SPEC."""
    click.echo(open_spec(spec).source("grad" if grad else "forward"))
