"""graphdsl: a small language for differentiable computation graphs, compiled to Numba kernels."""
__version__ = "0.1.0"

from pathlib import Path

from .errors import DataError, SpecError
from .lower import lower as _lower
from .model import Model
from .parser import parse as _parse


def compile(text: str, *, filename: str = "<spec>", engine: str = "numba", seed: int = 0,
            settings: dict | None = None) -> Model:
    """Parse and check spec text and return a Model; a bad spec raises a located SpecError.

    `settings` changes settings, optimizer settings or training options by name, as `--set`
    does: `settings={"hidden": [64, 32], "lr": 0.01}`.
    """
    return Model(_lower(_parse(text, filename), text, filename, seed, settings), engine)


def load(path, *, engine: str = "numba", seed: int = 0, settings: dict | None = None) -> Model:
    """Compile the spec in a file."""
    path = Path(path)
    return compile(path.read_text(encoding="utf-8"), filename=str(path), engine=engine, seed=seed,
                   settings=settings)


__all__ = ["compile", "load", "Model", "SpecError", "DataError", "__version__"]
