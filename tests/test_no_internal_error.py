"""Exit 3, "internal error", is a bug in graphdsl, and no input a user can write reaches it
(issue 19): every golden spec, fuzzed specs (test_fuzz's mutations of the valid specs), the
extremes test_fuzz writes out, the edge values of tests/test_reliability.py and fuzzed options
of `--set` go through the command line here. (The other fault cases of each class, in
tests/test_reliability.py, assert their exit codes, 1 or 2, through real processes.)

The command runs in this process (click's CliRunner), so thousands of cases take seconds; a spec
that trains runs with epochs=0, which loads its data and builds its step but compiles no loop.
"""
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings, strategies as st

from graphdsl.cli import main
from test_fuzz import EXTREMES, mutated
from test_reliability import EDGES, NET

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.nn"))
COMMANDS = [["run"], ["check"], ["summary"], ["show-ir"], ["show-code", "--grad"]]


def ran(args: list, text: str = "") -> None:
    """The command with `args`: it may not exit 3, print "internal error", or let an exception out."""
    result = CliRunner().invoke(main, args)
    said = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code != 3 and "internal error" not in said, (args, text, said)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, text, result.exception)


def commands_on(text: str, folder: Path, commands=COMMANDS) -> None:
    """Each command on the spec `text`, written into `folder`: none may exit 3, print "internal error",
    or let an exception out."""
    path = folder / "case.nn"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    trains = "minimize" in text
    for command in commands:
        ran([*command, str(path), *(["--set", "epochs=0"] if trains and command[0] == "run" else [])], text)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_specs_never_reach_an_internal_error(path, tmp_path):
    commands_on(path.read_text(encoding="utf-8"), tmp_path)


@pytest.mark.parametrize("text", EXTREMES.values(), ids=EXTREMES.keys())
def test_extreme_specs_never_reach_an_internal_error(text, tmp_path):
    commands_on(text, tmp_path, [c for c in COMMANDS if c != ["check"]])  # check's cost grows with every param


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_fuzzed_specs_never_reach_an_internal_error(texts):
    with tempfile.TemporaryDirectory() as folder:  # no fixture: Hypothesis runs the body many times
        commands_on(texts[-1], Path(folder))


@pytest.mark.parametrize("text", [text for text, _ in EDGES])
def test_edge_values_never_reach_an_internal_error(text, tmp_path):
    commands_on(text, tmp_path, [["run", "--engine", "numba"], *COMMANDS])


# What a person might type after --set NAME=: each value once an exit 3 for some option or other.
TYPED = ["0", "-1", "0.5", "2", "1e300", "9223372036854775807", "1e19", "nan", "inf", "", "abc", "1,2", "[3]"]
OPTIONS = ["batch", "every", "seed", "shuffle", "validation", "reduce", "lr", "momentum", "weight_decay"]


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(OPTIONS), st.sampled_from(TYPED), max_size=3))
@example({"every": "1e300"})  # numba could not type the loop's argument
@example({"batch": "1e19", "seed": "1e300"})
def test_fuzzed_options_never_reach_an_internal_error(engine, options):
    """batch=1 over 3 epochs of 2 examples with every option as typed: `--engine numba` compiles
    the run's loop, the default (numpy) interprets a run this small."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "net.nn").write_text(NET + "data x = [[0.5, 1], [1, 2]], k = [0, 2]\n")
        sets = [item for name, value in {"epochs": "3", "batch": "1", **options}.items()
                for item in ("--set", f"{name}={value}")]
        ran(["run", "--engine", engine, str(Path(folder) / "net.nn"), *sets])
