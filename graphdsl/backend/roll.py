"""Repeated statements made one loop: the layers of a network of one shape run the same statements
on other buffers, one layer after another, so a run of k repeats of one stretch of statements
becomes `for layer in range(k):` over that stretch once (loop unrolling undone: rerolling).

Numba types and lowers, and LLVM optimises, the stretch once, so the training loop's code, like
the functions outline.py makes of repeated nests, follows the number of distinct layers, not of
layers: compile time and the memory of compiling stay flat with depth. Nothing is computed
differently: the same statements run on the same buffers in the same order.

What differs from layer to layer is read as an expression of `layer` (Realised): a number in
arithmetic progression (`4096 + 4160 * layer`), a row of a stack (the layers' buffers made as
one array of one more axis, `w0[layer]`), a view made alike of such values (a param's slice of
theta, a transpose, a flat view), made in the loop. Only what fits none of these is read from a
tuple of the layers' values (`u0[layer]`), whose code grows with its length.

A stretch is rolled only when that is sure to mean the same: every value that differs between
repeats is an array made once before the epochs, and those taking one place in the stretch are
made alike (one Numba type), or a whole number inside a subscript; a name a repeat binds is read
only within that repeat.
"""
from __future__ import annotations

import re

from graphdsl.backend.codegen import Made

REPEATS = 3  # the fewest repeats rolled: a network of one hidden layer keeps its statements as they are
LONGEST = 200  # statements in one repeat at most, which bounds the search
NAME = re.compile(r"\b[a-zA-Z_]\w*\b")
# a whole number inside a subscript: an index, or a bound of a slice
SUBSCRIPT_INT = re.compile(r"(?<=[\[:])\d+(?=[:\]])")
HOLE = re.compile(r"(?<![.\w])([vfxts]\d+)\b|" + SUBSCRIPT_INT.pattern)
BINDS = re.compile(r"^\s*([a-zA-Z_]\w*)\s*=[^=]")
INDEX = "layer"  # the rolled loop's index
TUPLE = "u"      # the tuples' names: u0, u1, ...


def units(lines: list) -> list:
    """The statements of a block, each with the lines indented under it, and any comment lines
    before it: [(comments, lines)]."""
    out, comments = [], []
    for line in lines:
        if line.startswith("#"):
            comments.append(line)
        elif line[:1].isspace() and out and not comments:
            out[-1][1].append(line)
        else:
            out.append((comments, [line]))
            comments = []
    if comments:
        out.append((comments, []))
    return out


def shape_of(lines: list) -> tuple:
    """(a unit's statements with its holes numbered in order of first use, the holes' values)."""
    values = []

    def number(match) -> str:
        value = match.group()
        if value not in values:
            values.append(value)
        kind = "i" if value[0].isdigit() else "n"
        return f"\0{kind}{values.index(value)}\0"
    return "\n".join(HOLE.sub(number, line) for line in lines), values


def bound(lines: list) -> set:
    """The names a stretch of lines binds (`v7 = ...`, not `v7[...] = ...`)."""
    return {m.group(1) for line in lines for m in [BINDS.match(line)] if m}


