"""Text to AST: the Lark grammar, a bracket-aware post-lexer, and error messages in the user's words."""
from __future__ import annotations

import math
import re
import threading
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError
from lark.lexer import PatternStr

from graphdsl.frontend import ast
from graphdsl.errors import Span, SpecError
from graphdsl.frontend.functions import FUNCTIONS

OPENERS = {"LPAR", "LSQB", "CALL", "INDEX"}
CLOSERS = {"RPAR", "RSQB"}

# How a pattern-matched terminal is named to a user; literal terminals show their text.
TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "CALL": "a function call",
    "INDEX": "an index `[`",
    "STRING": "a quoted path",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}

# Hints name a group of alternatives in one phrase: what may follow a complete
# operand, what may start an expression, what may start a statement.
OPERATOR_WORDS = {"`+`", "`-`", "`*`", "`/`", "`@`", "`^`", "`'`"}
EXPR_WORDS = {"a name", "a number", "a function call", "`(`", "`[`", "`-`"}
STMT_WORDS = {"a name", "`input`", "`target`", "`param`", "`const`", "`show`", "`grad`", "`jacobian`",
              "`setting`", "`data`", "`minimize`", "`for`"}
# Levels of operators, calls and brackets in one expression. Lowering and the AST transform
# recurse once or twice a level, so this keeps far inside Python's recursion limit (1000),
# while no spec a person writes comes near it.
MAX_DEPTH = 100
PARSING = threading.Lock()

KEYWORDS = {"input", "target", "param", "const", "show", "grad", "jacobian", "setting", "data", "minimize",
            "for", "in", "end", "using"}


def grammar_text() -> str:
    """The grammar, which sits beside this module and ships inside the package."""
    return resources.files(__package__).joinpath("graphdsl.lark").read_text()


class BracketPostLex:
    """Drops newlines inside brackets, so literals and calls may span lines."""

    always_accept = ("_NL",)

    def __init__(self):
        self.open: list[Token] = []
        self.swallowed: Token | None = None

    def process(self, stream):
        self.open, self.swallowed = [], None
        for tok in stream:
            if tok.type in OPENERS:
                self.open.append(tok)
            elif tok.type in CLOSERS and self.open:
                self.open.pop()
                if not self.open:  # a newline swallowed by a closed bracket says nothing later
                    self.swallowed = None
            if tok.type == "_NL" and self.open:
                self.swallowed = self.swallowed or tok
                continue
            yield tok


@lru_cache(maxsize=1)
def _lark() -> Lark:
    # No cache: Lark's is a pickle, which runs code as it loads, so one planted in the cache would run
    # its author's code in every command. Signing it (an HMAC with a per-user key) would save about
    # 40 ms of start-up; building the parser afresh is simpler and cannot be fooled.
    return Lark(grammar_text(), parser="lalr", propagate_positions=True,
                postlex=BracketPostLex(), maybe_placeholders=False)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token, trim_end: int = 0) -> Span:
    return Span(tok.line, tok.column, tok.end_line, tok.end_column - trim_end)


def _ident(tok: Token) -> ast.Ident:
    return ast.Ident(str(tok), _tok_span(tok))


def _number(tok: Token) -> ast.Num:
    value = float(tok)
    if math.isinf(value):
        raise SpecError(f"the number {tok} is too large to represent", _tok_span(tok),
                        hint="numbers must be below about 1.8e308")
    return ast.Num(value, str(tok), _tok_span(tok))


def binop(op: str):
    """The transformer method for one binary operator (`juxt` is a product by juxtaposition)."""
    def build(self, meta, ch):
        return ast.BinOp(op, ch[0], ch[1], _span(meta))
    return build


