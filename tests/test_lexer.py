"""The `nn` Pygments lexer: found through the package's entry point, every shipped spec and every
```nn example in the docs lexed without an error token, and each kind of word given its token."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pygments import lex
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, String

from graphdsl.editor.lexer import GraphdslLexer
from graphdsl.frontend.functions import FUNCTIONS

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.nn"))


def docs_examples() -> list:
    """(where, text) of each ```nn block in docs/*.md (not ```nn-error, whose specs are wrong on purpose)."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^```nn\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
            found.append((f"{page.name}:{text.count(chr(10), 0, block.start()) + 1}", block.group(1)))
    return found


EXAMPLES = docs_examples()


def tokens(text: str) -> list:
    return [(kind, value) for kind, value in lex(text, GraphdslLexer()) if value.strip()]


def test_the_specs_and_examples_are_there():
    assert len(SPECS) >= 20 and len(EXAMPLES) >= 20


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_lexes_without_an_error_token(path):
    text = path.read_text(encoding="utf-8")
    lexed = list(lex(text, GraphdslLexer()))
    assert [value for kind, value in lexed if kind in Error] == []
    assert "".join(value for _, value in lexed) == text  # nothing lost or added


@pytest.mark.parametrize("where, text", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_every_docs_example_lexes_without_an_error_token(where, text):
    assert [value for kind, value in lex(text, GraphdslLexer()) if kind in Error] == []


def test_pygments_finds_the_lexer_by_its_names_and_by_filename():
    assert isinstance(get_lexer_by_name("nn"), GraphdslLexer)
    assert isinstance(get_lexer_by_name("graphdsl"), GraphdslLexer)
    assert isinstance(get_lexer_for_filename("net.nn"), GraphdslLexer)


def test_pygmentize_highlights_a_spec():
    done = subprocess.run([sys.executable, "-m", "pygments", "-l", "nn", "-f", "raw", str(ROOT / "specs" / "mlp.nn")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Token.Keyword.Declaration\t'param'" in done.stdout
    assert "Token.Name.Builtin\t'softmax_ce'" in done.stdout


def test_each_kind_of_word_gets_its_token():
    text = ("param W[2, 2] = xavier(seed=0)  # weights\n"
            "h = sigmoid(W x + b)\n"
            "L = mse(h, y, reduce=sum) + 2 pi\n"
            "grad L wrt W\n"
            "minimize L using adam(lr=0.01), epochs=3\n"
            'data "train.csv"\n')
    found = tokens(text)
    for expected in [(Keyword.Declaration, "param"), (Name.Variable, "W"), (Name.Function, "xavier"),
                     (Name.Attribute, "seed"), (Number, "0"), (Comment.Single, "# weights"), (Name.Variable, "h"),
                     (Name.Builtin, "sigmoid"), (Name.Builtin, "mse"), (Name.Attribute, "reduce"),
                     (Name.Constant, "pi"), (Keyword, "grad"), (Keyword, "wrt"), (Keyword, "minimize"),
                     (Keyword, "using"), (Name.Function, "adam"), (Keyword, "data"), (String.Double, '"train.csv"')]:
        assert expected in found


def test_a_function_name_apart_from_its_bracket_is_a_name_not_a_call():
    # `sigmoid (z)` multiplies, as the language reads it; highlighting must not say otherwise
    assert tokens("h = sigmoid (z)")[2] == (Name, "sigmoid")


def test_every_function_a_spec_can_call_is_highlighted_as_one():
    assert {name: tokens(f"y = {name}(x)")[2][0] for name in FUNCTIONS} == {name: Name.Builtin for name in FUNCTIONS}
