"""`graphdsl explain`: a gradient as the chain rule's sum over paths, term by term.

The named nodes of a spec form a graph of their own: an edge runs from a parent to each
named node whose expression reads it, and carries the local derivative d child / d parent,
taken with the child's other named inputs held fixed. dL/dv is the sum, over every path of
named nodes from v to L, of the product of the local derivatives along it. Local
derivatives come from autodiff itself, run on a copy of the graph cut at every named node;
the gradient autodiff computes for the whole graph is given beside the sum, and must agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from graphdsl.transforms.autodiff import backward
from graphdsl.errors import SpecError
from graphdsl.transforms.interpret import evaluate
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import fmt_shape, plural
from graphdsl.frontend.names import suggest
from graphdsl.model import Model
from graphdsl.tools.report import fmt_value, own_nodes


@dataclass(frozen=True)
class Term:
    child: str
    parent: str
    value: float

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
    paths: tuple
    autodiff: float

    @property
    def total(self) -> float:
        return math.fsum(p.product for p in self.paths)

    @property
    def agrees(self) -> bool:
        return bool(np.isclose(self.total, self.autodiff, rtol=1e-9, atol=1e-12))


def chain_rule(model: Model, node: str, loss: str | None = None) -> ChainRule:
    """dLOSS/dNODE as a sum over paths of products of local derivatives, with autodiff's value."""
    spec, g = model.spec, model.spec.graph
    loss = loss or spec.loss
    if loss is None:
        raise SpecError("this spec names no loss to differentiate", filename=spec.filename,
                        hint="pass one with --loss, or add `grad L wrt ...` to the spec")
    start, end = (known(spec, name) for name in (node, loss))
    if spec.kinds[node] == "const":
        raise SpecError(f"`{node}` is a constant, so it has no gradient", g.nodes[start].span,
                        filename=spec.filename, text=spec.text)
    readers = {}
    for nid in sorted(set(g.names.values())):  # in definition order, so paths print in a stable order
        for parent in own_nodes(g, nid)[1]:
            readers.setdefault(parent, []).append(nid)
    routes = list(walk(start, end, readers, g.ancestors([end])))
    for nid in {start, end, *(n for route in routes for n in route)}:
        scalar_only(spec, nid, node, loss)
    local = local_derivatives(model, {e for route in routes for e in edges(route)})
    label = {nid: g.name_of(nid) for nid in g.names.values()} | {start: node, end: loss}
    paths = tuple(Path(tuple(label[n] for n in route),
                       tuple(Term(label[c], label[p], local[p, c]) for p, c in reversed(edges(route))))
                  for route in routes)
    return ChainRule(node, loss, paths, float(model.grad(loss)[node]))


def known(spec, name: str) -> int:
    if name not in spec.graph.names:
        raise SpecError(f"the spec defines no `{name}`", filename=spec.filename,
                        hint=suggest(name, spec.graph.names) or f"it defines {', '.join(spec.graph.names)}")
    return spec.graph.names[name]


def walk(nid: int, end: int, readers: dict, leads_to_end: set):
    """Every path (a list of node ids) from nid to end, through named nodes that end depends on."""
    if nid == end:
        yield [nid]
        return
    for child in readers.get(nid, []):
        if child in leads_to_end:
            for rest in walk(child, end, readers, leads_to_end):
                yield [nid] + rest


def edges(route: list) -> list:
    """A path's (parent, child) pairs, from the node towards the loss."""
    return list(zip(route, route[1:]))


def scalar_only(spec, nid: int, node: str, loss: str) -> None:
    shape = spec.graph.nodes[nid].shape
    if shape != ():
        name = spec.graph.name_of(nid)
        where = "" if name in (node, loss) else f" and lies on a path from `{node}` to `{loss}`"
        raise SpecError(f"explain follows scalar values only, but `{name}` is {fmt_shape(shape)}{where}",
                        spec.graph.nodes[nid].span, filename=spec.filename, text=spec.text,
                        hint="give each unit a scalar name of its own, as in specs/seed001_task2_paths.nn")


def cut(graph: Graph) -> tuple[Graph, dict, dict]:
    """A copy of the graph in which readers of a named node read a leaf standing for it, so
    that autodiff of a named node stops at the named nodes it reads. Returns the copy, and
    maps from each original id to its computed node and to the node its readers read."""
    copy, computed, read = Graph(), {}, {}
    named = set(graph.names.values())
    for node in graph.nodes:
        if node.is_leaf:
            computed[node.id] = read[node.id] = copy.leaf(node.op, None, node.shape)
            continue
        computed[node.id] = read[node.id] = copy.add(node.op, [read[a] for a in node.args], node.kw)
        if node.id in named:
            read[node.id] = copy.leaf("input", None, node.shape)
    return copy, computed, read


def local_derivatives(model: Model, edges) -> dict:
    """(parent, child) -> d child / d parent at the model's values, other named inputs held fixed."""
    graph = model.spec.graph
    copy, computed, read = cut(graph)
    values = model.forward()
    leaves = {read[nid]: values[name] for name, nid in graph.names.items()}
    wanted = {}
    for child in {c for _, c in edges}:
        parents = [p for p, c in edges if c == child]
        grads = backward(copy, computed[child], [read[p] for p in parents])
        wanted.update({(p, child): grads[read[p]] for p in parents})
    found = evaluate(copy, leaves, list(wanted.values()))
    return {edge: float(found[nid]) for edge, nid in wanted.items()}


def render(result: ChainRule, precision: int = 6) -> str:
    """The paths, their terms and products, their sum, and autodiff's value, for reading line by line."""
    num = partial(fmt_value, precision=precision)
    grad = f"d{result.loss}/d{result.node}"
    n = len(result.paths)
    lead = ("no path of named nodes leads" if n == 0 else
            f"{plural(n, 'path')} of named nodes lead{'s' if n == 1 else ''}")
    out = [f"{grad} by the chain rule: {lead} from {result.node} to {result.loss}.",
           "Along each path, multiply the local derivatives (each d child / d parent, with the child's",
           "other named inputs held fixed); then add up the paths' products."]
    for i, path in enumerate(result.paths, 1):
        width = max([len(t.label) for t in path.terms] + [len("product")])
        out += ["", f"path {i} of {n}: {' -> '.join(path.names)}  ({plural(len(path.terms), 'term')})"]
        out += [f"  {t.label.ljust(width)} = {num(t.value)}" for t in path.terms]
        out.append(f"  {'product'.ljust(width)} = {num(path.product)}")
    products = [p.product for p in result.paths]
    added = "".join(f" {'-' if v < 0 else '+'} {num(abs(v))}" for v in products[1:])
    total = f"{num(products[0])}{added} = {num(result.total)}" if n > 1 else num(result.total)
    left = f"autodiff {grad}"
    width = max(len(left), len("sum over paths"))
    verdict = "agrees" if result.agrees else "DISAGREES"
    out += ["", f"{'sum over paths'.ljust(width)} = {total}",
            f"{left.ljust(width)} = {num(result.autodiff)}  ({verdict})"]
    return "\n".join(out)
