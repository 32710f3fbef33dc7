"""A compiled spec as a Python object: forward values, gradients, Jacobians, parameters."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from graphdsl import files, pipeline
from graphdsl.errors import ClassIndexError, DataError, SpecError
from graphdsl.frontend.spec import Spec
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS
from graphdsl.ir.ops.nn import not_class_indices
from graphdsl.ir.shapes import fmt_shape
from graphdsl.training import records
from graphdsl.training.data import checked_params, fitted
from graphdsl.training.examples import run_inputs
from graphdsl.transforms.interpret import evaluate

ENGINES = ("auto", "numba", "numpy")
STARTING = threading.Lock()  # makes a train() call's look at _trained_by and its claim one step


def bad_classes(name: str, value, classes: int) -> str | None:
    """What is wrong with a value read as class indices, or None."""
    value = np.asarray(value)
    bad = not_class_indices(value, classes)
    if not np.any(bad):
        return None
    return (f"`{name}` holds class indices, which must be whole numbers from 0 to {classes - 1}, "
            f"but it holds {value[bad].flat[0]:g}")


def class_index_leaves(graph: Graph) -> dict:
    """Leaf id -> its number of classes, for the leaves an op reads as class indices (its
    `class_index` operand, indices into the last axis of its first operand)."""
    found = {}
    for node in graph.nodes:
        at = None if node.is_leaf else OPS[node.op].class_index
        if at is not None and graph.nodes[node.args[at]].is_leaf:
            found[node.args[at]] = graph.nodes[node.args[0]].shape[-1]
    return found


def param_shapes(spec: Spec) -> dict:
    """Each param's shape, by name, as the spec declares it."""
    return {n: spec.graph.nodes[spec.graph.names[n]].shape for n in spec.names_of("param")}


def fitted_params(model) -> dict:
    """model.params as compiled code reads them (data.checked_params), checked whenever code is about
    to read them: a user may have set any of them to anything. What needed converting is kept so."""
    model.params.update(checked_params(model.params, param_shapes(model.spec)))
    return model.params


def interpreting(model, program) -> bool:
    """Whether the interpreter answers this call of `program` (engine "numpy", or the first calls on
    "auto"): decided once a user's call, so that one result never mixes the two engines."""
    return model.engine == "numpy" or (model.engine == "auto" and program.interprets())


def checked_output(model, path):
    """`path`, once sure it is a path and not a file the model's spec reads (the spec, its data)."""
    files.path_argument("save()'s path", path)
    files.check_outputs(run_inputs(model, model.spec.training, None), [("save()", path)])
    return path


@contextmanager
def claimed(model):
    """The model marked as trained by this thread for the block: each run reads the params once and
    writes them as it goes, so two at once would lose one's work."""
    with STARTING:
        if model._trained_by is not None:
            raise RuntimeError(f"this model is already training (in thread {model._trained_by}); wait for "
                               "that train() to return, or train a model of its own: graphdsl.compile or "
                               "graphdsl.load makes one")
        model._trained_by = threading.current_thread().name
    try:
        yield
    finally:
        model._trained_by = None


