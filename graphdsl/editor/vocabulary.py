"""The words and tokens of the graphdsl language that only its grammar (frontend/graphdsl.lark)
spells out, read from the grammar itself for the lexer and the language server: keywords,
declaration kinds, operators, the words of a `for` block and terminal patterns. (Functions and
initialisers come from frontend/functions.py, which offers every op with a `call` facet;
optimizers and options from the training tables.)"""
from __future__ import annotations

import re
from functools import cache

from graphdsl.frontend.parser import grammar_text


@cache
def grammar() -> str:
    """The grammar without its comments, whose examples quote words that are not keywords."""
    return "\n".join(line for line in grammar_text().splitlines() if not line.lstrip().startswith("//"))


def grammar_rules() -> str:
    """The grammar's rules alone: no terminals (whose patterns quote characters) and no directives."""
    return "\n".join(line for line in grammar().splitlines() if not re.match(r"[A-Z_][A-Z0-9_]*(\.\d+)?:|%", line))


def terminal(name: str) -> str:
    """The regular expression of one of the grammar's terminals, such as NAME or NUMBER."""
    found = re.search(rf"^{name}(?:\.\d+)?:\s*/(.*)/\s*$", grammar(), re.MULTILINE)
    if found is None:
        raise LookupError(f"the grammar has no terminal {name}")
    return found.group(1)


def quoted_words(rules: str) -> tuple:
    """The words the rules spell out as literals (`"input"`), in order, each once."""
    return tuple(dict.fromkeys(re.findall(r'"([A-Za-z_]+)"', rules)))


def rule(name: str) -> str:
    """The text of one of the grammar's rules, up to the next rule."""
    return re.search(rf"^!?{name}:(.*?)(?=^\S|\Z)", grammar_rules(), re.MULTILINE | re.DOTALL).group(1)


def quoted_symbols(rules: str) -> tuple:
    """The operators and punctuation the rules spell out as literals (`"+"`, `","`), each once."""
    return tuple(dict.fromkeys(re.findall(r'"([^"\w\s]+)"', rules)))


KEYWORDS = quoted_words(grammar_rules())
SYMBOLS = quoted_symbols(grammar_rules())
DECLARATIONS = quoted_words(rule("kind"))  # what a leaf is declared as: input, target, ...
# A `for` block: its first word opens it, its last closes it
BLOCK_OPENS, *_, BLOCK_ENDS = quoted_words(rule("repeat"))
