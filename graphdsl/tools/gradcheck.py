"""Gradient check by central differences in float64, as torch.autograd.gradcheck does:
an entry passes when |analytic - numeric| <= atol + rtol * |numeric|."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphdsl.model import Model
from graphdsl.training.examples import examples
from graphdsl.training.plan import data_leaves


@dataclass(frozen=True)
class Mismatch:
    name: str
    index: tuple
    analytic: float
    numeric: float


def numeric_grad(model: Model, loss: str, name: str, inputs: dict, eps: float) -> np.ndarray:
    base = np.array(model.forward(**inputs)[name], dtype=np.float64)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        values = []
        for step in (eps, -eps):
            moved = base.copy()
            moved[index] += step
            values.append(float(model.forward(**{**inputs, name: moved})[loss]))
        grad[index] = (values[0] - values[1]) / (2 * eps)
    return grad


def check_point(model: Model) -> tuple[dict, str]:
    """Where to check the loss's gradients: at the spec's own values, or, where the loss needs
    values that only the spec's `data` gives, at its first example; (inputs, how to say where)."""
    spec, train = model.spec, model.spec.training
    leaves = data_leaves(spec, spec.graph.names[model.loss])
    if train is None or all(leaf in spec.graph.values for leaf in leaves):
        return {}, ""
    first = {name: np.asarray(rows[0], dtype=np.float64) for name, rows in examples(model, train, None, leaves).items()}
    return first, " at the first example of the spec's data"


def gradcheck(model: Model, loss: str | None = None, *, eps=1e-6, rtol=1e-5, atol=1e-7,
              inputs: dict | None = None) -> tuple[dict, list]:
    """Compare the model's gradients with central differences for every input, target and param.

    Returns (the largest error per name, the mismatching entries).
    """
    loss = loss or model.loss
    inputs = dict(inputs or {})
    reference = Model(model.spec, engine="numpy")
    reference.params = model.params
    analytic = model.grad(loss, **inputs)
    errors, bad = {}, []
    for name in model.spec.names_of("input", "target", "param"):
        if name in model.class_indices:  # moving a class index by eps is meaningless
            continue
        numeric = numeric_grad(reference, loss, name, inputs, eps)
        exact = np.asarray(analytic[name], dtype=np.float64)
        diff = np.abs(exact - numeric)
        errors[name] = float(diff.max()) if diff.size else 0.0
        # a nan difference (inf, or nan, on one side) fails, and so does an inf met by anything but itself
        failed = ~(diff <= atol + rtol * np.abs(numeric)) | (np.isinf(numeric) & (exact != numeric))
        for index in np.ndindex(failed.shape):
            if failed[index]:
                bad.append(Mismatch(name, index, float(exact[index]), float(numeric[index])))
    return errors, bad
