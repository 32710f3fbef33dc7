"""Shared test set-up: a private cache directory for generated modules and Numba's cache."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def graphdsl_cache(tmp_path_factory):
    """Every test process compiles into its own cache, never the user's."""
    path = tmp_path_factory.mktemp("graphdsl-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHDSL_CACHE_DIR", str(path))
    yield path
    mp.undo()