class Roller:
    def __init__(self, made: dict):
        self.made = made        # name -> expression of the arrays made once
        self.kinds = {}
        self.tuples = []        # [elements], the tuple u<i> at i

    def kind(self, name: str) -> str:
        """What decides the Numba type of a made array: its expression, the names in it replaced
        by their kinds and the numbers of its slices left out (theta[0:64] and theta[64:128] are
        alike). Shapes stay: arrays of two shapes are never put in one tuple."""
        if name not in self.kinds:
            self.kinds[name] = name  # a cycle cannot occur (a name is made from earlier ones)
            expr = SUBSCRIPT_INT.sub("#", self.made[name])
            self.kinds[name] = NAME.sub(lambda m: f"<{self.kind(m.group())}>" if m.group() in self.made
                                        else m.group(), expr)
        return self.kinds[name]

    def roll(self, lines: list) -> list:
        us = units(lines)
        keys = [shape_of(code)[0] for _, code in us]
        uses = counts(line for _, code in us for line in code)
        out, i = [], 0
        while i < len(us):
            best = None  # (units a repeat, repeats, loop lines, tuples)
            for p in range(1, min(LONGEST, (len(us) - i) // REPEATS) + 1):
                k = 1
                while i + (k + 1) * p <= len(us) and keys[i + k * p:i + (k + 1) * p] == keys[i:i + p]:
                    k += 1
                if k < REPEATS or (best is not None and p * k <= best[0] * best[1]):
                    continue
                found = self.loop(us, i, p, k, uses)
                if found is not None and (best is None or p * found[0] > best[0] * best[1]):
                    best = (p, *found)
            if best is None:
                out += us[i][0] + us[i][1]
                i += 1
                continue
            p, k, loop, tuples = best
            names = []
            for elements in tuples:  # one tuple for each list of values, however often read
                if elements not in self.tuples:
                    self.tuples.append(elements)
                names.append(f"{TUPLE}{self.tuples.index(elements)}")
            out += [re.sub(r"\x01(\d+)\x01", lambda m, names=names: names[int(m.group(1))], line) for line in loop]
            i += p * k
        return out

    def loop(self, us: list, i: int, p: int, k: int, uses: dict) -> tuple | None:
        """(repeats rolled, the loop's lines, its tuples' elements) for the most repeats, up to k,
        of the p units at i that roll, or None if fewer than REPEATS do."""
        repeats = [[line for _, code in us[i + r * p:i + (r + 1) * p] for line in code] for r in range(k)]
        shapes = [shape_of(lines) for lines in repeats]
        text, first = shapes[0]

        def fits(r: int) -> bool:
            """Whether repeat r rolls with the ones before it: its holes are used as the first
            repeat's, a hole it binds is read only within it, and where it differs from the first
            it has an array made alike, or a number in a subscript."""
            lines, (shape, values) = repeats[r], shapes[r]
            if shape != text:
                return False
            within = counts(lines)
            if any(within[b] != uses[b] or b in self.made for b in bound(lines) if HOLE.fullmatch(b)):
                return False
            return all(a == b or (a in binds0 and b in bound(lines)) or a.isdigit()
                       or (a in self.made and b in self.made and self.kind(a) == self.kind(b))
                       for a, b in zip(first, values))
        binds0 = bound(repeats[0])
        k = next((r for r in range(k) if not fits(r)), k)
        if k < REPEATS:
            return None
        fills, tuples = [], []
        for h, value in enumerate(first):
            column = [values[h] for _, values in shapes[:k]]
            if value in binds0 or all(v == value for v in column):
                fills.append(value)  # the same in every repeat, or bound in each: its first name serves
            else:
                fills.append(f"\x01{len(tuples)}\x01[{INDEX}]")
                tuples.append(column)
        comments = [c for comments, _ in us[i:i + p] for c in comments]
        body = re.sub(r"\x00[in](\d+)\x00", lambda m: fills[int(m.group(1))], text).split("\n")
        return k, [*comments, f"for {INDEX} in range({k}):", *(f"    {line}" for line in body)], tuples


def counts(lines) -> dict:
    """How often each name occurs in the lines."""
    found = {}
    for line in lines:
        for name in NAME.findall(line):
            found[name] = found.get(name, 0) + 1
    return found


ALLOCATION = re.compile(r"np\.empty\((\((?:\d+, )*\d*,?\)), F\)")  # a buffer made once, filled each step
STACK = "w"  # the stacks' names: w0, w1, ...


def made_by_numpy(expr: str) -> bool:
    """Whether a made array is memory of its own (np.empty, np.ones, ...), not a view of another."""
    return expr.startswith("np.")


def eval_shape(text: str) -> tuple:
    """A shape written as a tuple of whole numbers."""
    return tuple(int(n) for n in re.findall(r"\d+", text))


def progression(values: list) -> tuple | None:
    """(first, step) of whole numbers in arithmetic progression, or None."""
    numbers = [int(v) for v in values]
    step = numbers[1] - numbers[0]
    return (numbers[0], step) if all(b - a == step for a, b in zip(numbers, numbers[1:])) else None


def at(first: int, step: int) -> str:
    """The expression of first + step * layer."""
    times = {0: None, 1: INDEX, -1: f"-{INDEX}"}.get(step, f"{step} * {INDEX}")
    if times is None:
        return str(first)
    if not first:
        return times
    return f"{first} - {times[1:]}" if times.startswith("-") else f"{first} + {times}"


class Realised:
    """A tuple's values as an expression of the loop's index, so that a rolled loop costs the same
    whatever its repeats: numbers in arithmetic progression are `a + b * layer`; buffers (np.empty)
    read in order are the rows of one stack, a buffer of one more axis made in their place
    (`w0[layer]`), each buffer left a view of its row; a view made alike of each (a param's
    slice of theta, a transpose, a flat view) is made in the loop from that expression. Anything
    else stays a tuple (`u7[layer]`)."""

    def __init__(self, made: list, columns: list):
        self.made = {m.name: m for m in made}
        self.order = [m.name for m in made]
        self.row = {}  # buffer -> (stack, row)
        self.stacks = []  # (name, shape, [buffers in row order])
        links = {}
        for column in columns:
            self.allocations(column, links)
        self.stack(links)

    def allocations(self, column: list, links: dict) -> None:
        """Note which buffers follow which in the columns of buffers a column reads (recursively,
        through views made alike)."""
        if column[0].isdigit() or any(name not in self.made for name in column):
            return
        if all(ALLOCATION.fullmatch(self.made[n].expr) for n in column):
            if len(set(column)) == len(column) and len({self.made[n].expr for n in column}) == 1:
                for a, b in zip(column, column[1:]):
                    links.setdefault(a, set()).add(b)
                    links.setdefault(b, set()).add(a)
            return
        shapes = [shape_of([self.made[n].expr]) for n in column]
        if not made_by_numpy(self.made[column[0]].expr) and all(shape == shapes[0][0] for shape, _ in shapes):
            for h in range(len(shapes[0][1])):
                self.allocations([values[h] for _, values in shapes], links)

    def stack(self, links: dict) -> None:
        """Buffers in chains (each with at most two neighbours, no cycle) become the rows of a stack."""
        seen = set()
        for name in self.order:
            if name not in links or name in seen or len(links[name]) > 2:
                continue
            if len(links[name]) == 2:  # not an end: found from one
                continue
            chain, previous = [name], None
            while True:
                following = [n for n in links[chain[-1]] if n != previous]
                if len(links[chain[-1]]) > 2 or not following:
                    break
                previous = chain[-1]
                chain.append(following[0])
                if chain[-1] in chain[:-1]:
                    break
            if len(set(chain)) != len(chain) or any(len(links[n]) > 2 for n in chain):
                continue
            seen.update(chain)
            stack = f"{STACK}{len(self.stacks)}"
            shape = ALLOCATION.fullmatch(self.made[name].expr).group(1)
            self.stacks.append((stack, shape, chain))
            for i, n in enumerate(chain):
                self.row[n] = (stack, i)

    def expression(self, column: list) -> str | None:
        """The expression in `layer` of a column's values, or None."""
        if column[0].isdigit():
            found = progression(column)
            return None if found is None else at(*found)
        if len(set(column)) == 1:
            return column[0]
        if any(name not in self.made for name in column):
            return None
        if all(name in self.row for name in column):
            stacks = {self.row[n][0] for n in column}
            found = progression([self.row[n][1] for n in column]) if len(stacks) == 1 else None
            return None if found is None else f"{stacks.pop()}[{at(*found)}]"
        shapes = [shape_of([self.made[n].expr]) for n in column]
        if made_by_numpy(self.made[column[0]].expr) or any(shape != shapes[0][0] for shape, _ in shapes):
            return None  # an array of its own (np.empty, np.ones) is made once, never in the loop
        fills = []
        for h in range(len(shapes[0][1])):
            found = self.expression([values[h] for _, values in shapes])
            if found is None:
                return None
            fills.append(found)
        return "(" + re.sub(r"\x00[in](\d+)\x00", lambda m: fills[int(m.group(1))], shapes[0][0]) + ")"

    def remade(self, lines: list, tuples: list) -> list:
        """The made arrays the lines (and the tuples left) read, in order: stacks first made where
        their first row was, each row that is still read by name a view of its stack's row."""
        read = set(counts(lines)) | {n for t in tuples for n in t}
        needed = set()
        for name in reversed(self.order):  # a made array reads only arrays made before it
            if name in read or name in needed:
                needed.add(name)
                needed.update(n for n in NAME.findall(self.made[name].expr) if n in self.made)
        out, axes = [], {}
        for name in self.order:
            m = self.made[name]
            if name in self.row:
                stack, row = self.row[name]
                if stack not in axes:
                    shape, rows = next((shape, len(chain)) for s, shape, chain in self.stacks if s == stack)
                    axes[stack] = m.axes + 1
                    out.append(Made(stack, f"np.empty({(rows, *eval_shape(shape))}, F)", m.axes + 1))
                if name in needed:
                    axes[name] = axes[stack]
                    out.append(m._replace(expr=f"{stack}[{row}]", axes=axes[stack]))
            elif name in needed:
                axes[name] = max([m.axes] + [axes[n] for n in NAME.findall(m.expr) if n in axes])
                out.append(m._replace(axes=axes[name]))
        return out


def rolled(lines: list, made: list) -> tuple[list, list]:
    """(lines, made): `lines` with each run of at least REPEATS repeats of a stretch of statements
    made one loop, and the arrays made before any step (codegen.Made, in order) that they read:
    those of `made`, stacks of buffers, and tuples (`u0 = (v7, v13, v19,)`, made where every array
    is)."""
    roller = Roller({m.name: m.expr for m in made})
    out = roller.roll(lines)
    realised = Realised(made, roller.tuples)
    fills, tuples = {}, []
    for j, column in enumerate(roller.tuples):
        found = realised.expression(column)
        if found is None:
            found = f"{TUPLE}{len(tuples)}[{INDEX}]"
            tuples.append(column)
        fills[f"{TUPLE}{j}[{INDEX}]"] = found
    pattern = re.compile(rf"\b{TUPLE}\d+\[{INDEX}\]")
    out = [pattern.sub(lambda m: fills[m.group()], line) for line in out]
    made = realised.remade(out, tuples)
    inside = max([m.axes for m in made] + [2])
    made += [Made(f"{TUPLE}{j}", f"({', '.join(column)},)", inside) for j, column in enumerate(tuples)]
    return out, made