@v_args(meta=True)
class ToAst(Transformer):
    def start(self, meta, stmts):
        return ast.Program(list(stmts))

    def decl(self, meta, ch):
        kind, name, *rest = ch
        shape = rest.pop(0) if rest and isinstance(rest[0], tuple) else None
        value = rest[0] if rest else None
        return ast.Decl(str(kind.children[0]), _ident(name), shape, value, _span(meta))

    def shape(self, meta, dims):
        return tuple(dims)

    def assign(self, meta, ch):
        return ast.Assign(_ident(ch[0]), ch[1], _span(meta))

    def setting(self, meta, ch):
        return ast.Setting(_ident(ch[0]), ch[1], _span(meta))

    def data_files(self, meta, ch):
        return ast.Data(files=tuple((str(t)[1:-1], _tok_span(t)) for t in ch), span=_span(meta))

    def data_builtin(self, meta, ch):
        return ast.Data(builtin=_ident(ch[0]), span=_span(meta))

    def data_inline(self, meta, ch):
        return ast.Data(arrays=tuple(ch), span=_span(meta))

    def minimize(self, meta, ch):
        return ast.Minimize(_ident(ch[0]), ch[1], tuple(ch[2:]), _span(meta))

    def optimizer(self, meta, ch):
        return self.call(meta, ch)

    def option(self, meta, ch):
        return self.kwarg(meta, ch)

    def path_option(self, meta, ch):
        return (_ident(ch[0]), ast.Quoted(str(ch[1])[1:-1], _tok_span(ch[1])))

    def repeat(self, meta, ch):
        var, over, *body = ch
        return ast.Repeat(_ident(var), _ident(over), tuple(body), _span(meta))

    def name_list(self, meta, names):
        return tuple(_ident(n) for n in names)

    def show(self, meta, ch):
        return ast.Show(ch[0], _span(meta))

    def grad(self, meta, ch):
        return ast.Grad(_ident(ch[0]), ch[1], _span(meta))

    def jacobian(self, meta, ch):
        return ast.Jacobian(_ident(ch[0]), _ident(ch[1]), ch[2] if len(ch) > 2 else None, _span(meta))

    add, sub, mul, div, matmul, juxt, pow = map(binop, ["+", "-", "*", "/", "@", "juxt", "^"])

    def neg(self, meta, ch):
        return ast.Neg(ch[0], _span(meta))

    def transpose(self, meta, ch):
        return ast.Transpose(ch[0], _span(meta))

    def index(self, meta, ch):
        return ast.Index(ch[0], tuple(ch[2:]), _span(meta))

    def range(self, meta, ch):
        parts = [None]
        for c in ch:
            if isinstance(c, Token):  # a `:` starts the next part
                parts.append(None)
            else:
                parts[-1] = c
        return ast.Range(*parts, *[None] * (3 - len(parts)), _span(meta))

    def signed(self, meta, ch):
        num = _number(ch[-1])
        if len(ch) == 1:
            return num
        return ast.Num(-num.value, "-" + num.text, _span(meta))

    def number(self, meta, ch):
        return _number(ch[0])

    def name(self, meta, ch):
        return ast.Name(str(ch[0]), _tok_span(ch[0]))

    def call(self, meta, ch):
        func = ast.Ident(str(ch[0])[:-1], _tok_span(ch[0], trim_end=1))
        kinds = [isinstance(a, tuple) for a in ch[1:]]
        if False in kinds[kinds.index(True) if True in kinds else len(kinds):]:
            first = ch[1:][kinds.index(True)][0]
            raise SpecError("a positional argument follows a keyword argument", first.span,
                            hint="put keyword arguments such as `reduce=sum` last")
        args = tuple(a for a in ch[1:] if not isinstance(a, tuple))
        kwargs = tuple(a for a in ch[1:] if isinstance(a, tuple))
        return ast.Call(func, args, kwargs, _span(meta))

    def kwarg(self, meta, ch):
        return (_ident(ch[0]), ch[1])

    def stack(self, meta, ch):
        return ast.Stack(tuple(ch), _span(meta))

    def concat(self, meta, ch):
        return ast.Concat(tuple(ch), _span(meta))


def _describe(term: str) -> str:
    if term in TERMINAL_WORDS:
        return TERMINAL_WORDS[term]
    pattern = _lark().get_terminal(term).pattern
    return f"`{pattern.value}`" if isinstance(pattern, PatternStr) else term.lower()


def _expected(names) -> str:
    words = {_describe(n) for n in names if n != "INDEX"}
    groups = []
    if OPERATOR_WORDS <= words:  # after an operand a juxtaposed expression may follow too
        words -= OPERATOR_WORDS | EXPR_WORDS
        groups.append("an operator")
    elif EXPR_WORDS <= words:
        words -= EXPR_WORDS
        groups.append("an expression")
    if STMT_WORDS <= words:
        words -= STMT_WORDS | {"the end of the line", "the end of the file"}
        groups.append("a statement, such as `z = ...`, `input x[2]` or `show z`")
    words = groups + sorted(words)
    if not words or len(words) > 6:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _open_brackets(text: str) -> list:
    """Offsets of the brackets in text that are still open at its end (comments skipped)."""
    stack, comment = [], False
    for i, ch in enumerate(text):
        if ch == "\n":
            comment = False
        elif comment or ch == "#":
            comment = True
        elif ch in "([":
            stack.append(i)
        elif ch in ")]" and stack:
            stack.pop()
    return stack


def _unclosed(postlex: BracketPostLex, text: str) -> Token | None:
    """The innermost bracket left open at the error that no later text closes, if any."""
    if postlex.swallowed is None:
        return None
    for opener in reversed(postlex.open):
        at = opener.end_pos - 1  # a CALL token ends with its `(`
        if _open_brackets(text[at:])[:1] == [0]:
            return opener
    return None


