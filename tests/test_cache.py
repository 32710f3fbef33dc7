"""Generated modules are cached on disk: a second process loads kernels without compiling."""
import os
import subprocess
import sys
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "specs" / "backprop_2_2_1.nn"

# Counts calls into Numba's compiler: zero means every kernel came from the cache.
SCRIPT = f"""
import numba.core.compiler as c
calls = []
original = c.compile_extra
c.compile_extra = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
import graphdsl
model = graphdsl.load({str(SPEC)!r}, engine="numba")
print(float(model.forward()["L"]), float(model.grad()["b_o"]), len(calls))
"""


def run_fresh(cache: Path) -> list:
    """Run SCRIPT in a new interpreter, outside the repo so it imports the installed graphdsl."""
    env = {**os.environ, "GRAPHDSL_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=cache, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_second_process_compiles_nothing(tmp_path):
    first = run_fresh(tmp_path)
    second = run_fresh(tmp_path)
    assert int(first[2]) > 0, "the first process should have compiled"
    assert int(second[2]) == 0, "the second process should load every kernel from the cache"
    assert first[:2] == second[:2]


def test_generated_modules_are_named_by_content_hash(tmp_path):
    run_fresh(tmp_path)
    modules = sorted(p.name for p in tmp_path.glob("graphdsl_gen_*.py"))
    assert len(modules) == 2  # forward and gradient kernels
    assert not list(tmp_path.glob(".tmp-*")), "no half-written files are left behind"
