"""Repeated loop nests made one function each: the layers of a network of one width compute the
same loops on other buffers, so each distinct nest becomes an njit function, written once and
called once a layer. Numba types and lowers a function once, so compile time follows the number
of distinct layers, not of layers. A nest met fewer than LAYERS times stays inline, where it costs no call."""
from __future__ import annotations

import hashlib
import re
from collections import Counter

EXTERNAL = re.compile(r"\b[vfs]\d+\b")           # node values, their flat views and scratch: arguments
TEMPORARY = re.compile(r"\b[xt]\d+\b")           # fused values and built values: the function's own
# how often a nest must repeat to be made a function: the layers of a deep network. A network of
# two hidden layers keeps every nest inline, where a step of a small one (XOR, Iris) spends no
# time on calls
LAYERS = 3
REBINDS = re.compile(r"^\s*[vfs]\d+\s*=[^=]")     # a statement giving a value a new object, not filling it
# names of the training loop's own, which a node's statements never read; a nest that did could
# not be moved out of the loop
LOOP_LOCALS = re.compile(r"(?<![.\w])(t|e|s|size|count|mean|ids|ids_e|theta|grad|state|hyper|order|trace|row|r|"
                         r"log|loss|every|epoch0|t0|work)\b")


def outlined(blocks: list, jit: str) -> tuple[list, dict]:
    """(blocks, functions): `blocks` are each node's statements, in order; a block whose nest,
    renamed, another block repeats becomes a call of one function, in `functions` by name."""
    shaped = [canonical(code) for code in blocks]
    repeats = Counter(text for text, _ in filter(None, shaped))
    out, functions = [], {}
    for code, found in zip(blocks, shaped):
        if found is None or repeats[found[0]] < LAYERS:
            out.append(code)
            continue
        text, args = found
        name = "n_" + hashlib.sha256(text.encode()).hexdigest()[:12]
        params = ", ".join(f"a{i}" for i in range(len(args)))
        functions[name] = f"{jit}\ndef {name}({params}):\n{text}"
        out.append([f"{name}({', '.join(args)})"])
    return out, functions


def canonical(code: list) -> tuple[str, list] | None:
    """A block's statements with the values it reads and fills renamed a0, a1, ... (the names
    they stand for, in order) and its temporaries by order of use; None for a block that cannot
    move into a function of its own (it rebinds a value, or reads the loop's own names)."""
    if len(code) < 2 or any(REBINDS.match(stmt) or LOOP_LOCALS.search(stmt) for stmt in code):
        return None  # one statement is no nest: a call would only add to it
    args, temps = [], []

    def argument(match) -> str:
        if match.group() not in args:
            args.append(match.group())
        return f"a{args.index(match.group())}"

    def temporary(match) -> str:
        if match.group() not in temps:
            temps.append(match.group())
        return f"{match.group()[0]}{temps.index(match.group())}"
    body = [TEMPORARY.sub(temporary, EXTERNAL.sub(argument, stmt)) for stmt in code]
    return "\n".join(f"    {stmt}" for stmt in body), args
