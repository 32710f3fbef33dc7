"""Graph to the source of the training loop: epochs x minibatches x (step, accuracy, trace row,
update) in one jitted function, with the step's nodes from codegen."""
from __future__ import annotations

import math

from graphdsl.backend import loops
from graphdsl.backend.codegen import JIT, Made, body, buffer, owns_buffer, var
from graphdsl.backend.roll import rolled
from graphdsl.ir.graph import Graph
from graphdsl.ir.ops import OPS


def slots(shapes) -> list:
    """(start, stop) of each shape's entries in one flat vector, in order."""
    out, at = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append((at, at + n))
        at += n
    return out


def flat_store(target: str, span: tuple, value: str, shape: tuple) -> str:
    return f"{target}[{span[0]}] = {value}" if shape == () else f"T.put({target}[{span[0]}:{span[1]}], {value})"


def train_loop(plan, fuse: bool = False) -> str:
    """Source of `train`: epochs x minibatches x (step, accuracy, trace row, update) in one jitted
    function, and of `buffers(theta, size)`, which makes the vectors it works in.

    `plan` (a training.plan.LoopPlan) says which leaves take data and which are params: views into the
    flat `theta`, so updates show through. The step's nodes live in arrays made up front. Vectors
    are made in Python by `buffers`, which saves Numba an overload compile for each kind of
    allocation and view. Numba indexes an array of more axes with its shape, so those (and flat
    views of them) are made inside the jitted loop, where it sees their shapes as constants and
    indexes them faster.

    `fuse` (the optimizer's update is plain, `Optimizer.is_plain`, and no trace is kept): weights
    whose gradient is one matrix product are updated by that product (see `sgd_products`); such a
    loop writes no trace rows (they record gradients).
    """
    g = plan.graph
    shape = lambda nid: g.nodes[nid].shape  # noqa: E731
    param_slots = slots(shape(p) for p in plan.params)
    grads = plan.outputs[1:1 + len(plan.params)]
    fused = sgd_products(plan) if fuse else {}
    # a gradient computed into a buffer of its own can use its slice of `grad` as that buffer
    homes = {gid: f"grad[{a}:{b}].reshape({shape(gid)})" for gid, (a, b) in zip(grads, param_slots)
             if grads.count(gid) == 1 and owns_buffer(g, g.nodes[gid])}
    operands = [a for gid in fused.values() for a in g.nodes[gid].args]
    data = [f"d{i}" for i in range(len(plan.data))]
    top, before, per_step = loop_inputs(plan, shape, param_slots, data)
    made = {m.name for m in top}
    fixed = {nid: len(shape(nid)) for nid in [*plan.params, *plan.data, plan.weights] if var(nid) in made}
    prologue, step, functions = body(g, [o for o in plan.outputs if o not in fused.values()] + operands, homes, fixed)
    after = [flat_store("grad", span, var(gid), shape(p))
             for gid, p, span in zip(grads, plan.params, param_slots) if gid not in homes and p not in fused]
    checks, update = updates(plan, fused, param_slots)
    # one check a statement, so that the checks of the layers roll into a loop (roll.py)
    after += [f"loss = {var(plan.outputs[0])}", f"ok = {checks[0]}", *(f"ok = ok and {c}" for c in checks[1:]),
              "if not ok:", "    return t - t0, row, 1", "log[e, 0] += loss", "log[e, 2] += count"]
    if plan.metric is not None:
        made, count = hits(plan, shape)
        top += made
        after.append(f"log[e, 1] += {count}")
    # with nothing fused the source is the unfused loop's, so both share one module and one compile
    after += ["t += 1"] + ([] if fused else trace_row(plan)) + update
    consts = "".join(var(c) + ", " for c in plan.consts)
    # the layers of a network of one shape run the same statements: each such run is one loop
    steps, made = rolled(per_step + step + after, top + prologue)
    outside = [m for m in made if m.axes < 2]
    inside = [m for m in made if m.axes >= 2]
    work = "".join(f"{m.name}, " for m in outside)  # a tuple: never empty, grad and ids are always made here
    lines = [*(f"{function}\n\n" for function in functions.values()),
             "def buffers(theta, size):", *(f"    {m.stmt}" for m in outside), f"    return ({work})", "", ""]
    lines += [JIT, f"def train({''.join(d + ', ' for d in data)}order, theta, state, hyper, schedule, clip, t0, "
                   f"epoch0, size, mean, {consts}trace, every, log, work):"]
    lines += [f"    {work}= work", *(f"    {m.stmt}" for m in inside), *(f"    {b}" for b in before), "    t = t0",
              "    row = 0"]
    # one row of `order` serves every epoch when nothing is shuffled
    lines += ["    for e in range(log.shape[0]):", "        ids_e = order[e % order.shape[0]]",
              "        for s in range((ids_e.shape[0] + size - 1) // size):"]
    lines += [f"            {stmt}" for stmt in steps]
    lines.append("    return t - t0, row, 0")
    return "\n".join(lines)


