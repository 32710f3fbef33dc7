"""graphdsl: a small language for differentiable computation graphs, compiled to Numba kernels."""

import json
import threading
from collections import OrderedDict
from pathlib import Path

from graphdsl.version import __version__
from graphdsl.errors import DataError, SpecError
from graphdsl.frontend.lower import lower as _lower
from graphdsl.model import Model
from graphdsl.frontend.parser import parse as _parse


def compile(text: str, *, filename: str = "<spec>", engine: str = "numba", seed: int = 0,
            settings: dict | None = None) -> Model:
    """Parse and check spec text and return a Model; a bad spec raises a located SpecError.

    `settings` changes settings, optimizer settings or training options by name, as `--set`
    does: `settings={"hidden": [64, 32], "lr": 0.01}`.
    """
    try:
        key = (text, filename, seed, json.dumps(settings, sort_keys=True))
    except TypeError:  # a setting JSON cannot hold (an array): checked afresh
        key = None
    with _LOCK:
        spec = _CHECKED.pop(key, None)
    if spec is None:
        spec = _lower(_parse(text, filename), text, filename, seed, settings)
    if key is not None:
        with _LOCK:
            _CHECKED[key] = spec  # last: the least recently compiled goes first
            while len(_CHECKED) > 4:  # a spec holds its params' first values: keep few
                _CHECKED.popitem(last=False)
    return Model(spec, engine)


# The last checked specs by what made them. The same text compiled again with the same seed and
# settings (a fresh model for another run) shares the first one's graph and the programs built
# from it (kernels, training loops): a Spec is not changed once checked, but for the programs
# added to it, and each Model keeps params of its own.
_CHECKED: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


def load(path, *, engine: str = "numba", seed: int = 0, settings: dict | None = None) -> Model:
    """Compile the spec in a file."""
    path = Path(path)
    return compile(path.read_text(encoding="utf-8"), filename=str(path), engine=engine, seed=seed,
                   settings=settings)


__all__ = ["compile", "load", "Model", "SpecError", "DataError", "__version__"]
