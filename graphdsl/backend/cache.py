"""Generated modules on disk: written under a content hash, imported, and
compiled by Numba with cache=True, so a second process loads machine code
instead of compiling (Numba cannot cache functions made by exec).

The cache is trusted for nothing it has not checked: files.cache_dir is a directory no other
user can write; a module runs the source generated in this process (its file is rewritten to hold
exactly that, and no .pyc is read); numba_cache reads Numba's pickles only where no other user
could have written them, and compiles again when one is damaged; a cache that cannot be written
means a temporary one. Each fault is reported once on stderr and never changes a result."""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from graphdsl.backend.codegen import HELPERS
from graphdsl.files import cache_dir, replace_atomically, stand_in
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


def module_file(name: str, source: str) -> Path:
    """The cached file of a generated module, checked to hold exactly `source`: a missing,
    truncated or corrupted file is rewritten. Numba's cache goes by the file's time and size, and
    tracebacks show its lines. A cache that cannot be written falls back to a temporary
    directory, with one warning."""
    path = cache_dir() / f"{name}.py"
    if holds(path, source):
        return path
    try:
        write_module(path, source)
        return path
    except OSError as err:
        path = stand_in(path.parent, err) / f"{name}.py"
    write_module(path, source)
    return path


class GeneratedSource(importlib.machinery.SourceFileLoader):
    """Imports a generated module from the source generated in this process, compiled here: never
    from a .pyc in __pycache__, which Python takes on the word of its header (an unchecked-hash .pyc
    is not compared with its source at all). The code's file name is the module file's, which
    Numba's cache is keyed by; no .pyc is written either."""

    def __init__(self, name: str, path: Path, source: str):
        super().__init__(name, str(path))
        self.source = source

    def get_code(self, fullname):
        return compile(self.source, self.path, "exec", dont_inherit=True)


def load(source: str):
    """Import the module for this generated source, writing it to the cache if new."""
    name = f"graphdsl_gen_{module_key(source)}"
    if name in sys.modules:
        return sys.modules[name]
    from graphdsl.backend.numba_cache import guard_numba_cache  # imports Numba: not before a kernel is needed

    helpers = [importlib.import_module(f"graphdsl.backend.runtime.{module}") for module in HELPERS.values()]
    path = module_file(name, source)
    loader = GeneratedSource(name, path, source)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path, loader=loader))
    loader.exec_module(mod)
    for module in (*helpers, mod):
        guard_numba_cache(module)
    sys.modules[name] = mod  # only once it imported: a failed import must not leave half a module
    return mod
