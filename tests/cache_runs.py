"""A fresh process computing every value and gradient of a spec on a given cache directory: what
the cache fault and cache security tests compare a damaged or planted cache against."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "specs" / "backprop_2_2_1.nn"
# Prints every value and gradient at full precision, so two runs compare exactly.
SCRIPT = f"""
import graphdsl
model = graphdsl.load({str(SPEC)!r}, engine="numba")
print(repr(sorted((k, v.tolist()) for k, v in model.forward().items())))
print(repr(sorted((k, v.tolist()) for k, v in model.grad().items())))
"""


def start(cache: Path, **env) -> subprocess.Popen:
    """SCRIPT started in a fresh interpreter on this cache (and any other environment given)."""
    env = {**os.environ, "GRAPHDSL_CACHE_DIR": str(cache), **env}
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=tempfile.gettempdir(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result(proc) -> tuple:
    """(stdout, the lines of stderr that are not blank) of a started process, which must succeed."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out, [line for line in err.splitlines() if line.strip()]


def compute(cache: Path, **env) -> tuple:
    return result(start(cache, **env))


def modules(cache: Path) -> list:
    found = sorted(cache.glob("graphdsl_gen_*.py"))
    assert len(found) == 2  # forward and gradient
    return found