def updates(plan, fused: dict, param_slots: list) -> tuple:
    """(what a step must pass before anything is updated, the statements updating theta): the
    step's lr from the schedule, the gradients clipped to a total norm of `clip` (never when
    fused: clipping needs them all), then fused weights updated by their gradient's product, the
    other params by the optimizer, on runs of `theta` (split only around fused weights, so only
    for a plain update, whose optimizer, SGD, keeps one state entry a param: `state` splits alike).
    A plain update, theta -= lr * grad (certain where products are fused; otherwise where the
    optimizer's `plain_when_zero` settings are 0 in `hyper`, tested once a step), is a loop of
    constant length in the step: a call to `T.sgd`, which reads its settings and tests momentum
    at every entry, took 15% of W1's 60 ns step."""
    g = plan.graph
    rest = runs([span for p, span in zip(plan.params, param_slots) if p not in fused])
    whole = rest == [(0, entries(g, plan.params))]

    def part(name: str, span: tuple) -> str:
        return name if whole else f"{name}[{span[0]}:{span[1]}]"

    def norm(nid: int) -> str:  # of the memory a value reads (a transpose has its operand's norm)
        memory = memory_of(g, nid)
        return gathered_norm(memory) if plan.weights is not None and memory in plan.data else f"T.norm({var(memory)})"
    # a finite loss can still have an infinite gradient (sqrt at 0): check every gradient, and that
    # every fused product is finite, before updating anything
    checks = ["np.isfinite(loss)", *(f"T.finite({part('grad', span)})" for span in rest)]
    checks += [f"T.product_fits({norm(a)}, {norm(b)}, {var(memory_of(g, a))})"
               for a, b in (g.nodes[gid].args for gid in fused.values())]
    update = ["hyper[0] = T.learning_rate(schedule, t, epoch0 + e)"]
    if not fused:
        update += ["if clip > 0.0:", "    T.scale(grad, T.clip_factor(T.norm(grad), clip))"]
    update += [f"K.dot_add({var(a)}, {var(b)}, {var(p)}, -hyper[0])"
               for p, (a, b) in ((p, g.nodes[gid].args) for p, gid in fused.items())]
    plain = [line for a, b in rest for line in (f"for i0 in range({a}, {b}):", "    theta[i0] -= hyper[0] * grad[i0]")]
    if fused:
        return checks, update + plain
    optimizer = plan.optimizer
    step_t = ", t" if optimizer.counts_steps else ""
    calls = [f"T.{optimizer.function}({part('theta', span)}, {part('grad', span)}, {part('state', span)}, "
             f"hyper{step_t})" for span in rest]
    if optimizer.plain_when_zero is None or not rest:  # nothing left to update but fused weights
        return checks, update + calls
    zero = " and ".join(f"hyper[{list(optimizer.settings).index(k)}] == 0.0" for k in optimizer.plain_when_zero)
    return checks, update + [f"if {zero}:", *(f"    {line}" for line in plain), "else:", *(f"    {c}" for c in calls)]


def memory_of(graph: Graph, nid: int) -> int:
    """The node whose memory a value reads: itself, or the operand that it views (through any views)."""
    node = graph.nodes[nid]
    while not node.is_leaf and OPS[node.op].view is not None and not owns_buffer(graph, node):
        node = graph.nodes[node.args[0]]
    return node.id


def sgd_products(plan) -> dict:
    """{param: its gradient node} for the weights plain SGD updates inside the product that makes
    their gradient, `K.dot_add(a, b, W, -lr)` after the step's check: W -= lr * a @ b in one BLAS
    call, with no gradient buffer to zero, fill, check and read back. That takes a gradient that
    is one BLAS matrix product read by nothing else, of operands that are not params: all updates
    come at the end of the step, and one must not see another's result."""
    g = plan.graph
    read = {a for nid in g.ancestors(plan.outputs) for a in g.nodes[nid].args}
    found = {}
    for p, gid in zip(plan.params, plan.outputs[1:1 + len(plan.params)]):
        node = g.nodes[gid]
        if node.is_leaf or not OPS[node.op].blas or plan.outputs.count(gid) != 1 or gid in read:
            continue
        shapes = [g.nodes[a].shape for a in node.args]
        if ([len(s) for s in shapes] == [2, 2] and loops.blas(shapes, node.shape)
                and all(memory_of(g, a) not in plan.params for a in node.args)):
            found[p] = gid
    return found


