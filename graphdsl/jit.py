"""Generated modules on disk: written once under a content hash, imported, and
compiled by Numba with cache=True, so a second process loads machine code
instead of compiling (Numba cannot cache functions made by exec)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from . import __version__

KERNELS = Path(__file__).with_name("kernels.py")


def cache_dir() -> Path:
    """GRAPHDSL_CACHE_DIR, else the user's cache directory for graphdsl."""
    env = os.environ.get("GRAPHDSL_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("graphdsl"))


@lru_cache(maxsize=1)
def toolchain() -> str:
    """What else decides the machine code: graphdsl's and Numba's versions and the helper kernels."""
    import numba

    return "\0".join((__version__, numba.__version__, KERNELS.read_text()))


def module_key(source: str) -> str:
    return hashlib.sha256(f"{source}\0{toolchain()}".encode()).hexdigest()[:24]


def write_once(path: Path, text: str) -> None:
    """Write atomically, and only if absent: a reader never sees half a file."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(source: str):
    """Import the module for this generated source, writing it to the cache if new."""
    name = f"graphdsl_gen_{module_key(source)}"
    if name in sys.modules:
        return sys.modules[name]
    path = cache_dir() / f"{name}.py"
    write_once(path, source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
