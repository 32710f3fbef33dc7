"""Fuzzing the front end: no text makes graphdsl raise anything but a located SpecError.

Specs come from the grammar itself (Hypothesis' from_lark) and from mutating the valid
specs in specs/ (tokens deleted, duplicated, swapped or replaced; random characters;
huge numbers; deep nesting; very long lines). Each case is parsed and lowered with the
NumPy engine, so nothing is compiled: it must end in a model or a SpecError whose
message formats and whose location points inside the text.

About 10,000 cases run by default (derandomized, so CI is deterministic); set
GRAPHDSL_FUZZ_EXAMPLES=200000 for a long run. Each Hypothesis example checks more than one
spec (see the tests), so the shares below are of examples; `pytest -s` prints the case count.
"""
import collections
import os
import re
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.lark import LarkStrategy
from lark import Lark
from lark.grammar import NonTerminal

import graphdsl
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS
from graphdsl.frontend.parser import grammar_text

ROOT = Path(__file__).resolve().parents[1]
SEEDS = sorted((ROOT / "specs").glob("*.nn")) + sorted((ROOT / "tests" / "golden").glob("*.nn"))
TEXTS = [p.read_text(encoding="utf-8") for p in SEEDS]
TOTAL = int(os.environ.get("GRAPHDSL_FUZZ_EXAMPLES", "10000"))
SECONDS_PER_CASE = 10  # far above any real case: only a hang gets near it


