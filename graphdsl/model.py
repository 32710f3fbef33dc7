"""A compiled spec as a Python object: forward values, gradients, Jacobians, parameters."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from graphdsl.backend import codegen
from graphdsl.backend import cache as jit
from graphdsl.transforms.autodiff import backward
from graphdsl.errors import ClassIndexError, DataError, SpecError
from graphdsl.transforms.interpret import evaluate
from graphdsl.ir.graph import Graph
from graphdsl.ir.shapes import fmt_shape
from graphdsl.frontend.lower import Spec
from graphdsl.ir.ops.nn import not_class_indices

# held while a program is built: models of one spec share its programs, across threads too
_BUILDING = threading.Lock()

ENGINES = ("numba", "numpy")


@dataclass
class Program:
    """A graph with its argument leaves and the outputs one call returns."""

    graph: Graph
    leaves: list
    outputs: list
    labels: list
    kernel: object = None  # the compiled function, once loaded

    @property
    def source(self) -> str:
        return codegen.module([codegen.function(self.graph, "kernel", self.leaves, self.outputs)])


def bad_classes(name: str, value, classes: int) -> str | None:
    """What is wrong with a value read as class indices, or None."""
    value = np.asarray(value)
    bad = not_class_indices(value, classes)
    if not np.any(bad):
        return None
    return (f"`{name}` holds class indices, which must be whole numbers from 0 to {classes - 1}, "
            f"but it holds {value[bad].flat[0]:g}")


class Model:
    """A checked spec, ready to run. Build one with `graphdsl.compile` or `graphdsl.load`.

    engine="numba" runs generated, cached Numba kernels; engine="numpy" runs the
    reference interpreter (no compile step, slower per call).
    """

    def __init__(self, spec: Spec, engine: str = "numba"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.spec, self.engine = spec, engine
        graph = spec.graph
        self.params = {n: graph.values[graph.names[n]].copy() for n in spec.names_of("param")}
        # leaves read as class indices, with their number of classes: checked before any kernel runs
        self._classes = {graph.nodes[n.args[1]].id: graph.nodes[n.args[0]].shape[-1]
                         for n in graph.nodes if n.op == "pick" and graph.nodes[n.args[1]].is_leaf}
        # leaf id -> name, for every program: they share the spec's leaf ids
        self._leaf_names = {nid: name for name, nid in graph.names.items()
                            if graph.nodes[nid].is_leaf and spec.kinds[name] != "node"}  # not aliases

    # -- what the spec defines --------------------------------------------

    @property
    def loss(self) -> str | None:
        return self.spec.loss

    def _id(self, name: str) -> int:
        if name not in self.spec.graph.names:
            raise DataError(f"the spec defines no `{name}`; it defines {', '.join(self.spec.kinds)}")
        return self.spec.graph.names[name]

    @property
    def class_indices(self) -> list:
        """Names of the leaves read as class indices: data, not something to differentiate."""
        return [self.spec.graph.name_of(i) for i in self._classes]

    def _named(self, consts: bool = True) -> dict:
        """Every name and its node; aliases (`a = x`) share a node."""
        return {name: nid for name, nid in self.spec.graph.names.items()
                if consts or self.spec.kinds[name] != "const"}

    # -- running ------------------------------------------------------------

    def _leaf_values(self, graph: Graph, inputs: dict) -> dict:
        settable = self.spec.names_of("input", "target", "param")
        for name in inputs:
            if name not in settable:
                raise DataError(f"`{name}` is not an input, target or param of this spec; "
                                f"those are {', '.join(settable)}")
        values = {}
        for node in graph.leaves():
            name = self._leaf_names.get(node.id)
            if name is None:  # a Jacobian's seed, supplied per call
                continue
            if name in inputs:
                value = np.asarray(inputs[name], dtype=np.float64)
                if value.shape != node.shape:
                    raise DataError(f"`{name}` must be {fmt_shape(node.shape)}, but the value given is "
                                    f"{fmt_shape(value.shape)}")
            elif name in self.params:
                value = self.params[name]
            elif node.id in graph.values:
                value = graph.values[node.id]
            else:
                raise DataError(f"{node.op} `{name}` has no value: pass {name}=... "
                                f"or give it one in the spec (`{node.op} {name}{fmt_shape(node.shape) if node.shape else ''} = ...`)")
            problem = self._classes.get(node.id) and bad_classes(name, value, self._classes[node.id])
            if problem and name in inputs:
                raise DataError(problem)
            if problem:
                raise SpecError(problem, node.span, filename=self.spec.filename, source=self.spec.source)
            values[node.id] = float(value) if node.shape == () else np.ascontiguousarray(value, dtype=np.float64)
        return values

    def _run(self, program: Program, inputs: dict, extra: dict | None = None) -> dict:
        leaves = self._leaf_values(program.graph, inputs)
        leaves.update(extra or {})
        try:
            if self.engine == "numpy":
                found = evaluate(program.graph, leaves, program.outputs)
                results = [found[o] for o in program.outputs]
            else:
                program.kernel = program.kernel or jit.load(program.source).kernel
                results = program.kernel(*(leaves[l] for l in program.leaves))
        except ClassIndexError as err:  # a class index the spec computes from its data
            raise DataError(str(err)) from None
        return {label: (np.float64(r) if np.ndim(r) == 0 else np.array(r))
                for label, r in zip(program.labels, results)}

    def _program(self, key, build):
        """What `build` makes for `key`, made once per spec (by one thread, where a sweep's workers
        train models of one spec): kernels, training plans and loops."""
        programs = self.spec.programs
        with _BUILDING:
            if key not in programs:
                programs[key] = build()
        return programs[key]

    # -- the public calls ---------------------------------------------------

    def _forward_program(self) -> Program:
        def build():
            g = self.spec.graph
            named = self._named()
            return Program(g, [n.id for n in g.leaves()], list(named.values()), list(named))
        return self._program("forward", build)

    def _grad_program(self, loss: str | None) -> Program:
        loss = loss or self.loss
        if loss is None:
            raise DataError("this spec names no loss: add `grad L wrt ...` to it, or pass loss='L'")
        out = self._id(loss)
        if self.spec.graph.nodes[out].shape != ():
            raise DataError(f"the loss `{loss}` must be a scalar, not {fmt_shape(self.spec.graph.nodes[out].shape)}")

        def build():
            g = self.spec.graph.copy()
            named = self._named(consts=False)  # autodiff gives zeros where the loss does not depend on a node
            grads = backward(g, out, list(named.values()))
            return Program(g, [n.id for n in g.leaves()], [grads[i] for i in named.values()], list(named))
        return self._program(("grad", loss), build)

    def forward(self, **inputs) -> dict:
        """Values of every named node, keyed by name."""
        return self._run(self._forward_program(), inputs)

    def grad(self, loss: str | None = None, **inputs) -> dict:
        """Gradients of the loss with respect to every named node (zero where it does not depend on one)."""
        return self._run(self._grad_program(loss), inputs)

    def source(self, which: str = "forward") -> str:
        """The generated Numba module for the forward pass, or for the gradient ("grad")."""
        return (self._forward_program() if which == "forward" else self._grad_program(None)).source

    def jacobian(self, of: str, wrt: str, **inputs) -> np.ndarray:
        """d(of)/d(wrt) at the given inputs, shaped of.shape + wrt.shape."""
        f, x = self._id(of), self._id(wrt)

        def build():
            g = self.spec.graph.copy()
            seed = g.leaf("input", None, g.nodes[f].shape)
            grads = backward(g, f, [x], seed)
            leaves = [n.id for n in g.leaves()]
            return Program(g, leaves, [grads[x]], ["row"])
        program = self._program(("jacobian", of, wrt), build)
        seed_id = program.leaves[-1]
        shape_f = self.spec.graph.nodes[f].shape
        if shape_f == ():
            return self._run(program, inputs, {seed_id: 1.0})["row"]
        rows = [self._run(program, inputs, {seed_id: basis.reshape(shape_f)})["row"]
                for basis in np.eye(int(np.prod(shape_f)))]
        return np.array(rows).reshape(shape_f + self.spec.graph.nodes[x].shape)

    def train(self, data=None, *, trace=None, log=None, checkpoint=None, resume=None, progress=False,
              **changes):
        """Train the params as the spec's `minimize` statement says; returns a History.

        data: a path (relative to the current directory), a built-in data set ("iris", "digits") or a
        dict of arrays (one row an example); by default the spec's `data`. changes: options and optimizer settings by name (epochs=5, lr=0.1,
        optimizer="adam"). trace: a CSV path, or True to keep it as `history.trace`. log: an epoch log
        CSV path. checkpoint: an .npz path saved after every chunk of epochs; resume: one to start from.
        The loop runs compiled, whatever the model's engine.
        """
        from graphdsl.training.trainer import Trainer

        if self.spec.training is None:
            raise DataError("this spec does not say what to minimize: add `minimize L using sgd(lr=0.1)`")
        train = self.spec.training.updated(changes)
        shown = [n for r in self.spec.requests if r.kind == "show" for n in r.names]
        return Trainer(self, train, data, shown).run(trace=trace, log=log, checkpoint=checkpoint,
                                                     resume=resume, progress=progress)

    def predict(self, data, node: str | None = None) -> np.ndarray:
        """Values of `node` for every example in `data` (a path, "iris", or a dict of input arrays),
        at the current params; by default the scores or probabilities the loss compares with the target."""
        from graphdsl.training.trainer import predict

        return predict(self, data, node)

    def summary(self) -> str:
        from graphdsl.tools.report import summary
        return summary(self.spec)