MODULES = ("np", "numpy", "torch", "math", "jnp", "jax", "F", "nn", "tf")  # where a student's calls come from


def _dotted_error(err: UnexpectedCharacters, text: str) -> SpecError | None:
    """`W.T`, `np.tanh(x)` and `x.relu()`: Python's notation for a transpose, a module's function
    and a method, which a spec writes as `W'`, `tanh(x)` and `relu(x)`."""
    line_start = text.rfind("\n", 0, err.pos_in_stream) + 1
    before = re.search(r"(?<![A-Za-z0-9_.])[A-Za-z_][A-Za-z0-9_]*$", text[line_start:err.pos_in_stream])
    after = re.match(r"\.([A-Za-z_][A-Za-z0-9_]*)(\()?", text[err.pos_in_stream:])
    if err.char != "." or before is None or after is None:
        return None
    owner, name, call = before.group(), after.group(1), after.group(2)
    span = Span(err.line, err.column - len(owner), err.line, err.column + len(after.group()))
    if name == "T" and not call:
        return SpecError(f"`{owner}.T` is Python's transpose", span, hint=f"write `{owner}'` (a prime) or `transpose({owner})`")
    known = name in FUNCTIONS
    if call and owner in MODULES:
        return SpecError(f"`{owner}.{name}(` calls into a Python module", span,
                         hint=f"call graphdsl's function by its name alone, as in `{name}(...)`" if known else
                         f"graphdsl has no function `{name}`; the functions are {', '.join(sorted(FUNCTIONS))}")
    if call:
        return SpecError(f"`{owner}.{name}()` is a Python method call", span,
                         hint=f"write `{name}({owner})`" if known else
                         f"graphdsl has no function `{name}`; the functions are {', '.join(sorted(FUNCTIONS))}")
    return SpecError(f"`{owner}.{name}`: a name cannot have a part after a `.`", span,
                     hint="names are letters, digits and underscores")


def _character_error(err: UnexpectedCharacters, text: str, hint: str | None) -> SpecError:
    span = Span(err.line, err.column, err.line, err.column + 1)
    dotted = _dotted_error(err, text)
    if dotted:
        return dotted
    if err.char in "0123456789.":
        word = re.match(r"[0-9.eE]*", text[err.pos_in_stream:]).group()
        return SpecError(f"`{word}` is not a number", Span(err.line, err.column, err.line, err.column + len(word)),
                         hint="a number has at most one decimal point, as in `1.25` or `2e-3`")
    if err.char == "[":
        return SpecError("only a name, a call or a bracket can be indexed", span,
                         hint="write the index directly after the name, as in `x[0]`")
    if err.char == "\r":
        return SpecError("a line ends in a carriage return alone (U+000D)", span,
                         hint="save the file with Unix (\\n) or Windows (\\r\\n) line endings")
    if not err.char.isprintable():  # shown between backticks it would look like nothing
        return SpecError(f"unexpected invisible character U+{ord(err.char):04X}", span,
                         hint="delete it: a byte-order mark or zero-width space, as copied text can carry")
    return SpecError(f"unexpected character `{err.char}`", span, hint=_written_instead(err.char) or hint)


# What a whiteboard's or a word processor's symbols are written as in a spec.
ASCII_FOR = {**dict.fromkeys("\u2212\u2013\u2014", "write a minus as `-`"),
             **dict.fromkeys("\u00b7\u22c5\u00d7\u2217", "write a matrix product side by side (`W x`), or `*` "
                                                           "for entry by entry"),
             "\u00f7": "write a division as `/`", **dict.fromkeys("\u2019\u2032", "write a transpose as `'`"),
             "\u03c3": "write the sigmoid as `sigmoid(z)`", "\u2211": "write a sum as `sum(x)`",
             "\u00bd": "write a half as `1/2` or `0.5`"}


def _written_instead(char: str) -> str | None:
    """The hint for a character that is not graphdsl's but has a spelling in it."""
    if char in ASCII_FOR:
        return ASCII_FOR[char]
    if char in "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b":
        return "write a power with `^`, as in `x^2` or `x^-1`"
    if char in "\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089":
        return "write a subscript as part of the name, as in `x1` or `x_1`"
    if char.isdigit():
        return "write digits as 0-9"
    if char.isalpha():
        return "names are ASCII letters, digits and `_`, as in `y_hat` or `sigma`"
    return None


