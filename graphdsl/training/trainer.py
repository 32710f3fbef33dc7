"""Training a model: the one jitted loop, run chunk by chunk, and what each chunk writes.

Python prepares the data, the shuffled orders and the flat parameter vector
`theta`, then calls the generated `train` function for a chunk of epochs at a
time; between chunks it reports progress, writes the trace and epoch log, and
saves checkpoints. A chunk runs for about CHUNK_SECONDS, long enough that calls are cheap.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from functools import cache, cached_property

import numpy as np

from graphdsl import pipeline
from graphdsl.backend.runtime import step as T
from graphdsl.backend.train_loop import slots
from graphdsl.errors import DataError, SpecError
from graphdsl.files import check_outputs, locked_for_writing, path_argument
from graphdsl.training import interpreted, records
from graphdsl.training.config import Training
from graphdsl.training.evaluate import Scores, evaluate_examples
from graphdsl.training.examples import examples, orders, run_inputs
from graphdsl.training.plan import data_leaves
from graphdsl.training.progress import Progress, TrainingInterrupted, interrupts_between_chunks
from graphdsl.training.schedules import schedule_vector
from graphdsl.training.validation import EarlyStopping, held_out
from graphdsl.transforms.interpret import describe, first_non_finite

CHUNK_SECONDS = 0.2
SHORT_RUN = 5  # steps: a run this short keeps its trace, so its updates can be shown step by step


class TrainingError(Exception):
    """Training stopped: the loss went non-finite. The model keeps the last good weights."""


@contextmanager
def threads_limited(threads: int | None, compiled: bool = True):
    """BLAS's threads at most `threads` for the block (threadpoolctl), then as they were; by default
    (None) the cores other processes leave free (idle_cores). The generated loops are Numba's serial
    code, so BLAS's threads are all there are. The limit is the process's: while models train in
    several threads, the first to start sets it, the others train with it, and the last to end
    puts BLAS back as it was (each restoring its own would leave the limit of whichever ended last).
    A compiled run joining uncompiled ones extends their limit to its loop's BLAS (blas_pools)."""
    with BLAS_LIMIT["lock"]:
        first = not BLAS_LIMIT["runs"]
        if first:
            BLAS_LIMIT["threads"] = blas_threads(threads, blas_pools(compiled))
        if first or (compiled and not BLAS_LIMIT["loops"]):
            BLAS_LIMIT["loops"] = compiled or BLAS_LIMIT["loops"]
            if BLAS_LIMIT["threads"] is not None:
                BLAS_LIMIT["limiters"].append(blas_pools(compiled).limit(limits=BLAS_LIMIT["threads"]))
        BLAS_LIMIT["runs"] += 1
    try:
        yield
    finally:
        with BLAS_LIMIT["lock"]:
            BLAS_LIMIT["runs"] -= 1
            if not BLAS_LIMIT["runs"]:
                for limiter in reversed(BLAS_LIMIT["limiters"]):
                    limiter.restore_original_limits()
                BLAS_LIMIT["limiters"].clear()


# the runs training now, the threads they train BLAS with (None: as it is), its limiters, and
# whether those cover the compiled loops' BLAS
BLAS_LIMIT = {"lock": threading.Lock(), "runs": 0, "threads": None, "limiters": [], "loops": False}


def blas_threads(threads: int | None, pool) -> int | None:
    """The threads to limit BLAS to: `threads`, or by default the cores left free, never more than
    it has; None where nothing changes."""
    if threads is not None:
        return int(threads)
    now = max((lib.num_threads for lib in pool.lib_controllers), default=1)
    free = idle_cores() if now > 1 else now
    return free if free < now else None


def blas_pools(compiled: bool = True):
    """The BLAS libraries a run calls: NumPy's, and SciPy's, which the compiled loops call (loaded
    here for them if it is not yet; an uncompiled run, a homework's, is spared its 0.14 s import)."""
    if compiled:
        import scipy.linalg.cython_blas  # noqa: F401
    return loaded_pools("scipy.linalg.cython_blas" in sys.modules)