def runs(spans: list) -> list:
    """Adjacent (start, stop) spans joined."""
    joined = []
    for a, b in spans:
        if joined and joined[-1][1] == a:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined


def loop_inputs(plan, shape, param_slots, data: list) -> tuple:
    """(arrays made before the loop, statements before it, statements opening each step) that give
    every param and data leaf its value: params as views of `theta` (scalars read each step),
    examples gathered from the data arguments `data`. Where every step takes the same examples in
    the same order (one order row for every epoch, and one step an epoch: a full batch,
    unshuffled), a call gathers them at its first step only: gathering Iris each step took 8% of
    W2's epoch. Nothing in a step writes to a data leaf's buffer or to the loss weights."""
    top = [Made("grad", "np.zeros_like(theta)", 1), Made("ids", "np.empty(size, np.int64)", 1)]
    per_step = []
    for nid, (a, b) in zip(plan.params, param_slots):
        if shape(nid) == ():
            per_step.append(f"{var(nid)} = theta[{a}]")
        else:
            top.append(Made(var(nid), f"theta[{a}:{b}].reshape({shape(nid)})", len(shape(nid))))
    if plan.weights is None:  # one example a step
        return top, [], per_step + ["count = 1"] + [f"{var(nid)} = {d}[ids_e[s]]" for d, nid in zip(data, plan.data)]
    top.append(Made(var(plan.weights), "np.ones(size, F)", 1))
    top += [buffer(plan.graph.nodes[nid]) for nid in plan.data]
    before = ["same = order.shape[0] == 1 and order.shape[1] <= size", "count = 0",
              *(f"{gathered_norm(nid)} = 0.0" for nid in plan.data)]
    gather = [f"count = T.batch_rows(ids_e, s, size, mean, ids, {var(plan.weights)})",
              *(f"{gathered_norm(nid)} = T.take({d}, ids, {var(nid)})" for d, nid in zip(data, plan.data))]
    return top, before, per_step + ["if t == t0 or not same:", *(f"    {g}" for g in gather)]


def gathered_norm(nid: int) -> str:
    """The local holding the Frobenius norm of data leaf `nid`'s minibatch, which T.take measures
    as it gathers the rows (`product_fits` reads it)."""
    return f"norm_{var(nid)}"


def hits(plan, shape) -> tuple:
    """(arrays it needs made, an expression counting the step's correctly classified examples),
    as the plan's metrics.Metric reads a prediction."""
    metric, at, target = plan.metric
    pred, want = var(plan.outputs[at]), var(target)
    if plan.weights is not None:
        weights = var(plan.weights)
        return [], (f"T.hits_argmax({pred}, {want}, {weights})" if metric.argmax else
                    f"T.hits_threshold({pred}, {want}, {weights}, {metric.cut})")
    if metric.argmax:
        return [], f"T.hit({pred}, {want if shape(target) == () else f'np.argmax({want})'})"
    if shape(plan.outputs[at]) == ():
        return [], f"(1 if ({pred} >= {metric.cut}) == ({want} >= 0.5) else 0)"
    return [Made("one", "np.ones(1, F)", 1)], f"T.hits_threshold({pred}, {want}, one, {metric.cut})"


def entries(graph: Graph, nodes) -> int:
    return sum(math.prod(graph.nodes[n].shape) for n in nodes)


def trace_row(plan) -> list:
    """Statements writing one trace row (in the plan's TraceLayout), once `t` counts the step."""
    layout = plan.trace
    rows = ["if trace.shape[0] > 0 and (t - 1) % every == 0:", "    r = trace[row]", f"    r[{layout.STEP}] = t",
            f"    r[{layout.EPOCH}] = epoch0 + e + 1", f"    r[{layout.LOSS}] = loss"]
    for i, (shape, span) in enumerate(zip(layout.traced, layout.traced_slots())):
        rows.append("    " + flat_store("r", span, var(plan.outputs[plan.first_traced + i]), shape))
    for gid, shape, span in zip(plan.deltas, layout.deltas, layout.deltas_slots()):
        rows.append("    " + flat_store("r", span, var(gid), shape))
    (a, b), (c, d) = layout.params_slot, layout.grads_slot
    return rows + [f"    T.put(r[{a}:{b}], theta)", f"    T.put(r[{c}:{d}], grad)", "    row += 1"]
