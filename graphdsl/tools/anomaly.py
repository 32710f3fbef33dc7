"""`graphdsl run --detect-anomaly`: the first value or gradient of a spec that is not finite."""
from __future__ import annotations

from graphdsl import pipeline
from graphdsl.errors import SpecError
from graphdsl.transforms.interpret import describe, first_non_finite


def detect_anomaly(model, **inputs) -> str | None:
    """The first value or gradient of the spec that is not finite, as a located message, or None.
    Runs the interpreter on the forward graph and, if the spec names a loss, its backward graph
    (whose nodes come after the forward ones), at the model's params and the given inputs."""
    spec = model.spec
    program = pipeline.grad_program(spec) if model.loss else pipeline.forward_program(spec)
    g = program.graph
    values = [*spec.graph.names.values(), *program.outputs]  # every named value, then the gradients
    bad = first_non_finite(g, model.leaf_values(g, inputs), values)
    if bad is None:
        return None
    forward = len(spec.graph.nodes)  # autodiff appends backward nodes after the forward ones
    what = f"the gradient of `{model.loss}` through a `{bad.op}`" if bad.id >= forward else describe(g, bad)
    # backward nodes carry no span of their own: point at the latest forward value they are computed from
    span = bad.span or next((g.nodes[i].span for i in sorted(g.ancestors([bad.id]), reverse=True)
                             if i < forward and g.nodes[i].span), None)
    return str(SpecError(f"anomaly: the first value that is not finite is {what}", span,
                         filename=spec.filename, text=spec.text,
                         hint="a stable form may exist: softmax_ce, logsumexp and bce_logits take raw scores"))
