"""graphdsl: a small language for differentiable computation graphs, compiled to Numba kernels."""
__version__ = "0.1.0"

import json
from collections import OrderedDict
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
    try:
        key = (text, filename, seed, json.dumps(settings, sort_keys=True))
    except TypeError:  # a setting JSON cannot hold (an array): checked afresh
        key = None
    spec = _CHECKED.get(key)
    if spec is None:
        spec = _lower(_parse(text, filename), text, filename, seed, settings)
        if key is not None:
            _CHECKED[key] = spec
            if len(_CHECKED) > 16:
                _CHECKED.popitem(last=False)
    return Model(spec, engine)


# Checked specs by what made them. A spec compiled again (a sweep's runs, a second model) shares
# the first one's graph and the programs built from it (kernels, training loops): a Spec is not
# changed once checked, and each Model keeps params of its own.
_CHECKED: OrderedDict = OrderedDict()


def load(path, *, engine: str = "numba", seed: int = 0, settings: dict | None = None) -> Model:
    """Compile the spec in a file."""
    path = Path(path)
    return compile(path.read_text(encoding="utf-8"), filename=str(path), engine=engine, seed=seed,
                   settings=settings)


__all__ = ["compile", "load", "Model", "SpecError", "DataError", "__version__"]
