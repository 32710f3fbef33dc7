"""Numba's cache files for graphdsl's compiled functions (generated modules and the helpers in
runtime/): read only where no other user could have written them, since they are pickles, which
run code as they load. Elsewhere a function's cache moves into graphdsl's private cache directory.
A damaged cache file means compiling again, with one warning."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from numba.core.caching import CompileResultCacheImpl, FunctionCache, InTreeCacheLocator, NullCache

from graphdsl.files import cache_dir, exposure, warn_once


class PrivateLocator(InTreeCacheLocator):
    """Numba's cache for a function kept in graphdsl's cache directory, under the function's
    file's directory (as Numba names directories in NUMBA_CACHE_DIR), made 0700 whatever the umask."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = str(cache_dir() / "numba" / self.get_suitable_cache_subpath(py_file))

    def ensure_cache_path(self):
        os.makedirs(self._cache_path, mode=0o700, exist_ok=True)
        super().ensure_cache_path()


class PrivateCacheImpl(CompileResultCacheImpl):
    _locator_classes = [PrivateLocator]


class PrivateCache(FunctionCache):
    """A function's Numba cache in graphdsl's cache directory, where no other user can write."""

    _impl_class = PrivateCacheImpl


def numba_exposure(cache) -> str | None:
    """Why another user could have written a function's Numba cache (its directory, index or data
    files: pickles, which run code as they load), or None."""
    index = Path(cache._cache_file._index_path)
    stem = glob.escape(index.name[:-len(".nbi")])
    for path in (index.parent, *index.parent.glob(f"{stem}.nbi"), *index.parent.glob(f"{stem}.*.nbc")):
        why = exposure(path)
        if why:
            return why
    return None


def private_cache(func):
    """The function's Numba cache; where that could hold another user's files, one in graphdsl's
    cache directory instead (nothing is lost, so nothing is said: a umask of 002 makes every
    __pycache__ group-writable); none at all if that fails too."""
    cache = func._cache
    if numba_exposure(cache) is None:
        return cache
    try:
        cache = PrivateCache(func.py_func)
    except RuntimeError:  # Numba found no directory it could write: compile every time
        return NullCache()
    return cache if numba_exposure(cache) is None else NullCache()


def guard_numba_cache(module) -> None:
    """For each compiled function of a module: a Numba cache only where no other user could
    have written it (private_cache); and as Numba unpickles its cache files (.nbi index, .nbc
    code) and raises if one is damaged, a loader that on any failure drops the index and
    compiles again (Numba then writes a fresh index and data file), with one warning."""
    for func in vars(module).values():
        cache = getattr(func, "_cache", None)
        if cache is None or isinstance(cache, NullCache) or getattr(cache, "guarded", False):
            continue
        func._cache = cache = private_cache(func)
        cache.guarded = True
        if isinstance(cache, NullCache):
            continue
        load = cache.load_overload

        def tolerant(sig, target_context, load=load, cache=cache, func=func):
            try:
                return load(sig, target_context)
            except Exception as err:  # whatever a damaged pickle raises
                index = Path(cache._cache_file._index_path)
                warn_once("numba", f"Numba's cache for {func.__name__} is damaged ({type(err).__name__}); "
                                   f"compiling again (removing {index})")
                index.unlink(missing_ok=True)
                return None
        cache.load_overload = tolerant
