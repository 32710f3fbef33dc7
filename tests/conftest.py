"""Shared test set-up: a private cache directory for generated modules and Numba's cache, and a
cache filled once (tests/cache_runs.py) for the cache fault and security tests to copy."""
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def graphdsl_cache(tmp_path_factory):
    """Every test process compiles into its own cache, never the user's."""
    path = tmp_path_factory.mktemp("graphdsl-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHDSL_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A cache filled by one process (tests/cache_runs.py), and the values it printed."""
    from cache_runs import compute

    cache = tmp_path_factory.mktemp("clean") / "cache"
    out, warnings = compute(cache)
    assert warnings == []
    return cache, out


@pytest.fixture
def expected(clean):
    return clean[1]


@pytest.fixture
def filled(clean, tmp_path):
    """A copy of the clean cache to damage or plant files in (copy2 keeps the mtimes Numba's index checks)."""
    return Path(shutil.copytree(clean[0], tmp_path / "cache"))


@pytest.fixture(params=["compiled", "default"])
def training_engine(request, monkeypatch):
    """For the modules that check training against PyTorch, scikit-learn or a hand derivation:
    each test runs with every train() compiled (as engine="numba" trains), then as the default
    engine decides, which interprets the small runs most of these tests make."""
    if request.param == "compiled":
        from graphdsl.training import interpreted
        monkeypatch.setattr(interpreted, "worth_interpreting", lambda trainer, steps: False)
    return request.param