def fuzz_settings(share: float):
    return settings(max_examples=max(1, int(TOTAL * share)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@contextmanager
def time_limit(seconds: int):
    """A hang fails the case instead of stalling the run (SIGALRM: the main thread on Unix)."""
    def expire(signum, frame):
        raise TimeoutError(f"a case ran over {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


CASES = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_count():
    began = time.perf_counter()
    yield
    print(f"\nfuzzed {CASES['cases']} cases ({CASES['errors']} SpecErrors) in {time.perf_counter() - began:.1f} s")


def outcome(text: str) -> str:
    """'ok' or 'error'; any other exception is the bug this file hunts for."""
    CASES["cases"] += 1
    with time_limit(SECONDS_PER_CASE):
        try:
            graphdsl.compile(text, filename="fuzz.nn", engine="numpy")
        except graphdsl.SpecError as err:
            message = str(err)  # formatting the message must not fail either
            assert message.startswith("fuzz.nn:"), message
            assert err.span is not None, message  # every problem in a spec's text has a place in it
            lines = max(1, len(text.splitlines()) + 1)
            assert 1 <= err.line <= lines and err.column >= 1, (err.span, message)
            assert message.startswith(f"fuzz.nn:{err.line}:{err.column}: error: "), message
            CASES["errors"] += 1
            return "error"
    return "ok"


# -- specs from the grammar ------------------------------------------------------------------

# Names that mean something to graphdsl, so generated specs get past the parser into lowering.
POOL = ["x", "y", "W", "b", "h", "z", "L", "k", "n", "hidden", "lr", "pi", "input", "show", "for",
        *FUNCTIONS, *INITIALISERS, "sgd", "adam", "epochs", "batch", "seed", "reduce", "mean", "axis"]


def padded(strategy, before=" ", after=""):
    return strategy.map(lambda s: f"{before}{s}{after}")


class BoundedLark(LarkStrategy):
    """The strategy behind from_lark, with a size bound. An expression grammar picked uniformly
    grows without end (an `expr` holds on average more than one `expr`), so most of from_lark's
    draws ran into Hypothesis' size limit and were thrown away (about 70 ms a spec). After
    RULES free choices this takes each rule's shortest expansion, which ends in a name or number."""

    RULES = 40

    def do_draw(self, data):
        self.left = self.RULES
        return super().do_draw(data)

    def draw_symbol(self, data, symbol, draw_state):
        if isinstance(symbol, NonTerminal):
            self.left -= 1
            if self.left < 0:
                shortest = self.nonterminal_strategies[symbol.name].elements[0]  # sorted by length
                for part in shortest:
                    self.draw_symbol(data, part, draw_state)
                return
        super().draw_symbol(data, symbol, draw_state)


def grammar_strategy():
    """from_lark joins terminals with nothing between them, and the grammar leans on its lexer
    (CALL and INDEX are told apart by what touches the bracket; _NL by the bracket post-lexer),
    so the terminals that need it get explicit strategies with the spacing a person would type.
    The %ignore lines go: from_lark would draw a coin for ignored text after every symbol, which
    doubles the cost of generating, and the explicit spacing, comments in _NL and the mutated
    specs below cover that text."""
    text = "\n".join(line for line in grammar_text().splitlines() if not line.startswith("%ignore"))
    lark = Lark(text, parser="lalr")
    # Regex strategies cost most of the drawing time, so terminals come from small pools and st.text.
    letters = "abcxyzWLk_0123456789"
    names = st.one_of(st.sampled_from(POOL), st.text(letters, min_size=1, max_size=6).map(lambda s: "v" + s))
    keywords = {t.name: st.just(f" {t.pattern.value} ") for t in lark.terminals
                if t.pattern.type == "str" and t.pattern.value.isalpha()}
    explicit = {
        **keywords,
        "NAME": padded(names),
        "CALL": padded(names, after="("),
        "INDEX": st.just("["),  # directly against what it indexes: NAME, `)`, `]` and `'` end without a space
        "NUMBER": padded(st.one_of(st.sampled_from(["0", "1", "2", "0.5", "3", ".5", "2.", "1e-3", "1e400",
                                                    "1e-400", "9" * 400]),
                                   st.integers(0, 10**6).map(str)), after=" "),
        "STRING": st.text(st.characters(codec="utf-8", exclude_characters='"\r\n'), max_size=8)
                    .map(lambda s: f' "{s}"'),
        "_NL": st.sampled_from(["\n", "\n  ", "\n# a comment\n", "\r\n", " \\\n\n"]),
    }
    return BoundedLark(lark, None, explicit, st.characters(codec="utf-8"))


@fuzz_settings(0.22)
@given(grammar_strategy(), st.floats(0, 1))
def test_specs_from_the_grammar(text, cut):
    """Two cases: the spec, and the spec cut short at a random point."""
    outcome(text)
    outcome(text[:int(len(text) * cut)])


# -- mutated specs ---------------------------------------------------------------------------

TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|[0-9.]+(?:[eE][+-]?[0-9]+)?|.", re.S)
NASTY = ["1e400", "1e-400", "9" * 400, "1" * 5000, "0" * 400 + "1", ".", "(" * 500 + "x" + ")" * 500,
         "[" * 500, "-" * 500 + "x", "x" + "'" * 500, "x" + "^x" * 500, " + x" * 2000, "\\\n", "\n", "\t",
         "\x00", "\ufeff", "\u00e9", "\U0001f600", '"', "#", ";", "@", "=", ",", "size(x)", "[0]", "x[",
         "for i in hidden", "end", "setting hidden = [1e9, 2]", "param W[100000, 100000] = 0",
         "input x[1e300]", "x[-1e300]", "sum(x, axis=99999999999999999999)", "2^1e308"]


def tokens(text: str) -> list:
    return TOKEN.findall(text)


@st.composite
def mutated(draw):
    """A valid spec with one to four edits: delete, duplicate, swap, replace, insert, truncate."""
    """Every spec on the way is a case: after one edit, after two, ..."""
    toks, texts = tokens(draw(st.sampled_from(TEXTS))), []
    for _ in range(draw(st.integers(1, 4))):
        if not toks:
            break
        i, j = draw(st.integers(0, len(toks) - 1)), draw(st.integers(0, len(toks) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "insert", "truncate", "bytes"]))
        if edit == "delete":
            del toks[i]
        elif edit == "duplicate":
            toks.insert(i, toks[i])
        elif edit == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif edit == "replace":
            toks[i] = draw(st.sampled_from(NASTY + toks))
        elif edit == "insert":
            toks.insert(i, draw(st.sampled_from(NASTY)))
        elif edit == "truncate":
            toks = toks[:i]
        else:
            toks.insert(i, draw(st.text(min_size=1, max_size=8)))
        texts.append("".join(toks))
    return texts


@fuzz_settings(0.26)
@given(mutated())
def test_mutated_specs(texts):
    for text in texts:
        outcome(text)


# -- extremes, written out ---------------------------------------------------------------------

EXTREMES = {
    "huge number": "input x = 1e400\n",
    "tiny number": "input x = 1e-400\nshow x\n",
    "400 digits": f"input x = {'9' * 400}\n",
    "5000 digits": f"input x = {'1' * 5000}\n",
    "huge shape": "param W[100000, 100000] = 0\n",
    "huge declared input": "input x[1e300]\nshow x\n",
    "huge index": "input x = [1, 2]\ny = x[1e300]\n",
    "huge exponent": "input x = 2\ny = x^1e308\nshow y\n",
    "500 parens": "input x = 1\ny = " + "(" * 500 + "x" + ")" * 500 + "\n",
    "500 brackets": "y = " + "[" * 500 + "1" + "]" * 500 + "\n",
    "500 calls": "input x = 1\ny = " + "sigmoid(" * 500 + "x" + ")" * 500 + "\n",
    "500 minus signs": "input x = 1\ny = " + "-" * 500 + "x\n",
    "500 transposes": "input x = [1, 2]\ny = x" + "'" * 500 + "\n",
    "500 powers": "input x = 1\ny = x" + "^x" * 500 + "\n",
    "10000 sums": "input x = 1\ny = x" + " + x" * 10000 + "\n",
    "long line": "input x = [" + ", ".join(["1"] * 10000) + "]\nshow x\n",
    "long name": "input " + "a" * 100000 + " = 1\n",
    "unclosed 5000": "y = " + "(" * 5000 + "\n",
    "nul byte": "input x = 1\x00\n",
    "bom": "\ufeffinput x = 1\n",
    "only a comment": "# nothing\n",
    "empty": "",
    "huge setting": "setting n = 1e300\ninput x[n]\nshow x\n",
    "huge loop": "setting hidden = [1e9]\nfor n in hidden\nparam W[n] = 0\nend\n",
    "2000 names used before defined": "input x = 1\n" + "".join(f"a{i} = a{i + 1} + 1\n" for i in range(2000))
                                      + "a2000 = x\nshow a0\n",
    "2000 consts used before defined": "".join(f"const c{i} = c{i + 1} + 1\n" for i in range(2000))
                                       + "const c2000 = 1\ninput x = 1\ny = c0 x\n",
    "2000 names in order": "input a0 = 1\n" + "".join(f"a{i} = a{i - 1} + 1\n" for i in range(1, 2000)),
    "300 consts in order": "const c0 = 1\n" + "".join(f"const c{i} = c{i - 1} + 1\n" for i in range(1, 300)),
    "300 layers": "setting hidden = [" + ", ".join(["2"] * 300) + "]\ninput x[2] = 1\nh = x\nfor n in hidden\n"
                  "param W[n, 2] = 1\nh = tanh(W h)\nend\nL = sum(h)\ngrad L wrt W\n",
}


@pytest.mark.parametrize("text", EXTREMES.values(), ids=EXTREMES.keys())
def test_extremes(text):
    outcome(text)
