"""Training a model: its examples, the one jitted loop, and what training writes.

Python prepares the data, the shuffled orders and the flat parameter vector
`theta`, then calls the generated `train` function for a chunk of epochs at a
time; between chunks it reports progress, writes the trace and epoch log, and
saves checkpoints. A chunk runs long enough (about 0.2 s) that calls are cheap.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from graphdsl.backend import codegen
from graphdsl.training import data as datasets
from graphdsl.backend import cache as jit
from graphdsl.training import records
from graphdsl.backend.runtime import step as T
from graphdsl.transforms.autodiff import backward
from graphdsl.transforms.batch import batched
from graphdsl.errors import DataError, SpecError
from graphdsl.transforms.interpret import evaluate
from graphdsl.ir.graph import Graph
from graphdsl.ir.sym import Sym
from graphdsl.backend import train_loop as loopgen
from graphdsl.training.config import DataSource, Training

CHUNK_SECONDS = 0.2
STATE_SIZE = {"sgd": 1, "adam": 2}   # optimizer state, in multiples of the parameter count
HYPER = {"sgd": ("lr", "momentum", "weight_decay"), "adam": ("lr", "beta1", "beta2", "eps", "weight_decay")}


class TrainingError(Exception):
    """Training stopped: the loss went non-finite. The model keeps the last good weights."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training between two chunks: the model holds the weights after `epoch`
    epochs (`step` steps), and the checkpoint, if one was asked for, holds the same."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"training interrupted after epoch {epoch}")
        self.epoch, self.step = epoch, step


@contextmanager
def interrupts_between_chunks():
    """Yields a function that says whether Ctrl-C was pressed; the press itself raises nothing.
    The compiled loop updates theta and the optimizer state in place, and Python then records
    the chunk (params, step count, trace, checkpoint): stopping anywhere in there would leave
    those out of step. So a first Ctrl-C takes effect once the chunk is recorded (about 0.2 s);
    a second one stops at once. Signals can only be handled on the main thread; elsewhere
    Ctrl-C keeps Python's behaviour."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def press(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, press)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class LoopPlan:
    """What the generated loop needs to know about the step graph."""

    graph: Graph
    data: list          # leaves fed with examples, in field order
    consts: list        # the other non-param leaves, passed once
    params: list        # param leaves, in `theta` order
    weights: int | None  # per-example loss weights (minibatch graphs only)
    outputs: list       # loss, one gradient per param, then the prediction, then traced nodes
    metric: tuple | None  # (rule, output index, target leaf)
    traced: list
    first_traced: int
    optimizer: str


def data_leaves(spec, loss: int) -> list:
    """Inputs and targets the loss depends on: the values each example supplies."""
    needed = spec.graph.ancestors([loss])
    return [spec.graph.names[n] for n in spec.names_of("input", "target") if spec.graph.names[n] in needed]


def make_plan(spec, train: Training, data: list, batch: int | None, traced: list) -> LoopPlan:
    """The step graph (forward, then backward to every param) for one example or `batch` of them;
    `data` are the leaves examples feed."""
    g0 = spec.graph
    loss, params = g0.names[train.loss], [g0.names[n] for n in spec.names_of("param")]
    pred = [train.metric[1]] if train.metric else []
    if batch is None:
        g = g0.copy()
        new, weights, total = {n.id: n.id for n in g0.nodes}, None, loss
    else:
        try:
            g, new = batched(g0, data, [loss, *pred, *traced], batch)
        except SpecError as err:
            raise err.located(spec.filename, spec.source) from None
        weights = g.leaf("input", None, (batch,))
        total = (Sym(g, new[loss]) * Sym(g, weights)).op("sum").id
    grads = backward(g, total, [new[p] for p in params])
    outputs = [total, *(grads[new[p]] for p in params), *(new[p] for p in pred), *(new[t] for t in traced)]
    metric = (train.metric[0], len(params) + 1, new[train.metric[2]]) if train.metric else None
    fed = {*(new[d] for d in data), *(new[p] for p in params), weights}
    return LoopPlan(g, [new[d] for d in data], [n.id for n in g.leaves() if n.id not in fed],
                    [new[p] for p in params], weights, outputs, metric,
                    [new[t] for t in traced], 1 + len(params) + len(pred), train.optimizer)


def fields(model, data: list) -> list:
    g = model.spec.graph
    return [datasets.Field(g.name_of(d), g.nodes[d].op, g.nodes[d].shape, model._classes.get(d)) for d in data]


def examples(model, train: Training, source, data: list) -> dict:
    """Every example for the data leaves: from `source`, the spec's `data`, or the spec's own values.
    The spec's paths are relative to its folder; a path passed in, to the current directory (as
    `--data` and `predict` take it)."""
    spec = model.spec
    from_spec = source is None
    source = source if source is not None else train.data
    wanted = fields(model, data)
    if isinstance(source, DataSource):
        source = source.loadable()
    if source is None:  # no data anywhere: the spec's values are the one example
        missing = [f.name for f in wanted if spec.graph.names[f.name] not in spec.graph.values]
        if missing:
            raise DataError(f"`{missing[0]}` has no value and the spec gives no data: add "
                            f"`data \"examples.csv\"` (or `data {missing[0]} = [...]`), or pass --data")
        source = {f.name: spec.graph.values[spec.graph.names[f.name]][None] for f in wanted}
    base = Path(spec.filename).parent if from_spec and Path(spec.filename).exists() else None
    return datasets.load(source, wanted, base, np.dtype(train.options["dtype"]))


def orders(n: int, seed: int, shuffle: bool, first: int, count: int) -> np.ndarray:
    """Example order of epochs first .. first+count-1, epoch first+i in row i % rows: one row, the
    data's order, when not shuffled. A shuffled epoch e's order depends only on (seed, e), so a
    resumed run sees the same orders as an uninterrupted one."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)[None]
    return np.stack([np.random.default_rng([seed, e]).permutation(n) for e in range(first, first + count)])