@cache
def loaded_pools(with_scipy: bool):
    """The BLAS libraries loaded, found once for each of the two states: looking them up again cost
    each train() call a few milliseconds, a tenth of a small network's whole run."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def idle_cores() -> int:
    """The cores this process may use less those other processes' threads are running on now, at
    least 1. BLAS's threads wait for each other at every product, so one that shares its core with
    a busy process holds up all of them: on a 2-core machine with one busy process, 2 threads ran
    the MNIST-size workload at half the speed of 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = running_elsewhere()
    return cores if busy is None else max(1, min(cores, cores - busy))


def running_elsewhere() -> int | None:
    """Threads of other processes running now (Linux's procs_running, less this process's running
    threads), the fewest of three looks, so that a thread running for an instant is not counted;
    None where /proc does not say. Not the load average: it takes a minute to see a process that
    has just started."""
    try:
        fewest = None
        for _ in range(3):
            with open("/proc/stat") as stat:
                running = next(int(line.split()[1]) for line in stat if line.startswith("procs_running"))
            if running <= 1:  # this thread alone, looking: nothing else runs (a quiet machine's usual case)
                return 0
            mine = sum(thread_running(task) for task in os.listdir("/proc/self/task"))
            fewest = running - mine if fewest is None else min(fewest, running - mine)
            if fewest <= 0:
                return 0
        return fewest
    except (OSError, StopIteration, ValueError):
        return None


