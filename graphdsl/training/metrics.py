"""What training measures beside the loss: accuracy, for the losses whose first argument predicts
the target; precision, recall, F1 and the confusion matrix of a classifier, and the mean absolute
error and R^2 of a regressor. The training loop's code generation and the trainer's evaluation
count hits by `Metric`; the rest is measured here, from predictions, as scikit-learn does."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
# Losses whose first argument predicts a target of numbers.
REGRESSORS = ("mse", "half_se")


def classes(metric: Metric, scores: np.ndarray, target: np.ndarray) -> tuple:
    """(predicted, true) class of every decision, and how many classes there are. An argmax
    classifier decides once an example (its target a class index or a one-hot row); a cut decides
    once an entry (a vector of probabilities is that many yes-or-no decisions)."""
    n = len(scores)
    if metric.argmax:
        target = target.reshape(n, -1)
        true = np.argmax(target, axis=1) if target.shape[1] > 1 else target[:, 0]
        return decided(metric, scores), true.astype(np.int64), scores.reshape(n, -1).shape[1]
    return decided(metric, scores).ravel(), (target.ravel() >= 0.5).astype(np.int64), 2


def decided(metric: Metric, scores: np.ndarray) -> np.ndarray:
    """The class each example's prediction says: the largest score's index, one an example; or,
    with a cut, 1 or 0 for each entry (shaped as the scores)."""
    if metric.argmax:
        return np.argmax(scores.reshape(len(scores), -1), axis=1)
    return (scores >= metric.cut).astype(np.int64)


def confusion(predicted: np.ndarray, true: np.ndarray, count: int) -> np.ndarray:
    """Row i, column j: the decisions whose true class is i and predicted class j."""
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def classifier_scores(matrix: np.ndarray) -> dict:
    """Precision, recall and F1 from a confusion matrix: of class 1 where there are two classes
    (a yes-or-no decision), else their unweighted mean over the classes (scikit-learn's
    average="binary" and average="macro"); a ratio with nothing to count is 0, as scikit-learn's."""
    hits = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    pick = (lambda v: float(v[1])) if len(matrix) == 2 else (lambda v: float(np.mean(v)))
    return {"precision": pick(precision), "recall": pick(recall), "f1": pick(f1)}


def regressor_scores(predicted: np.ndarray, target: np.ndarray) -> dict:
    """The mean absolute error over every entry, and R^2 = 1 - (residual sum of squares) / (sum of
    squares about the mean), for each entry of the prediction and then averaged (scikit-learn's
    r2_score: 1 where the target does not vary and the prediction is exact, else 0 there)."""
    n = len(predicted)
    predicted = predicted.reshape(n, -1)
    target = np.broadcast_to(target.reshape(n, -1), predicted.shape)
    residual = ((target - predicted) ** 2).sum(axis=0)
    spread = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(spread > 0, 1 - residual / np.where(spread > 0, spread, 1), np.where(residual == 0, 1.0, 0.0))
    return {"mae": float(np.mean(np.abs(target - predicted))), "r2": float(np.mean(r2))}
