"""graphdsl: a small language for differentiable computation graphs, compiled to Numba kernels."""

import warnings
from pathlib import Path

from graphdsl import pipeline
from graphdsl.errors import DataError, SpecError, SpecWarning
from graphdsl.model import Model
from graphdsl.version import __version__


def compile(text: str, *, filename: str = "<spec>", engine: str = "auto", seed: int = 0,
            settings: dict | None = None) -> Model:
    """Parse and check spec text and return a Model; a bad spec raises a located SpecError.

    `settings` changes settings, optimizer settings or training options by name, as `--set`
    does: `settings={"hidden": [64, 32], "lr": 0.01}`. The same text compiled again with the
    same seed and settings shares the checked spec and what was built from it (kernels, training
    loops); each Model keeps params of its own.
    """
    return checked(text, filename, engine, seed, settings, caller=3)


def load(path, *, engine: str = "auto", seed: int = 0, settings: dict | None = None) -> Model:
    """Compile the spec in a file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")  # -sig: drop the byte-order mark some editors write
    return checked(text, str(path), engine, seed, settings, caller=3)


def checked(text: str, filename: str, engine: str, seed: int, settings: dict | None, caller: int) -> Model:
    """A Model of the checked spec; its warnings point at the user's line, `caller` frames up."""
    spec = pipeline.check(text, filename, seed, settings)
    for found in spec.warnings:
        warnings.warn(found, stacklevel=caller)
    return Model(spec, engine)


__all__ = ["compile", "load", "Model", "SpecError", "SpecWarning", "DataError", "__version__"]
