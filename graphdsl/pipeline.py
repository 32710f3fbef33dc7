"""The stages a spec goes through, in order; the API, Model, the trainer and the CLI call these.

    text --parse--> AST --lower (expanding first)--> Spec                            check
    Spec --autodiff--> Program: a graph, its argument leaves, its outputs             *_program
    Program --codegen--> Numba source --module cache--> compiled kernel               Program.kernel
    Spec --minibatch rewrite, autodiff--> LoopPlan (training/plan.py)                 step_plan
    LoopPlan --training-loop codegen--> Numba source --module cache--> compiled loop  training_loop
    Spec --minibatch rewrite--> one graph for many examples, for the interpreter      batched_graph

What is built from a spec is kept with it (`Spec.programs`; a plan's compiled loops with the
plan). Programs, plans and loops are built once, by one thread, however many models of the spec
ask: a Spec does not change once checked, so neither does what is built from it.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

from graphdsl.backend import cache, codegen, train_loop
from graphdsl.errors import DataError
from graphdsl.frontend.lower import lower
from graphdsl.frontend.parser import parse
from graphdsl.frontend.spec import Spec
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import fmt_shape
from graphdsl.training.config import Training
from graphdsl.training.plan import LoopPlan, make_plan
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.batch import batched

# The last specs checked, by what made them. The same text checked again with the same seed and
# settings (a fresh model for another run) gets the same Spec, so it shares the programs built
# from it; each Model keeps params of its own. A spec holds its params' first values: keep few.
_CHECKED: OrderedDict = OrderedDict()
_CHECKED_KEPT = 4
_CHECKING = threading.Lock()
_BUILDING = threading.Lock()  # held while anything is built for a spec, across threads too


def check(text: str, filename: str = "<spec>", seed: int = 0, settings: dict | None = None) -> Spec:
    """Parse, then lower (which expands first): the checked Spec; a bad spec raises a located SpecError."""
    try:
        key = (text, filename, seed, json.dumps(settings, sort_keys=True))
    except TypeError:  # a setting JSON cannot hold (an array): checked afresh
        key = None
    with _CHECKING:
        spec = _CHECKED.pop(key, None)
    if spec is None:
        spec = lower(parse(text, filename), text, filename, seed, settings)
    if key is not None:
        with _CHECKING:
            _CHECKED[key] = spec  # last: the least recently checked goes first
            while len(_CHECKED) > _CHECKED_KEPT:
                _CHECKED.popitem(last=False)
    return spec


def built(kept: dict, key, build):
    """`kept[key]`, made by `build()` the first time it is asked for (once a value is there, it is
    read without waiting for the lock)."""
    if key in kept:
        return kept[key]
    with _BUILDING:
        if key not in kept:
            kept[key] = build()
    return kept[key]


def node_id(spec: Spec, name: str) -> int:
    """The node `name` names; a DataError listing the names when the spec defines none such."""
    if name not in spec.graph.names:
        raise DataError(f"the spec defines no `{name}`; it defines {', '.join(spec.kinds)}")
    return spec.graph.names[name]


AUTO_INTERPRETED = 3  # calls of a program the "auto" engine interprets before it compiles


@dataclass
class Program:
    """A graph with its argument leaves and the outputs one call returns, labelled."""

    graph: Graph
    leaves: list
    outputs: list
    labels: list
    calls: int = field(default=0, compare=False)  # by models on the "auto" engine

    def interprets(self) -> bool:
        """For the "auto" engine: the first AUTO_INTERPRETED calls run in the interpreter, which
        answers at once; a program called more often is work repeated, and compiles."""
        self.calls += 1
        return self.calls <= AUTO_INTERPRETED

    @property
    def source(self) -> str:
        return codegen.module([codegen.function(self.graph, "kernel", self.leaves, self.outputs)])

    @cached_property
    def kernel(self):
        """The compiled function: its module written to the cache (if new) and imported."""
        return cache.load(self.source).kernel


def named(spec: Spec, consts: bool = True) -> dict:
    """Every name and its node; aliases (`a = x`) share a node."""
    return {name: nid for name, nid in spec.graph.names.items() if consts or spec.kinds[name] != "const"}


def forward_program(spec: Spec) -> Program:
    """Every named node's value."""
    def build():
        g, nodes = spec.graph, named(spec)
        return Program(g, [n.id for n in g.leaves()], list(nodes.values()), list(nodes))
    return built(spec.programs, "forward", build)


def grad_program(spec: Spec, loss: str | None = None) -> Program:
    """The gradient of `loss` (by default the spec's) with respect to every named node but the
    constants: autodiff gives zeros where the loss does not depend on one."""
    loss = loss or spec.loss
    if loss is None:
        raise DataError("this spec names no loss: add `grad L wrt ...` to it, or pass loss='L'")
    out = node_id(spec, loss)
    if spec.graph.nodes[out].shape != ():
        raise DataError(f"the loss `{loss}` must be a scalar, not {fmt_shape(spec.graph.nodes[out].shape)}")

    def build():
        g, nodes = spec.graph.copy(), named(spec, consts=False)
        grads = backward(g, out, list(nodes.values()))
        return Program(g, [n.id for n in g.leaves()], [grads[i] for i in nodes.values()], list(nodes))
    return built(spec.programs, ("grad", loss), build)


def jacobian_program(spec: Spec, of: str, wrt: str) -> Program:
    """One row of d(of)/d(wrt): its last leaf is the seed, the cotangent of `of` for that row."""
    f, x = node_id(spec, of), node_id(spec, wrt)

    def build():
        g = spec.graph.copy()
        seed = g.leaf("input", None, g.nodes[f].shape)
        grads = backward(g, f, [x], seed)
        return Program(g, [n.id for n in g.leaves()], [grads[x]], ["row"])
    return built(spec.programs, ("jacobian", of, wrt), build)


def step_plan(spec: Spec, train: Training, data: list, batch: int | None, traced: list, deltas: list) -> LoopPlan:
    """The training step for one example or `batch` of them (make_plan); `data` are the leaves
    examples feed, `traced` and `deltas` the nodes whose values and gradients a trace records."""
    key = ("train", train.loss, train.metric, train.optimizer, train.frozen, tuple(data), batch, tuple(traced),
           tuple(deltas))
    return built(spec.programs, key, lambda: make_plan(spec, train, data, batch, traced, deltas))


def training_loop(plan: LoopPlan, dtype: str, fuse: bool):
    """The compiled module of the plan's loop, `train` and the `buffers` it works in, for numbers
    of `dtype`; `fuse`: see train_loop.train_loop."""
    return built(plan.loops, (dtype, fuse),
                 lambda: cache.load(codegen.module([train_loop.train_loop(plan, fuse)], dtype)))


def batched_graph(spec: Spec, data: list, nodes: list, n: int) -> tuple:
    """(graph, spec id -> its id) computing `nodes` for `n` examples at once, the `data` leaves
    taking one row an example (batch.batched). Kept for these nodes at the last `n` asked for:
    validation asks every epoch, and predict() at every new size would otherwise add a graph to
    the spec for good. Built again rather than waited for, so no lock."""
    key = ("batched", tuple(data), tuple(nodes))
    kept = spec.programs.get(key)
    if kept is None or kept[0] != n:
        kept = spec.programs[key] = (n, *batched(spec.graph, data, nodes, n))
    return kept[1:]  # this call's own: another thread may replace the spec's entry meanwhile
