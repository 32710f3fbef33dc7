"""`graphdsl explain`: a gradient as the chain rule's sum over paths, term by term.

The named nodes of a spec form a graph of their own: an edge runs from a parent to each named
node whose expression reads it. An array node is followed entry by entry: an edge runs from
entry i of a parent to each entry j of a child that reads it, and carries the local derivative
d child[j] / d parent[i], taken with the child's other named inputs held fixed (tools/local.py:
its number and its formula, from autodiff). dL/dv is the sum, over every path of entries from v
to L, of the product of the local derivatives along it; the gradient autodiff computes for the
whole graph is given beside the sum, and must agree.

Paths can be many (a ladder of n rungs has 2^n) and long, so they are counted first, node by
node, and listed only within MAX_PATHS and MAX_TERMS; beyond, their sum is added up node by node
(each entry's sum is the sum over its readers of their sums times the local derivative), which
takes time and memory in proportion to the edges, not the paths. Nothing here recurses.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from tabulate import tabulate

from graphdsl.errors import SpecError
from graphdsl.frontend.names import suggest
from graphdsl.ir.shapes import fmt_shape
from graphdsl.model import Model
from graphdsl.tools.formats import Table, between, dumps, fmt_value, json_number, latex_text, note, plain
from graphdsl.tools.local import Locals, entry_text
from graphdsl.tools.report import own_nodes

MAX_PATHS = 200       # paths listed at most; past this (or MAX_TERMS) only their sum is given
MAX_TERMS = 5_000     # terms listed at most, over all paths
MAX_ENTRIES = 5_000   # entries followed at most (each one evaluation of a child), so a huge spec is refused
EXAMPLE = "the section \"Explaining a gradient path by path\" of docs/language.md has an example"


@dataclass(frozen=True)
class Term:
    child: str
    parent: str
    value: float
    formula: str | None = None  # None where the local derivative is a plain number

    @property
    def label(self) -> str:
        return f"d{self.child}/d{self.parent}"


@dataclass(frozen=True)
class Path:
    names: tuple    # from the node to the loss
    terms: tuple    # one Term per edge, the loss end first, as the chain rule is written

    @property
    def product(self) -> float:
        return math.prod(t.value for t in self.terms)


@dataclass(frozen=True)
class ChainRule:
    node: str
    loss: str
    paths: tuple      # every path, or none where there are more than explain lists
    autodiff: float
    count: int        # the number of paths
    summed: float     # their sum, added up node by node: the total where they are not listed

    @property
    def listed(self) -> bool:
        return len(self.paths) == self.count

    @property
    def total(self) -> float:
        return math.fsum(p.product for p in self.paths) if self.listed else self.summed

    @property
    def agrees(self) -> bool:
        return bool(np.isclose(self.total, self.autodiff, rtol=1e-9, atol=1e-12, equal_nan=True))


def chain_rule(model: Model, node: str, loss: str | None = None) -> ChainRule:
    """dLOSS/dNODE as a sum over paths of products of local derivatives, with autodiff's value;
    NODE is a scalar or one entry (`W[0, 1]`)."""
    found = chain_rules(model, node, loss)
    if len(found) != 1:
        raise SpecError(f"`{node}` holds {len(found)} entries: name one, as in `{found[0].node}`",
                        filename=model.spec.filename)
    return found[0]


def chain_rules(model: Model, node: str, loss: str | None = None) -> list:
    """A ChainRule for each entry NODE names: a scalar, an entry (`W[0, 1]`), a row (`W[0]`) or
    every entry of an array (`W`)."""
    spec, g = model.spec, model.spec.graph
    loss = loss or spec.loss
    if loss is None:
        raise SpecError("this spec names no loss to differentiate", filename=spec.filename,
                        hint=f"pass one with --loss, or add `grad L wrt ...` to the spec; {EXAMPLE}")
    name, start, picked = target(spec, node)
    end = known(spec, loss)
    if g.nodes[end].shape != ():
        raise SpecError(f"the loss `{loss}` is {fmt_shape(g.nodes[end].shape)}, but explain differentiates a "
                        "scalar", g.nodes[end].span, filename=spec.filename, text=spec.text,
                        hint="name a scalar with --loss")
    label = {nid: g.name_of(nid) for nid in g.names.values()} | {start: name, end: loss}
    edges = entry_graph(Locals(model), spec, start, picked, end, (name, loss))
    count, terms, summed = tally(edges, (end, 0))
    grads = np.ravel(model.grad(loss)[name])
    write = lambda key: entry_text(label[key[0]], g.nodes[key[0]].shape,
                                   np.unravel_index(key[1], g.nodes[key[0]].shape))
    found = []
    for e in picked:
        key = (start, e)
        listed = count.get(key, 0) <= MAX_PATHS and terms.get(key, 0) <= MAX_TERMS
        paths = tuple(as_path(route, edges, write) for route in routes(key, (end, 0), edges, count)) if listed else ()
        found.append(ChainRule(write(key), loss, paths, float(grads[e]), count.get(key, 0), summed.get(key, 0.0)))
    return found


def known(spec, name: str) -> int:
    if name not in spec.graph.names:
        raise SpecError(f"the spec defines no `{name}`", filename=spec.filename,
                        hint=suggest(name, spec.graph.names) or f"it defines {', '.join(spec.graph.names)}")
    return spec.graph.names[name]


TARGET = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(?:\[(.*)\])?\s*")


def target(spec, text: str) -> tuple:
    """(name, node id, the flat indices of the entries `text` picks): `W`, `W[0]` or `W[0, 1]`."""
    found = TARGET.fullmatch(text)
    if found is None:
        raise SpecError(f"`{text}` is not a name or an entry of one", filename=spec.filename,
                        hint=f"write a name, `x`, or an entry, `W[0, 1]` (indices from 0); {EXAMPLE}")
    name, inside = found.groups()
    nid = known(spec, name)
    shape = spec.graph.nodes[nid].shape
    if spec.kinds[name] == "const":
        raise SpecError(f"`{name}` is a constant, so it has no gradient", spec.graph.nodes[nid].span,
                        filename=spec.filename, text=spec.text)
    index = [] if inside is None else [part.strip() for part in inside.split(",")]
    if len(index) > len(shape) or not all(re.fullmatch(r"-?\d+", i) for i in index):
        raise SpecError(f"`{text}`: `{name}` is {fmt_shape(shape)}, so it takes up to {len(shape)} whole-number "
                        "indices", filename=spec.filename, hint=f"as in `{entry_text(name, shape, (0,) * len(shape))}`")
    index = [int(i) for i in index]
    for axis, (i, size) in enumerate(zip(index, shape)):
        if not -size <= i < size:
            raise SpecError(f"`{text}`: index {i} is out of range for axis {axis} of `{name}`, which has {size} "
                            f"entries (0 to {size - 1}, or -{size} to -1 from the end)", filename=spec.filename)
    picked = np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)[tuple(index)]
    return name, nid, np.ravel(picked).tolist()


def entry_graph(local: Locals, spec, start: int, picked: list, end: int, names: tuple) -> dict:
    """(node, entry) -> [((child, entry), Local), ...]: every edge between entries on a path from
    the picked entries of `start` to `end`, children in definition order; `names` are theirs."""
    g = spec.graph
    ahead = {start}
    for nid in sorted(set(g.names.values())):  # definition order: a node's readers come after it
        if nid > start and any(p in ahead for p in own_nodes(g, nid)[1]):
            ahead.add(nid)
    reached, edges, followed = {start: sorted(set(picked))}, {}, len(picked)
    for child in sorted((ahead & g.ancestors([end])) - {start}):
        columns = {p: reached[p] for p in own_nodes(g, child)[1] if reached.get(p)}
        followed += sum(map(len, columns.values()))
        too_many(followed, spec, names)
        sources = {}
        for p, entries in columns.items():
            for i in entries:
                for j in local.depends(child, p, i):
                    sources.setdefault(j, []).append((p, i))
        followed += len(sources)
        too_many(followed, spec, names)
        if not sources:
            continue
        reached[child] = sorted(sources)
        values = local.rows(child, columns, reached[child])
        for j, parents in sorted(sources.items()):
            for p, i in parents:
                edges.setdefault((p, i), []).append(((child, j), values[p, i, j]))
    return edges


def too_many(followed: int, spec, names: tuple) -> None:
    if followed > MAX_ENTRIES:
        raise SpecError(f"explain follows at most {MAX_ENTRIES:,} entries (one evaluation each), and more lie "
                        "between `{}` and `{}`".format(*names), filename=spec.filename,
                        hint="explain one entry (`W[0, 1]`), a node nearer to the loss, or a smaller network")


def tally(edges: dict, end: tuple) -> tuple:
    """For each entry: how many paths lead from it to `end`, how many terms they hold together, and
    the sum of their products; by dynamic programming from the end back, as reverse mode does."""
    count, terms, summed = {end: 1}, {end: 0}, {end: 1.0}
    for key in sorted(edges, reverse=True):  # every child has a larger id than its parents
        ahead = [(c, local) for c, local in edges[key] if count.get(c)]
        count[key] = sum(count[c] for c, _ in ahead)
        terms[key] = sum(terms[c] + count[c] for c, _ in ahead)
        summed[key] = math.fsum(local.value * summed[c] for c, local in ahead)
    return count, terms, summed


def routes(start: tuple, end: tuple, edges: dict, count: dict):
    """Every path (a tuple of entries) from start to end, in definition order, by a loop with a
    stack of its own rather than recursion."""
    stack = [(start,)]
    while stack:
        route = stack.pop()
        if route[-1] == end:
            yield route
            continue
        stack.extend(route + (c,) for c, _ in reversed(edges.get(route[-1], [])) if count.get(c))


def as_path(route: tuple, edges: dict, write) -> Path:
    local = {(p, c): value for p in route for c, value in edges.get(p, [])}
    terms = tuple(Term(write(c), write(p), local[p, c].value, local[p, c].formula)
                  for p, c in reversed(list(zip(route, route[1:]))))
    return Path(tuple(map(write, route)), terms)


# -- writing it out -------------------------------------------------------------------------

def render(results, fmt: str = "text", precision: int = 6) -> str:
    """One ChainRule (or a list of one) term by term; several, entry by entry as a table."""
    results = [results] if isinstance(results, ChainRule) else list(results)
    if fmt == "json":
        return dumps({"loss": results[0].loss, "entries": [as_json(r) for r in results]})
    if len(results) > 1:
        return entry_table(results, fmt, precision)
    result = results[0]
    blocks = [lead(result, fmt)]
    for i, path in enumerate(result.paths, 1):
        blocks.append(path_block(path, i, len(result.paths), fmt, precision))
    blocks.append(verdict(result, fmt, precision))
    return between(fmt).join(blocks)


def lead(result: ChainRule, fmt: str) -> str:
    n, grad = result.count, f"d{result.loss}/d{result.node}"
    paths = ("no path of named nodes leads" if n == 0 else
             f"{n:,} path{'s' if n != 1 else ''} of named nodes lead{'s' if n == 1 else ''}")
    head = f"{grad} by the chain rule: {paths} from {result.node} to {result.loss}"
    if result.listed:
        text = (f"{head}.\nAlong each path, multiply the local derivatives (each d child / d parent, with the "
                "child's\nother named inputs held fixed); then add up the paths' products.")
    else:
        text = (f"{head}, more than\nexplain lists ({MAX_PATHS:,} paths or {MAX_TERMS:,} terms at most), so they "
                "are added up node by\nnode: each entry's sum is the sum, over the entries that read it, of "
                "theirs times the local\nderivative. Explain a node nearer to the loss to see its paths.")
    return note(text if fmt == "text" else " ".join(text.split("\n")), fmt)


def path_block(path: Path, i: int, n: int, fmt: str, precision: int) -> str:
    """One path: each local derivative with its formula and value, then their product."""
    title = f"path {i} of {n}: {' -> '.join(path.names)}  ({len(path.terms)} term{'s' if len(path.terms) != 1 else ''})"
    formulas = any(t.formula for t in path.terms)
    rows = [[t.label, t.formula or "", t.value] for t in path.terms] + [["product", "", path.product]]
    if fmt == "text":
        cells = [[label, f"= {formula}" if formula else "", f"= {fmt_value(v, precision)}"]
                 for label, formula, v in rows]
        return "\n".join([title, *plain([c if formulas else [c[0], c[2]] for c in cells])])
    if fmt == "markdown":
        rows = [[label, f"`{formula}`" if formula else "", v] for label, formula, v in rows]
        return Table(title, ["local derivative", "formula", "value"], rows, right=(2,)).markdown(precision)
    rows = [[label, rf"\texttt{{{latex_text(formula)}}}" if formula else "", v] for label, formula, v in rows]
    return Table(title.replace(" -> ", " to "), ["local derivative", "formula", "value"], rows,
                 right=(2,), raw=(1,)).latex(precision)


def verdict(result: ChainRule, fmt: str, precision: int) -> str:
    """The sum over paths (each product, where they are listed) and autodiff's value beside it."""
    num = lambda v: fmt_value(v, precision)
    products = [p.product for p in result.paths]
    added = "".join(f" {'-' if v < 0 else '+'} {num(abs(v))}" for v in products[1:])
    total = f"{num(products[0])}{added} = {num(result.total)}" if len(products) > 1 else num(result.total)
    rows = [["sum over paths", f"= {total}"],
            [f"autodiff d{result.loss}/d{result.node}",
             f"= {num(result.autodiff)}  ({'agrees' if result.agrees else 'DISAGREES'})"]]
    if fmt == "text":
        return "\n".join(plain(rows, indent=""))
    return note("; ".join(f"{left} {right}" for left, right in rows), fmt)


