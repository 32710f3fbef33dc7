"""Training uncompiled: a run whose work is small (a homework's step or two, an epoch of a small
network) runs its step graph in the NumPy interpreter instead of the jitted loop, which would take
Numba a second or more to compile before its first step.

It keeps the loop's contract exactly (backend/train_loop.py): the same step graph, examples in
the same order, the same checks before an update, the same log and trace rows, and the runtime's
own learning-rate, clipping, update and counting functions (the update uncompiled, `py_func`,
where it is small enough that compiling it would take longer). Only the summation order inside a
product (or a norm) may differ, in the last bits."""
from __future__ import annotations

import math

import numpy as np

from graphdsl.backend.runtime import step as T
from graphdsl.backend.train_loop import slots
from graphdsl.ir.ops import OPS
from graphdsl.training.evaluate import hits
from graphdsl.training.examples import orders
from graphdsl.transforms.interpret import evaluate

# The default engine interprets a run whose estimated time is at most MOST_S: compiling its loop
# takes Numba 1.2 s or more (W1's, the smallest). The estimate errs long (the bench workloads' steps
# ran 1.5 to 4.6 times quicker than step_seconds says) and reads the whole run alone, never the
# cache or the clock, so a run, resumed or not, takes one engine and gives one result every time.
MOST_S = 1.0
NODE_S, ENTRY_S, MULT_S = 10e-6, 5e-9, 0.1e-9  # seconds an interpreted step spends per node, entry, multiplication
# The optimizer's update runs as Python (its py_func, about 0.5 to 0.9 us a param entry) up to
# MOST_WORK steps x entries; beyond, compiled, which costs about LOAD_S to load from Numba's cache.
MOST_WORK, UPDATE_S, LOAD_S = 300_000, 1e-6, 0.3


def worth_interpreting(trainer, steps: int) -> bool:
    """Whether a run of `steps` steps (the whole run's, resumed or not) is answered uncompiled:
    never for a float32 loop (the interpreter computes in float64) or on the "numba" engine;
    otherwise where its estimated time is below what compiling the loop would cost."""
    if trainer.dtype != np.float64 or trainer.model.engine == "numba":
        return False
    update = steps * param_entries(trainer) * UPDATE_S if python_update(trainer, steps) else LOAD_S
    return steps * step_seconds(trainer.plan) + update <= MOST_S


def python_update(trainer, steps: int) -> bool:
    """Whether the run's update runs as Python, decided once for the whole run."""
    return steps * param_entries(trainer) <= MOST_WORK


def param_entries(trainer) -> int:
    return sum(math.prod(trainer.model.params[n].shape) for n in trainer.params)


def step_seconds(plan) -> float:
    """An interpreted step's time, estimated from its step graph: a NumPy call a node, plus its
    entries and multiplications."""
    g = plan.graph
    needed = g.ancestors(plan.outputs)
    nodes = [n for n in g.nodes if n.id in needed and not n.is_leaf]
    entries = sum(math.prod(n.shape) for n in nodes)
    mults = sum(OPS[n.op].mults([g.nodes[a].shape for a in n.args], n.shape) for n in nodes)
    return NODE_S * len(nodes) + ENTRY_S * entries + MULT_S * mults


def run_chunk(trainer, theta, state, t0: int, first: int, count: int, trace_rows: int):
    """Trainer.run_chunk's contract: epochs first .. first+count-1; returns (steps done, trace
    rows, log rows, failed, the epochs' example order)."""
    opts, plan = trainer.train.options, trainer.plan
    order = orders(trainer.n, opts["seed"], bool(opts["shuffle"]) and trainer.size < trainer.n, first, count)
    hyper, schedule, clip = trainer.controls()
    update = getattr(T, plan.optimizer.function)
    update = update.py_func if trainer.python_update else update
    trace, log = np.zeros((trace_rows, plan.trace.width)), np.zeros((count, 3))
    leaves = dict(zip(plan.consts, trainer.arguments[1]))
    t, row = t0, 0
    for e in range(count):
        ids_e = order[e % len(order)]
        for s in range(-(-len(ids_e) // trainer.size)):
            examples = feed(trainer, leaves, theta, ids_e, s)
            values = evaluate(plan.graph, leaves, plan.outputs)
            loss, grad = values[plan.outputs[0]], flat([values[g] for g in plan.outputs[1:1 + len(plan.params)]])
            if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
                return t - t0, trace[:row], log, True, order
            log[e, 0] += loss
            log[e, 2] += len(examples)
            if plan.metric is not None:
                log[e, 1] += step_hits(plan, values, leaves, len(examples))
            t += 1
            if trace_rows and (t - 1) % opts["every"] == 0:
                trace[row] = trace_row(plan, values, loss, t, first + e + 1, theta, grad)
                row += 1
            hyper[0] = T.learning_rate.py_func(schedule, t, first + e)
            if clip > 0.0:
                T.scale.py_func(grad, T.clip_factor.py_func(T.norm.py_func(grad), clip))
            update(theta, grad, state, hyper, *([t] if plan.optimizer.counts_steps else []))
    return t - t0, trace[:row], log, False, order


def feed(trainer, leaves: dict, theta, ids_e, s: int) -> np.ndarray:
    """Give the step's leaves their values (the params from `theta`, as the loop views them);
    returns the ids of its real examples."""
    plan, data = trainer.plan, trainer.arguments[0]
    for p, (a, b) in zip(plan.params, slots(plan.graph.nodes[p].shape for p in plan.params)):
        shape = plan.graph.nodes[p].shape
        leaves[p] = theta[a] if shape == () else theta[a:b].reshape(shape)
    if plan.weights is None:  # one example a step
        leaves.update((leaf, rows[ids_e[s]]) for leaf, rows in zip(plan.data, data))
        return ids_e[s:s + 1]
    ids, weights = np.empty(trainer.size, np.int64), np.empty(trainer.size)
    count = T.batch_rows.py_func(ids_e, s, trainer.size, trainer.train.options["reduce"] == "mean", ids, weights)
    leaves.update((leaf, rows[ids]) for leaf, rows in zip(plan.data, data))
    leaves[plan.weights] = weights
    return ids[:count]


def step_hits(plan, values: dict, leaves: dict, count: int) -> float:
    """The step's correctly classified examples, counted as the loop counts them."""
    metric, at, target = plan.metric
    weights = leaves.get(plan.weights, np.ones(1))
    scores, want = values[plan.outputs[at]], np.asarray(leaves[target], dtype=np.float64)
    if plan.weights is None:  # one example: a batch of one
        scores, want = np.reshape(scores, (1, -1)), np.reshape(want, (1, -1))
    return hits(metric, scores, want, weights, compiled=False)


def trace_row(plan, values: dict, loss, step: int, epoch: int, theta, grad) -> np.ndarray:
    """One row in the plan's TraceLayout, as the loop writes it."""
    layout = plan.trace
    row = np.zeros(layout.width)
    row[[layout.STEP, layout.EPOCH, layout.LOSS]] = step, epoch, loss
    traced = plan.outputs[plan.first_traced:plan.first_traced + len(layout.traced)]
    for nid, (a, b) in zip(traced, layout.traced_slots()):
        row[a:b] = np.ravel(values[nid])
    for nid, (a, b) in zip(plan.deltas, layout.deltas_slots()):
        row[a:b] = np.ravel(values[nid])
    (a, b), (c, d) = layout.params_slot, layout.grads_slot
    row[a:b], row[c:d] = theta, grad
    return row


def flat(arrays: list) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays] or [np.zeros(0)]).astype(np.float64)
