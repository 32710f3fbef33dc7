"""A Pygments lexer for graphdsl specs, registered as the `nn` and `graphdsl` lexers (and for `*.nn`
files) through the package's `pygments.lexers` entry point, so that `pygmentize -l nn`, Sphinx,
MkDocs and nbconvert highlight ```nn blocks once graphdsl is installed.

Its words come from where the language defines them: keywords, declarations, operators and the
patterns of names, numbers, strings and comments from the grammar; functions from the front end,
which offers every op of the registry that has a `call` facet; initialisers and optimizers from
their tables.
"""
from __future__ import annotations

import re

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

from graphdsl.editor.vocabulary import DECLARATIONS, KEYWORDS, SYMBOLS, terminal
from graphdsl.frontend.functions import FUNCTIONS, INITIALISERS
from graphdsl.frontend.names import BUILTINS
from graphdsl.training.optimizers import OPTIMIZERS

NAME = terminal("NAME")


def whole_word(names) -> str:
    """One of `names`, as a word of its own (a group that captures nothing)."""
    return r"\b(?:" + "|".join(map(re.escape, sorted(names))) + r")\b"


def symbol(symbols) -> str:
    """One of `symbols`, the longest first."""
    return "|".join(map(re.escape, sorted(symbols, key=len, reverse=True)))


def called(names) -> str:
    """A call of one of `names`, written directly against its `(` (the grammar's CALL token): two groups."""
    return rf"({whole_word(names)})(\()"


class GraphdslLexer(RegexLexer):
    """graphdsl's `.nn` specs: declarations, settings, expressions, requests and training."""

    name = "graphdsl"
    aliases = ["nn", "graphdsl"]
    filenames = ["*.nn"]
    mimetypes = ["text/x-graphdsl"]
    url = "https://pypi.org/project/graphdsl/"
    flags = re.MULTILINE

    tokens = {
        "root": [
            # a declaration names the value it defines, and so does the left of an assignment
            (rf"({whole_word(DECLARATIONS)})([ \t]+)({NAME})",
             bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (rf"^([ \t]*)({NAME})([ \t]*)(=)(?!=)", bygroups(Whitespace, Name.Variable, Whitespace, Operator)),
            include("expression"),
        ],
        "expression": [
            (r"\n", Whitespace),
            (r"[ \t\f]+", Whitespace),
            (terminal("COMMENT"), Comment.Single),
            (r"\\(?=[ \t]*\r?\n)", Punctuation),  # the line goes on
            (terminal("STRING"), String.Double),
            (whole_word(KEYWORDS), Keyword),
            (called(FUNCTIONS), bygroups(Name.Builtin, Punctuation), "call"),
            (called((*INITIALISERS, *OPTIMIZERS)), bygroups(Name.Function, Punctuation), "call"),
            (rf"({NAME})(\()", bygroups(Name.Function, Punctuation), "call"),  # size(x), or a misspelt function
            (r"\(", Punctuation, "call"),
            (r"\[", Punctuation, "list"),
            (whole_word(BUILTINS), Name.Constant),
            (terminal("NUMBER"), Number),
            (NAME, Name),
            (r"[,;]", Punctuation),
            (symbol(set(SYMBOLS) - set("()[],;")), Operator),
            (r"[)\]]", Punctuation),  # a closer of no bracket: the front end reports it, the lexer goes on
        ],
        "call": [
            (rf"({NAME})([ \t]*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),  # a setting: axis=0
            (r"\)", Punctuation, "#pop"),
            include("expression"),
        ],
        "list": [
            (r"\]", Punctuation, "#pop"),
            include("expression"),
        ],
    }
