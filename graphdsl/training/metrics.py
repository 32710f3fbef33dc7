"""What training measures beside the loss: accuracy, for the losses whose first argument predicts
the target. The training loop's code generation and the trainer's evaluation count hits by it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """How a prediction is read as a class. With a `cut`, the prediction says class 1 at or above
    it (a target is class 1 at or above 0.5); without one, the class is the largest score's index."""

    name: str
    cut: float | None = None

    @property
    def argmax(self) -> bool:
        return self.cut is None


# Losses whose first argument predicts the target, by function name, and how it is read.
CLASSIFIERS = {
    "softmax_ce": Metric("argmax"),      # a score per class
    "bce": Metric("half", 0.5),          # a probability
    "bce_logits": Metric("sign", 0.0),   # a logit
}