def _closer_error(tok: Token, text: str) -> SpecError | None:
    """A `)` or `]` that closes nothing, or closes the wrong kind of bracket."""
    still_open = _open_brackets(text[:tok.start_pos])
    if not still_open:
        left = "(" if tok == ")" else "["
        return SpecError(f"`{tok}` has no matching `{left}`", _tok_span(tok), hint=f"remove it, or add the `{left}` it closes")
    left = text[still_open[-1]]
    if (left, str(tok)) in (("(", ")"), ("[", "]")):
        return None
    line = text.count("\n", 0, still_open[-1]) + 1
    return SpecError(f"`{tok}` cannot close the `{left}` on line {line}", _tok_span(tok),
                     hint=f"close `{left}` with `{')' if left == '(' else ']'}`")


def _keyword_error(tok: Token, text: str) -> SpecError | None:
    """`show = x`: a keyword used as the name being assigned."""
    line = text.splitlines()[tok.line - 1]
    before = line[:tok.column - 1].split()
    if tok.type != "EQUAL" or len(before) != 1 or before[0] not in KEYWORDS:
        return None
    col = len(line) - len(line.lstrip()) + 1
    return SpecError(f"`{before[0]}` is a keyword and cannot be assigned to",
                     Span(tok.line, col, tok.line, col + len(before[0])), hint="choose another name")


def _double_star_error(tok: Token, text: str) -> SpecError | None:
    """`x**2`: Python's power, which a spec writes `x^2`."""
    if str(tok) != "*" or text[tok.start_pos - 1:tok.start_pos] != "*":
        return None
    return SpecError("`**` is Python's power", Span(tok.line, tok.column - 1, tok.line, tok.column + 1),
                     hint="write a power with `^`, as in `x^2`")


def _syntax_error(err: UnexpectedInput, postlex: BracketPostLex, text: str) -> SpecError:
    opener = _unclosed(postlex, text)
    if opener is not None:
        left, right = ("(", ")") if opener.type in ("CALL", "LPAR") else ("[", "]")
        span = Span(opener.end_line, opener.end_column - 1, opener.end_line, opener.end_column)
        return SpecError(f"`{left}` is never closed", span, hint=f"add `{right}` before the end of the statement")
    parser = getattr(err, "interactive_parser", None)
    # The parser's own answer is exact; the lexer's `allowed` also lists terminals it merely tolerates.
    expected = _expected(parser.accepts() if parser is not None else
                         getattr(err, "expected", None) or getattr(err, "allowed", None) or ())
    hint = f"expected {expected}" if expected else None
    if isinstance(err, UnexpectedCharacters):
        return _character_error(err, text, hint)
    tok = getattr(err, "token", None)
    if isinstance(err, UnexpectedEOF) or tok is None or tok.type == "$END":
        lines = text.splitlines() or [""]  # point just past the last character
        end = Span(len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        return SpecError("the spec ends in the middle of a statement", end, hint=hint)
    if tok.type == "_NL":
        if expected == "an expression":  # most likely the user meant the statement to go on
            hint += "; to go on to the next line, end this one with `\\`"
        return SpecError("this line ends before the statement is complete",
                         Span(tok.line, tok.column, tok.line, tok.column + 1), hint=hint)
    special = ((_closer_error(tok, text) if tok.type in CLOSERS else None) or _keyword_error(tok, text)
               or _double_star_error(tok, text))
    if special:
        return special
    what = {"NAME": f"name `{tok}`", "NUMBER": f"number `{tok}`",
            "CALL": f"call `{str(tok)[:-1]}(`"}.get(tok.type, f"`{tok}`")
    if tok == "+" and expected == "an expression":
        hint = "graphdsl has no unary plus: leave the `+` out"
    return SpecError(f"unexpected {what}", _tok_span(tok), hint=hint)


def _check_depth(tree: Tree) -> None:
    """A SpecError at the first node nested deeper than MAX_DEPTH; walks without recursion."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"this expression is nested more than {MAX_DEPTH} levels deep", _span(node.meta),
                            hint="give parts of it names of their own, as in `h = ...`")
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def parse(text: str, filename: str = "<spec>") -> ast.Program:
    """Parse spec text into an AST; any problem raises a located SpecError."""
    terminated = text if text.endswith("\n") else text + "\n"  # the grammar ends every statement with one
    parser = _lark()
    with PARSING:  # the post-lexer keeps its bracket state, read on errors, on the one shared parser
        try:
            tree = parser.parse(terminated)
            _check_depth(tree)
            return ToAst().transform(tree)
        except UnexpectedInput as err:
            raise _syntax_error(err, parser.options.postlex, terminated).located(filename, text) from None
        except SpecError as err:
            raise err.located(filename, text) from None
        except VisitError as err:
            if isinstance(err.orig_exc, SpecError):
                raise err.orig_exc.located(filename, text) from None
            raise