class Trainer:
    """One training run of a model: compiled once, then run chunk by chunk."""

    def __init__(self, model, train: Training, source=None, traced=()):
        self.model, self.train = model, train
        spec = model.spec
        loss = spec.graph.names[train.loss]
        data = data_leaves(spec, loss)
        every = examples(model, train, source, data)  # in the loop's dtype
        self.fit, val = datasets.split(every, train.options["validation"], train.options["seed"])
        self.val = {k: v.astype(np.float64, copy=False) for k, v in val.items()}  # the interpreter's dtype
        n = len(next(iter(self.fit.values())))
        size = n if train.options["batch"] == "all" else min(train.options["batch"], n)
        self.size, self.n = size, n
        # shown nodes are per-example values, so traced only at one example a step; the loss has its column
        self.traced = [t for t in dict.fromkeys(traced) if t != train.loss] if size == 1 else []
        batch, traced_ids = size if size > 1 else None, [spec.graph.names[t] for t in self.traced]
        # the step graph and its compiled loop are kept with the spec: a second train() reuses them
        self.key = ("train", train.loss, train.metric, train.optimizer, tuple(data), batch, tuple(traced_ids))
        self.plan = model._program(self.key, lambda: make_plan(spec, train, data, batch, traced_ids))
        self.dtype = np.dtype(train.options["dtype"])
        # what every chunk passes the loop unchanged: the examples of each data leaf, the constants
        self.arguments = ([self.fit[self.plan.graph.name_of(d)] for d in self.plan.data],
                          [self.leaf_value(c) for c in self.plan.consts])

    # -- the flat parameter vector -----------------------------------------

    def theta(self) -> np.ndarray:
        """Every param, flat, in the loop's dtype."""
        params = [np.ravel(self.model.params[n]) for n in self.model.spec.names_of("param")]
        return np.concatenate(params or [[]]).astype(self.dtype, copy=False)

    def unflatten(self, flat: np.ndarray) -> dict:
        names = self.model.spec.names_of("param")
        shapes = [self.model.params[n].shape for n in names]
        return {n: flat[a:b].reshape(s).astype(np.float64) for n, s, (a, b) in zip(names, shapes, loopgen.slots(shapes))}

    # -- compiling and calling the loop ------------------------------------

    def compiled(self, tracing: bool):
        """The loop's module: `train` and the `buffers` it works in. Plain SGD updates weights inside
        their gradient's matrix product (loopgen.sgd_products), unless a trace records gradients."""
        s = self.train.settings
        fuse = self.train.optimizer == "sgd" and s["momentum"] == s["weight_decay"] == 0 and not tracing
        return self.model._program((*self.key, self.dtype.name, fuse), lambda: jit.load(
            codegen.module([loopgen.train_loop(self.plan, fuse)], self.dtype.name)))

    def leaf_value(self, leaf: int):
        g = self.plan.graph
        value = g.values.get(leaf, np.zeros(g.nodes[leaf].shape))
        return float(value) if g.nodes[leaf].shape == () else np.ascontiguousarray(value, dtype=self.dtype)

    def run_chunk(self, theta, state, t0: int, first: int, count: int, trace_rows: int):
        """Epochs first .. first+count-1; returns (steps done, trace rows, log rows, failed, the
        epochs' example order)."""
        opts = self.train.options
        order = orders(self.n, opts["seed"], bool(opts["shuffle"]) and self.size < self.n, first, count)
        hyper = np.array([self.train.settings[k] for k in HYPER[self.train.optimizer]])
        data, consts = self.arguments
        trace = np.zeros((trace_rows, loopgen.trace_width(self.plan)))
        log = np.zeros((count, 3))
        loop = self.compiled(trace_rows > 0)
        steps, rows, failed = loop.train(*data, order, theta, state, hyper, t0, first, self.size,
                                         opts["reduce"] == "mean", *consts, trace, opts["every"], log,
                                         loop.buffers(theta, self.size))
        return steps, trace[:rows], log, bool(failed), order

    @cached_property
    def trace_columns(self) -> list:
        spec = self.model.spec
        shape = lambda n: spec.graph.nodes[spec.graph.names[n]].shape  # noqa: E731
        params = spec.names_of("param")
        return ([self.train.loss] + [c for t in self.traced for c in records.flat_names(t, shape(t))]
                + [c for p in params for c in records.flat_names(p, shape(p))]
                + [c for p in params for c in records.grad_names(self.train.loss, p, shape(p))])

    def steps_per_epoch(self) -> int:
        return -(-self.n // self.size)

    # -- the run -------------------------------------------------------------

    def start(self, resume):
        """(theta, optimizer state, steps done, epochs done): fresh, or from a checkpoint."""
        theta = self.theta()
        state = np.zeros(STATE_SIZE[self.train.optimizer] * theta.size, self.dtype)
        if resume is None:
            return theta, state, 0, 0
        shapes = {n: self.model.params[n].shape for n in self.model.spec.names_of("param")}
        params, saved, meta = records.load_weights(resume, shapes)
        self.model.params.update(params)
        if "optimizer" in saved and saved["optimizer"].shape == state.shape:
            state = saved["optimizer"].astype(self.dtype)
        return self.theta(), state, int(meta.get("step", 0)), int(meta.get("epoch", 0))

    def metrics(self) -> list:
        names = ["loss"] + (["accuracy"] if self.train.metric else [])
        return names + [f"val_{m}" for m in names] if self.val else names

    def epoch_columns(self, log_rows: np.ndarray) -> dict:
        """Each metric for whole epochs, from the loop's log rows (loss sum, hits, examples)."""
        columns = {"loss": log_rows[:, 0] / self.steps_per_epoch()}
        if self.train.metric:
            columns["accuracy"] = log_rows[:, 1] / self.n
        if self.val:  # chunks are one epoch long when there is validation
            columns.update({f"val_{k}": [v] for k, v in evaluate_examples(self.model, self.train, self.val).items()})
        return columns

    def record(self, first: int, log_rows: np.ndarray, history, epoch_log, bar) -> None:
        """Whole epochs first+1, first+2, ... into the history, the epoch log and the progress display."""
        if not len(log_rows):
            return
        epochs = range(first + 1, first + 1 + len(log_rows))
        columns = self.epoch_columns(log_rows)
        history.extend(np.arange(epochs.start, epochs.stop), columns)  # a range converts one int at a time
        if epoch_log or bar.on:
            for i, epoch in enumerate(epochs):
                values = {k: float(v[i]) for k, v in columns.items()}
                if epoch_log:
                    epoch_log.append(epoch, values)
                bar.epoch(epoch, values)

    def run(self, *, trace=None, log=None, checkpoint=None, resume=None, progress=False) -> records.History:
        epochs = self.train.options["epochs"]
        theta, state, t, done = self.start(resume)
        history = records.History()
        resumed = resume is not None  # then the trace and log keep their rows up to the checkpoint, and go on
        writer = (records.TraceWriter(trace, self.trace_columns, t if resumed else None)
                  if trace not in (None, True) else None)
        kept = []
        epoch_log = records.EpochLog(log, self.metrics(), done if resumed else None) if log else None
        bar = Progress(epochs, done, progress)
        count = 1
        # code generation before Ctrl-C is deferred; Numba compiles at the first chunk's call, which
        # a Ctrl-C then waits for
        self.compiled(bool(trace))
        try:
            with interrupts_between_chunks() as interrupted:
                while done < epochs:
                    count = min(count, epochs - done)
                    began = time.perf_counter()
                    rows = count * self.steps_per_epoch() // self.train.options["every"] + 1 if trace else 0
                    steps, rows, log_rows, failed, order = self.run_chunk(theta, state, t, done, count, rows)
                    self.model.params.update(self.unflatten(theta))
                    if writer:
                        writer.append(rows)
                    if trace is True:
                        kept.append(rows)
                    self.record(done, log_rows[:steps // self.steps_per_epoch()], history, epoch_log, bar)
                    if failed:
                        raise self.non_finite(theta, order, steps, t + steps + 1, done)
                    t, done = t + steps, done + count
                    if checkpoint:
                        records.save_weights(checkpoint, self.unflatten(theta), {"optimizer": state},
                                             {"step": t, "epoch": done})
                    took = time.perf_counter() - began
                    count = max(1, int(count * min(16.0, CHUNK_SECONDS / max(took, 1e-6)))) if not self.val else 1
                    if interrupted() and done < epochs:  # the chunk is recorded: stop here, consistently
                        raise TrainingInterrupted(done, t)
        finally:
            for closing in (writer, epoch_log, bar):
                if closing:
                    closing.close()
        if trace is True:
            history.trace = np.concatenate(kept) if kept else np.zeros((0, loopgen.trace_width(self.plan)))
            history.trace_columns = ["step", "epoch", *self.trace_columns]
        return history

    def non_finite(self, theta, order, steps: int, step: int, done: int) -> "TrainingError":
        """Replay the failing step in the interpreter and name the first non-finite value."""
        e, s = divmod(steps, self.steps_per_epoch())
        ids, weights = np.empty(self.size, np.int64), np.empty(self.size, self.dtype)
        T.batch_rows(order[e % len(order)], s, self.size, self.train.options["reduce"] == "mean", ids, weights)  # as the loop
        plan, g = self.plan, self.plan.graph
        values = dict(zip(plan.consts, self.arguments[1]))  # every value in the loop's dtype, as it ran
        values.update(zip(plan.params, (np.asarray(self.model.params[n], self.dtype)
                                        for n in self.model.spec.names_of("param"))))
        for leaf in plan.data:
            rows = self.fit[g.name_of(leaf)][ids]
            values[leaf] = rows if plan.weights is not None else rows[0]
        if plan.weights is not None:
            values[plan.weights] = weights
        bad = first_non_finite(g, values, plan.outputs[:1 + len(plan.params)])
        # the compiled exp and tanh round differently from NumPy's, so near overflow a replay can stay finite
        where = (f"the first value that is not finite is {describe(g, bad)}" if bad else
                 "replayed in the interpreter, the step stays finite, so it is at the edge of overflow")
        message = (f"training stopped at step {step} (epoch {done + e + 1}): the loss or a gradient is not "
                   f"finite; {where}. The model keeps the weights of step {step - 1}")
        spec = self.model.spec
        return TrainingError(str(SpecError(message, bad.span if bad else None, filename=spec.filename,
                                           source=spec.source,
                                           hint="lower the learning rate, or check the data for extreme values")))


def first_non_finite(graph: Graph, leaves: dict, outputs):
    """The first node, in graph order, whose value is not finite among those `outputs` need, or None.
    Graph order is computation order, so this is where the trouble starts, not where it ends up."""
    needed = sorted(graph.ancestors(outputs))
    found = evaluate(graph, leaves, needed)
    return next((graph.nodes[i] for i in needed if not np.all(np.isfinite(found[i]))), None)


def describe(graph: Graph, node) -> str:
    label = graph.name_of(node.id)
    return f"`{label}`" if label else f"a `{node.op}` value"


def detect_anomaly(model, **inputs) -> str | None:
    """The first value or gradient of the spec that is not finite, as a located message, or None.
    Runs the interpreter on the forward graph and, if the spec names a loss, its backward graph
    (whose nodes come after the forward ones), at the model's params and the given inputs."""
    program = model._grad_program(None) if model.loss else model._forward_program()
    g = program.graph
    values = [*model.spec.graph.names.values(), *program.outputs]  # every named value, then the gradients
    bad = first_non_finite(g, model._leaf_values(g, inputs), values)
    if bad is None:
        return None
    forward = len(model.spec.graph.nodes)  # autodiff appends backward nodes after the forward ones
    what = f"the gradient of `{model.loss}` through a `{bad.op}`" if bad.id >= forward else describe(g, bad)
    # backward nodes carry no span of their own: point at the latest forward value they are computed from
    span = bad.span or next((g.nodes[i].span for i in sorted(g.ancestors([bad.id]), reverse=True)
                             if i < forward and g.nodes[i].span), None)
    spec = model.spec
    return str(SpecError(f"anomaly: the first value that is not finite is {what}", span,
                         filename=spec.filename, source=spec.source,
                         hint="a stable form may exist: softmax_ce, logsumexp and bce_logits take raw scores"))


def evaluate_all(model, nodes: list, arrays: dict) -> dict:
    """Values of spec nodes (ids) for every example in `arrays` (name -> one row an example), with the
    interpreter on one minibatch graph of them all."""
    spec = model.spec
    data = [spec.graph.names[name] for name in arrays]
    n = len(next(iter(arrays.values())))
    # kept for these nodes at the last size asked for: validation evaluates it every epoch, and
    # predict() at every new size would otherwise add a graph to the spec for good
    key = ("batched", tuple(data), tuple(nodes))
    kept = spec.programs.get(key)
    if kept is None or kept[0] != n:
        kept = spec.programs[key] = (n, *batched(spec.graph, data, nodes, n))
    _, g, new = kept  # this call's own: another thread may replace the spec's entry meanwhile
    values = {leaf.id: g.values.get(leaf.id) for leaf in g.leaves()}
    values.update({new[d]: arrays[name] for d, name in zip(data, arrays)})
    values.update({new[spec.graph.names[p]]: v for p, v in model.params.items()})
    with np.errstate(all="ignore"):
        found = evaluate(g, values, [new[x] for x in nodes])
    return {x: found[new[x]] for x in nodes}


def evaluate_examples(model, train: Training, arrays: dict) -> dict:
    """Mean loss (and accuracy) over examples."""
    loss = model.spec.graph.names[train.loss]
    pred = [train.metric[1]] if train.metric else []
    found = evaluate_all(model, [loss, *pred], arrays)
    out = {"loss": float(np.mean(found[loss]))}
    if train.metric:
        rule, p, target = train.metric
        ones = np.ones(len(found[loss]))
        want = np.asarray(arrays[model.spec.graph.name_of(target)], dtype=np.float64)
        hits = (T.hits_argmax(found[p], want, ones) if rule == "argmax" else
                T.hits_threshold(found[p], want, ones, 0.5 if rule == "half" else 0.0))
        out["accuracy"] = hits / len(ones)
    return out


def predict(model, source, node: str | None = None) -> np.ndarray:
    """`node` (by default what the loss compares with the target) for every example in `source`."""
    train = model.spec.training
    if node is None and (train is None or train.metric is None):
        raise DataError("say which node to predict, e.g. predict(data, node=\"y_hat\")")
    target = model._id(node) if node else train.metric[1]
    needed = model.spec.graph.ancestors([target])
    inputs = [i for i in (model.spec.graph.names[n] for n in model.spec.names_of("input")) if i in needed]
    examples = datasets.load(source, fields(model, inputs), None)
    return np.array(evaluate_all(model, [target], examples)[target])  # never a view of the caller's data


class Progress:
    """A tqdm bar on a terminal; one line per epoch on stderr otherwise; nothing when off."""

    def __init__(self, total: int, done: int, on: bool):
        self.on, self.total = on, total
        self.bar = None
        if on and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="epoch", file=sys.stderr, leave=False)

    def epoch(self, epoch: int, values: dict) -> None:
        if not self.on:
            return
        text = ", ".join(f"{k} {v:.6g}" for k, v in values.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        else:
            print(f"epoch {epoch}/{self.total}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
