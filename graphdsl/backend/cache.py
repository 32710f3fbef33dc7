"""Generated modules on disk: written under a content hash, imported, and
compiled by Numba with cache=True, so a second process loads machine code
instead of compiling (Numba cannot cache functions made by exec).

The cache is trusted for nothing: a module file is used only if it holds exactly
the generated source (else it is rewritten atomically), a damaged Numba cache file
means compiling again, and a cache that cannot be written means a temporary one.
Each fault is reported once on stderr and never changes a result."""
from __future__ import annotations

import atexit
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from graphdsl.backend.codegen import HELPERS
from graphdsl.files import cache_dir, replace_atomically
from graphdsl.version import __version__

KERNELS = [Path(__file__).parent / "runtime" / f"{module}.py" for module in HELPERS.values()]


@lru_cache(maxsize=1)
def toolchain() -> str:
    """What else decides the machine code: graphdsl's and Numba's versions and the helper kernels."""
    import numba

    return "\0".join((__version__, numba.__version__, *(path.read_text() for path in KERNELS)))


def module_key(source: str) -> str:
    return hashlib.sha256(f"{source}\0{toolchain()}".encode()).hexdigest()[:24]


def write_module(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda f: f.write(source.encode("utf-8")))


def holds(path: Path, source: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == source
    except (OSError, UnicodeDecodeError):
        return False


_warned: set = set()


def warn_once(kind: str, message: str) -> None:
    """One line on stderr per kind of cache trouble and process: a fault is worth one mention."""
    if kind not in _warned:
        _warned.add(kind)
        print(f"graphdsl: warning: {message}", file=sys.stderr, flush=True)


@lru_cache(maxsize=1)
def fallback_dir() -> Path:
    """A private directory for this process when the cache cannot be written. mkdtemp makes it
    0700 and new, so no other user can plant a module in it; it goes when the process ends."""
    path = Path(tempfile.mkdtemp(prefix="graphdsl-cache-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def module_file(name: str, source: str) -> Path:
    """The cached file of a generated module, checked to hold exactly `source`: a missing,
    truncated or corrupted file is rewritten. A cache that cannot be written falls back to a
    temporary directory, with one warning."""
    path = cache_dir() / f"{name}.py"
    if holds(path, source):
        return path
    try:
        write_module(path, source)
        return path
    except OSError as err:
        warn_once("cache", f"cannot write the cache {path.parent} ({err.strerror or err}); "
                           "compiling into a temporary directory instead (set GRAPHDSL_CACHE_DIR to change it)")
    path = fallback_dir() / f"{name}.py"
    write_module(path, source)
    return path


def tolerate_damaged_cache(module) -> None:
    """Numba unpickles its cache files (.nbi index, .nbc code) and raises if one is damaged.
    Wrap each function's cache loader: on any failure, drop the index and compile again
    (Numba then writes a fresh index and data file), with one warning."""
    for func in vars(module).values():
        cache = getattr(func, "_cache", None)
        load = getattr(cache, "load_overload", None)
        if load is None or getattr(load, "tolerant", False):
            continue

        def tolerant(sig, target_context, load=load, cache=cache, func=func):
            try:
                return load(sig, target_context)
            except Exception as err:  # whatever a damaged pickle raises
                index = Path(cache._cache_file._index_path)
                warn_once("numba", f"Numba's cache for {func.__name__} is damaged ({type(err).__name__}); "
                                   f"compiling again (removing {index})")
                index.unlink(missing_ok=True)
                return None
        tolerant.tolerant = True
        cache.load_overload = tolerant


def load(source: str):
    """Import the module for this generated source, writing it to the cache if new."""
    name = f"graphdsl_gen_{module_key(source)}"
    if name in sys.modules:
        return sys.modules[name]
    helpers = [importlib.import_module(f"graphdsl.backend.runtime.{module}") for module in HELPERS.values()]  # cached beside graphdsl
    path = module_file(name, source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for module in (*helpers, mod):
        tolerate_damaged_cache(module)
    sys.modules[name] = mod  # only once it imported: a failed import must not leave half a module
    return mod
