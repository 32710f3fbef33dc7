"""The project installs as its README says, and the grammar ships inside the package."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```\n(pip install .*)\n```", (ROOT / "README.md").read_text())


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "graphdsl run specs/" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_readme_example_spec_exists():
    spec = re.search(r"graphdsl run (\S+)", readme_commands()[0]).group(1)
    assert (ROOT / spec).is_file()


def test_non_editable_install_parses_a_spec(tmp_path):
    """Build a wheel, install it into a bare folder, and parse from outside the repo."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("graphdsl-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    script = ("import graphdsl, pathlib; "
              "m = graphdsl.compile('input x[2] = [1, 2]\\ny = sum(x)\\n', engine='numpy'); "
              "print(graphdsl.__file__); print(m.forward()['y'])")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert Path(out[0]).is_relative_to(site)
    assert float(out[1]) == 3.0
    assert (site / "graphdsl" / "frontend" / "graphdsl.lark").is_file()