def entry_table(results: list, fmt: str, precision: int) -> str:
    """Entry by entry: its number of paths, their sum and autodiff's value, and whether they agree."""
    grad = f"d{results[0].loss}/d{results[0].node.split('[')[0]}"
    title = (f"{grad} by the chain rule, entry by entry (explain '{results[0].node}' lists the paths "
             "of one entry)")
    headers = ["entry", "paths", "sum over paths", f"autodiff {grad}", "check"]
    rows = [[r.node, f"{r.count:,}", r.total, r.autodiff, "agrees" if r.agrees else "DISAGREES"]
            for r in results]
    if fmt == "text":
        cells = [[c if isinstance(c, str) else fmt_value(c, precision) for c in row] for row in rows]
        table = tabulate(cells, headers, tablefmt="simple", disable_numparse=True,
                         colalign=("left", "right", "right", "right", "left"))
        return "\n".join([title, "", *(line.rstrip() for line in table.splitlines())])
    table = Table(title, headers, rows, right=(1, 2, 3))
    return table.markdown(precision) if fmt == "markdown" else table.latex(precision)


def as_json(result: ChainRule) -> dict:
    """An entry's chain rule for scripts: its paths (empty past the limits), their sum, autodiff's."""
    return {"node": result.node, "gradient": f"d{result.loss}/d{result.node}", "path_count": result.count,
            "listed": result.listed,
            "paths": [{"nodes": list(p.names), "product": json_number(p.product),
                       "terms": [{"derivative": t.label, "formula": t.formula, "value": json_number(t.value)}
                                 for t in p.terms]} for p in result.paths],
            "sum": json_number(result.total), "autodiff": json_number(result.autodiff), "agrees": result.agrees}