class Model:
    """A checked spec, ready to run. Build one with `graphdsl.compile` or `graphdsl.load`.

    engine="numba" runs generated, cached Numba kernels; engine="numpy" runs the
    reference interpreter (no compile step, slower per call); engine="auto" (the default)
    interprets a program's first calls and compiles it when they repeat (pipeline.Program.interprets).
    """

    def __init__(self, spec: Spec, engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.spec, self.engine = spec, engine
        graph = spec.graph
        self.params = {n: graph.values[graph.names[n]].copy() for n in spec.names_of("param")}
        self.classes = class_index_leaves(graph)  # checked before any kernel runs
        self._trained_by = None  # the name of the thread training this model, while one does
        # leaf id -> name, for every program: they share the spec's leaf ids
        self._leaf_names = {nid: name for name, nid in graph.names.items()
                            if graph.nodes[nid].is_leaf and spec.kinds[name] != "node"}  # not aliases

    @property
    def loss(self) -> str | None:
        return self.spec.loss

    @property
    def class_indices(self) -> list:
        """Names of the leaves read as class indices: data, not something to differentiate."""
        return [self.spec.graph.name_of(i) for i in self.classes]

    # -- running ------------------------------------------------------------

    def leaf_values(self, graph: Graph, inputs: dict) -> dict:
        """The value of each leaf of a program's graph, by id: given in `inputs` (by name), a
        param, or the spec's; checked against its shape and, for class indices, its classes."""
        settable = self.spec.names_of("input", "target", "param")
        for name in inputs:
            if name not in settable:
                raise DataError(f"`{name}` is not an input, target or param of this spec; "
                                f"those are {', '.join(settable)}")
        params = fitted_params(self)
        return {node.id: self._leaf_value(graph, node, self._leaf_names[node.id], inputs, params)
                for node in graph.leaves() if node.id in self._leaf_names}  # not a Jacobian's seed, given per call

    def _leaf_value(self, graph: Graph, node, name: str, inputs: dict, params: dict):
        if name in inputs:
            value = fitted(f"`{name}`", inputs[name], node.shape)
        elif name in params:
            value = params[name]
        elif node.id in graph.values:
            value = graph.values[node.id]
        else:
            raise DataError(f"{node.op} `{name}` has no value: pass {name}=... "
                            f"or give it one in the spec (`{node.op} {name}{fmt_shape(node.shape) if node.shape else ''} = ...`)")
        problem = self.classes.get(node.id) and bad_classes(name, value, self.classes[node.id])
        if problem and name in inputs:
            raise DataError(problem)
        if problem:
            raise SpecError(problem, node.span, filename=self.spec.filename, text=self.spec.text)
        return float(value) if node.shape == () else value

    def _run(self, program: pipeline.Program, inputs: dict, extra: dict | None = None, interpret=None) -> dict:
        leaves = self.leaf_values(program.graph, inputs)
        leaves.update(extra or {})
        try:
            if interpreting(self, program) if interpret is None else interpret:
                found = evaluate(program.graph, leaves, program.outputs)
                results = [found[o] for o in program.outputs]
            else:
                results = program.kernel(*(leaves[l] for l in program.leaves))
        except ClassIndexError as err:  # a class index the spec computes from its data
            raise DataError(str(err)) from None
        from graphdsl.tools.report import Values  # a dict that a notebook shows as a table
        return Values((label, (np.float64(r) if np.ndim(r) == 0 else np.array(r)))
                      for label, r in zip(program.labels, results))

    # -- the public calls ---------------------------------------------------

    def forward(self, **inputs) -> dict:
        """Values of every named node, keyed by name."""
        return self._run(pipeline.forward_program(self.spec), inputs)

    def grad(self, loss: str | None = None, **inputs) -> dict:
        """Gradients of the loss with respect to every named node (zero where it does not depend on one)."""
        return self._run(pipeline.grad_program(self.spec, loss), inputs)

    def source(self, which: str = "forward") -> str:
        """The generated Numba module for the forward pass, or for the gradient ("grad")."""
        program = pipeline.forward_program(self.spec) if which == "forward" else pipeline.grad_program(self.spec)
        return program.source

    def jacobian(self, of: str, wrt: str, **inputs) -> np.ndarray:
        """d(of)/d(wrt) at the given inputs, shaped of.shape + wrt.shape."""
        program = pipeline.jacobian_program(self.spec, of, wrt)
        seed_id, g, interpret = program.leaves[-1], self.spec.graph, interpreting(self, program)  # one engine
        shape_f = g.nodes[g.names[of]].shape
        if shape_f == ():
            return self._run(program, inputs, {seed_id: 1.0}, interpret)["row"]
        rows = [self._run(program, inputs, {seed_id: basis.reshape(shape_f)}, interpret)["row"]
                for basis in np.eye(int(np.prod(shape_f)))]
        return np.array(rows).reshape(shape_f + g.nodes[g.names[wrt]].shape)

    def train(self, data=None, *, trace=None, log=None, checkpoint=None, resume=None, progress=False, threads=None,
              on_epoch=None, **changes):
        """Train the params as the spec's `minimize` statement says; returns a History.

        data: a path (relative to the current directory), a built-in data set ("iris", "digits") or a
        dict of arrays (one row an example); by default the spec's `data`. changes: options, optimizer and
        schedule settings by name (epochs=5, lr=0.1, optimizer="adam", schedule="cosine", warmup=5, clip=1.0,
        patience=5, validation="val.csv" or a dict of arrays; docs/training.md). trace: a CSV path, or
        True to keep it as `history.trace`. log: an epoch log CSV path. checkpoint: an .npz path saved
        after every chunk of epochs; resume: one to start from. threads: BLAS threads (by default the
        cores other processes leave free). on_epoch(epoch, metrics): returning True stops training.
        """
        from graphdsl.training.trainer import Trainer, check_arguments, threads_limited

        if self.spec.training is None:
            raise DataError("this spec does not say what to minimize: add `minimize L using sgd(lr=0.1)`")
        train = self.spec.training.updated(changes)
        check_arguments(self, train, data, (trace, log, checkpoint, resume), on_epoch, threads)
        fitted_params(self)  # the trainer flattens them into the loop's one parameter vector
        shown = [n for r in self.spec.requests if r.kind == "show" for n in r.names]
        with claimed(self):
            trainer = Trainer(self, train, data, shown, on_epoch)
            with threads_limited(threads, compiled=not trainer.interpreted):
                return trainer.run(trace=trace, log=log, checkpoint=checkpoint, resume=resume, progress=progress)

    def predict(self, data, node: str | None = None, classes: bool = False) -> np.ndarray:
        """Values of `node` for every example in `data` (a path, "iris", a dict of input arrays, an array
        for a spec of one input, or a DataFrame), at the current params; by default the scores or
        probabilities the loss compares with the target, or with classes=True the class each says."""
        from graphdsl.training.evaluate import predict
        return predict(self, data, node, classes, fitted_params(self))

    def evaluate(self, data=None) -> dict:  # the loss and metrics on `data` (as predict's; the spec's by default)
        from graphdsl.training.evaluate import evaluate_data
        return evaluate_data(self, data, fitted_params(self))

    def save(self, path) -> None:  # the params, an .npz keyed by name; never over a file the spec reads
        records.save_weights(checked_output(self, path), fitted_params(self))

    def load_weights(self, path) -> None:  # from an .npz: a param missing, extra or of another shape is named
        self.params.update(records.load_weights(path, param_shapes(self.spec), finite=True)[0])

    def summary(self):  # a Summary: print() it, or a notebook shows it as a table
        from graphdsl.tools.report import summary
        return summary(self.spec)

    def _repr_svg_(self) -> str | None:  # a notebook shows the graph as `graphdsl draw` draws it
        from graphdsl.tools.draw import notebook_svg
        return notebook_svg(self)