def thread_running(task: str) -> bool:
    """Whether this process's thread `task` is running or runnable (state R in its /proc stat)."""
    try:
        with open(f"/proc/self/task/{task}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):  # the thread ended while we looked
        return False


def check_arguments(model, train: Training, data, paths: tuple, on_epoch, threads) -> None:
    """train()'s arguments, before anything runs: the files (trace, log, checkpoint, resume) paths
    (trace may be True), none of them the spec, a data or validation file, or another output
    (checkpoint may be resume's file); on_epoch a function; threads None or a whole number."""
    if on_epoch is not None and not callable(on_epoch):
        raise DataError(f"on_epoch is a function of (epoch, metrics), not {on_epoch!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or threads < 1):
        raise ValueError(f"threads must be a whole number of at least 1, not {threads!r}")
    trace, log, checkpoint, resume = paths
    named = {"trace": None if trace is True else trace, "log": log, "checkpoint": checkpoint, "resume": resume}
    for name, value in named.items():
        if value is not None:
            path_argument(name, value)
    check_outputs([*run_inputs(model, train, data), ("the resume file", resume)],
                  [(f"{name}=", named[name]) for name in ("trace", "log", "checkpoint")],
                  may_share=(("checkpoint=", "the resume file"),))


def loop_value(value, dtype):
    """A constant leaf's value as the loop takes it: a float, or an array in the loop's dtype."""
    return float(value) if np.shape(value) == () else np.ascontiguousarray(value, dtype=dtype)


class Trainer:
    """One training run of a model: compiled once, then run chunk by chunk."""

    def __init__(self, model, train: Training, data=None, traced=(), on_epoch=None):
        self.model, self.train = model, train
        spec = model.spec
        self.params = train.trained(spec.names_of("param"))  # frozen params are constants of the loop
        leaves = data_leaves(spec, spec.graph.names[train.loss])
        every = examples(model, train, data, leaves)  # in the loop's dtype
        self.fit, self.val = held_out(model, train, every, leaves)  # validation in the interpreter's dtype
        self.stopping = EarlyStopping(train, bool(self.val), on_epoch)
        n = len(next(iter(self.fit.values()))) if self.fit else 1  # no data leaves: one step an epoch
        size = n if train.options["batch"] == "all" else min(train.options["batch"], n)
        self.size, self.n, self.steps_per_epoch = size, n, -(-n // size)
        # shown nodes and the gradients `grad` statements name are per-example values, so traced only
        # at one example a step; the loss has its column, the params' gradients theirs
        self.traced = [t for t in dict.fromkeys(traced) if t != train.loss] if size == 1 else []
        named = [n for r in spec.requests if r.kind == "grad" and r.loss == train.loss for n in r.names]
        self.deltas = [n for n in dict.fromkeys(named) if n not in self.params] if size == 1 else []
        # the step graph and its compiled loops are kept with the spec: a second train() reuses them
        self.plan = pipeline.step_plan(spec, train, leaves, size if size > 1 else None,
                                       [spec.graph.names[t] for t in self.traced],
                                       [spec.graph.names[d] for d in self.deltas])
        self.dtype = np.dtype(train.options["dtype"])
        whole = train.options["epochs"] * self.steps_per_epoch  # the run's, resumed or not: one engine either way
        self.interpreted = interpreted.worth_interpreting(self, whole)
        self.python_update = interpreted.python_update(self, whole)
        # what every chunk passes the loop unchanged: the examples of each data leaf, the constants
        self.arguments = ([self.fit[self.plan.graph.name_of(d)] for d in self.plan.data],
                          [loop_value(self.constant(c), self.dtype) for c in self.plan.consts])

    def constant(self, leaf: int):
        """A leaf the loop takes as it is: a frozen param's current value, or the spec's."""
        g = self.plan.graph
        name = g.name_of(leaf)
        if name in self.train.frozen:
            return self.model.params[name]
        return g.values.get(leaf, np.zeros(g.nodes[leaf].shape))

    # -- the flat parameter vector -----------------------------------------

    def theta(self) -> np.ndarray:
        """Every param, flat, in the loop's dtype."""
        params = [np.ravel(self.model.params[n]) for n in self.params]
        return np.concatenate(params or [[]]).astype(self.dtype, copy=False)

    def unflatten(self, flat: np.ndarray) -> dict:
        shapes = [self.model.params[n].shape for n in self.params]
        return {n: flat[a:b].reshape(s).astype(np.float64) for n, s, (a, b) in zip(self.params, shapes, slots(shapes))}

    # -- compiling and calling the loop ------------------------------------

    def compiled(self, tracing: bool):
        """The loop's module: `train` and the `buffers` it works in. A plain update (plain SGD)
        runs inside the matrix products of its gradients, unless a trace records gradients or
        clipping scales them first."""
        fuse = self.plan.optimizer.is_plain(self.train.settings) and not tracing and not self.train.options["clip"]
        return pipeline.training_loop(self.plan, self.dtype.name, fuse)

    def controls(self) -> tuple:
        """(hyper, schedule, clip): what the loop's update reads, the optimizer's settings in
        `hyper` (whose lr, hyper[0], the schedule sets each step), the schedule's vector
        (T.learning_rate) and the gradient-norm limit (0: none)."""
        train = self.train
        schedule = schedule_vector(train.schedule, train.schedule_settings, train.settings["lr"],
                                   train.options["epochs"], self.steps_per_epoch)
        return np.array(self.plan.optimizer.hyper(train.settings)), schedule, float(train.options["clip"])

    def run_chunk(self, theta, state, t0: int, first: int, count: int, trace_rows: int):
        """Epochs first .. first+count-1; returns (steps done, trace rows, log rows, failed, the
        epochs' example order). A run of little work is interpreted (interpreted.worth_interpreting)."""
        if self.interpreted:
            return interpreted.run_chunk(self, theta, state, t0, first, count, trace_rows)
        opts = self.train.options
        order = orders(self.n, opts["seed"], bool(opts["shuffle"]) and self.size < self.n, first, count)
        data, consts = self.arguments
        trace = np.zeros((trace_rows, self.plan.trace.width))
        log = np.zeros((count, 3))
        loop = self.compiled(trace_rows > 0)
        steps, rows, failed = loop.train(*data, order, theta, state, *self.controls(), t0, first, self.size,
                                         opts["reduce"] == "mean", *consts, trace, opts["every"], log,
                                         loop.buffers(theta, self.size))
        return steps, trace[:rows], log, bool(failed), order

    @cached_property
    def trace_columns(self) -> list:
        return self.plan.trace.columns(self.train.loss, self.traced, self.params, self.deltas)

    # -- the run -------------------------------------------------------------

    def start(self, resume):
        """(theta, optimizer state, steps done, epochs done): fresh, or from a checkpoint."""
        theta, optimizer = self.theta(), self.plan.optimizer
        state = np.full(optimizer.state * theta.size, self.train.settings.get(optimizer.state_from, 0.0), self.dtype)
        if resume is None:
            return theta, state, 0, 0
        shapes = {n: p.shape for n, p in self.model.params.items()}  # frozen params too, as checkpoints hold
        params, saved, meta = records.load_weights(resume, shapes)
        self.model.params.update(params)
        if "optimizer" in saved and saved["optimizer"].shape == state.shape:
            state = saved["optimizer"].astype(self.dtype)
        self.stopping.resume(saved, meta)
        return self.theta(), state, int(meta.get("step", 0)), int(meta.get("epoch", 0))

    def metrics(self) -> list:
        names = ["loss"] + (["accuracy"] if self.train.metric else [])
        return names + [f"val_{m}" for m in names] if self.val else names

    def epoch_columns(self, log_rows: np.ndarray) -> dict:
        """Each metric for whole epochs, from the loop's log rows (loss sum, hits, examples)."""
        columns = {"loss": log_rows[:, 0] / self.steps_per_epoch}
        if self.train.metric:
            columns["accuracy"] = log_rows[:, 1] / self.n
        if self.val:  # chunks are one epoch long when there is validation
            columns.update({f"val_{k}": [v] for k, v in evaluate_examples(self.model, self.train, self.val).items()})
        return columns

    def run(self, *, trace=None, log=None, checkpoint=None, resume=None, progress=False) -> records.History:
        epochs = self.train.options["epochs"]
        theta, state, t, done = self.start(resume)
        short = epochs * self.steps_per_epoch <= SHORT_RUN and self.train.options["every"] == 1 and not resume
        trace = True if short and trace is None else trace
        out = Outputs(self, trace, log, progress, t, done, resume is not None, keep=short)
        # code generation before Ctrl-C is deferred; Numba compiles at the first chunk's call, which
        # a Ctrl-C then waits for
        try:  # closes the outputs, and so releases their locks, however the run ends
            if done < epochs and not self.interpreted:
                self.compiled(bool(trace))
            with interrupts_between_chunks() as interrupted:
                t, done = run_chunks(self, theta, state, (t, done), out, bool(trace), checkpoint, interrupted)
            if interrupted():  # even in the last chunk, or after the last look: a Ctrl-C is never ignored
                raise TrainingInterrupted(done, t)
        finally:
            out.close()
        history = out.finish()
        if short:
            history.updates = self.plan.trace.updates(out.kept_rows(), self.unflatten,
                                                      {n: self.model.params[n] for n in self.params})
        return finish(self, history)


def finish(self: Trainer, history: records.History) -> records.History:
    """The model takes the best epoch's weights, where early stopping kept them, and the
    History learns where it stopped and the metrics at the weights the model ends with."""
    stopping = self.stopping
    if stopping.stopped and history.epoch:
        history.stopped_epoch = history.epoch[-1]
    if stopping.best_theta is not None:
        self.model.params.update(self.unflatten(stopping.best_theta))
        history.best_epoch = stopping.best_epoch
    params = {n: self.model.params[n] for n in self.model.params}
    history.metrics = Scores(self.model, self.train, params, {"": self.fit, "val_": self.val})
    return history


def run_chunks(self: Trainer, theta, state, progress: tuple, out, tracing: bool, checkpoint, interrupted) -> tuple:
    """Trainer.run's chunks of epochs, each recorded once it ends (params, trace, log, checkpoint),
    until the epochs are done, early stopping stops, or Ctrl-C; returns (steps, epochs) done."""
    (t, done), epochs, count = progress, self.train.options["epochs"], 1
    one_by_one = bool(self.val) or self.stopping.each_epoch  # metrics measured after each epoch
    while done < epochs and not interrupted() and not self.stopping.stopped:  # Ctrl-C stops here
        count = min(count, epochs - done)
        began = time.perf_counter()
        rows = count * self.steps_per_epoch // self.train.options["every"] + 1 if tracing else 0
        steps, rows, log_rows, failed, order = self.run_chunk(theta, state, t, done, count, rows)
        self.model.params.update(self.unflatten(theta))
        out.trace_rows(rows)
        whole = log_rows[:steps // self.steps_per_epoch]
        if len(whole):
            columns = self.epoch_columns(whole)
            out.epochs(done, columns)
            if not failed:
                self.stopping.epoch(done + 1, columns, theta)
        if failed:
            raise non_finite(self, order, steps, t + steps + 1, done)
        t, done = t + steps, done + count
        if checkpoint:
            best, meta = self.stopping.saved()
            records.save_weights(checkpoint, dict(self.model.params), {"optimizer": state, **best},
                                 {"step": t, "epoch": done, **meta})
        # `took` includes the call's fixed cost, so it overstates an epoch's time and the next
        # chunk runs about CHUNK_SECONDS at most: a run of fast epochs takes three calls
        took = time.perf_counter() - began
        count = max(1, int(count * CHUNK_SECONDS / max(took, 1e-6))) if not one_by_one else 1
    return t, done

def non_finite(self: Trainer, order, steps: int, step: int, done: int) -> TrainingError:
    """The error for a step whose loss or gradient was not finite: the step replayed in the
    interpreter, naming the first non-finite value."""
    e, s = divmod(steps, self.steps_per_epoch)
    ids, weights = np.empty(self.size, np.int64), np.empty(self.size, self.dtype)
    T.batch_rows(order[e % len(order)], s, self.size, self.train.options["reduce"] == "mean", ids, weights)  # as the loop
    plan, g = self.plan, self.plan.graph
    values = dict(zip(plan.consts, self.arguments[1]))  # every value in the loop's dtype, as it ran
    values.update(zip(plan.params, (np.asarray(self.model.params[n], self.dtype)
                                    for n in self.params)))
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
                                       text=spec.text,
                                       hint="lower the learning rate, or check the data for extreme values")))


class Outputs:
    """What a run writes as its chunks finish: the History, the trace (a CSV file, or rows kept
    for `history.trace` when trace=True), the epoch log and the progress display. A resumed run's
    trace and log keep their rows up to the checkpoint's step and epoch, and go on."""

    def __init__(self, trainer: Trainer, trace, log, progress: bool, step: int, epoch: int, resumed: bool,
                 keep: bool = False):
        self.trace, self.width = trace, trainer.plan.trace.width
        self.keep = trace is True or keep  # the rows, in memory
        self.header = ["step", "epoch", *trainer.trace_columns] if trace is True else []
        self.history, self.kept = records.History(), []
        # locked before the writers truncate or cut them: a second run writing one is refused, unharmed
        self.locks = [locked_for_writing(path) for path in (None if trace is True else trace, log) if path]
        self.writer = self.epoch_log = self.bar = None
        try:
            self.writer = (records.TraceWriter(trace, trainer.trace_columns, step if resumed else None)
                           if trace not in (None, True) else None)
            self.epoch_log = records.EpochLog(log, trainer.metrics(), epoch if resumed else None) if log else None
        except BaseException:
            self.close()  # a failed run keeps no lock: trying again must not find the file taken
            raise
        self.bar = Progress(trainer.train.options["epochs"], epoch, progress)

    def trace_rows(self, rows: np.ndarray) -> None:
        if self.writer:
            self.writer.append(rows)
        if self.keep:
            self.kept.append(rows)

    def epochs(self, first: int, columns: dict) -> None:
        """Whole epochs first+1, first+2, ...: each metric's values, one an epoch."""
        epochs = range(first + 1, first + 1 + len(columns["loss"]))
        self.history.extend(np.arange(epochs.start, epochs.stop), columns)  # a range converts one int at a time
        if self.epoch_log or self.bar.on:
            for i, epoch in enumerate(epochs):
                values = {k: float(v[i]) for k, v in columns.items()}
                if self.epoch_log:
                    self.epoch_log.append(epoch, values)
                self.bar.epoch(epoch, values)

    def close(self) -> None:
        for closing in (self.writer, self.epoch_log, self.bar, *self.locks):  # the locks once all is written
            if closing:
                closing.close()

    def kept_rows(self) -> np.ndarray:
        return np.concatenate(self.kept) if self.kept else np.zeros((0, self.width))

    def finish(self) -> records.History:
        if self.trace is True:
            self.history.trace = self.kept_rows()
            self.history.trace_columns = self.header
        return self.history
