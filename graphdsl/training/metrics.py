"""What training measures beside the loss: accuracy, for the losses whose first argument predicts
the target. The training loop's code generation and the trainer's evaluation count hits by it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """How a prediction is read as a class. With a `cut`, the prediction says class 1 at or above
    it (a target is class 1 at or above 0.5); without one, the class is the largest score's index."""

    cut: float | None = None

    @property
    def argmax(self) -> bool:
        return self.cut is None


# Losses whose first argument predicts the target, by function name, and how it is read.
CLASSIFIERS = {
    "softmax_ce": Metric(),         # a score per class: the largest one's
    "bce": Metric(0.5),             # a probability: class 1 from one half
    "bce_logits": Metric(0.0),      # a logit: class 1 from zero
}
