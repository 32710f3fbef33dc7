"""Validation examples from a file of their own, early stopping with the best epoch's weights
kept, and the metrics at the trained weights (precision, recall, F1 and the confusion matrix of
a classifier; the mean absolute error and R^2 of a regressor).

Losses and weights come from PyTorch (float64); the metrics from scikit-learn, on predictions
PyTorch makes at the weights graphdsl trained.
"""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn import metrics as sk

import graphdsl
from graphdsl import DataError
from graphdsl.cli import main

# every test twice: all runs compiled, then as the default engine picks (conftest.training_engine)
pytestmark = pytest.mark.usefixtures("training_engine")

RNG = np.random.default_rng(0)
# Training examples on y = 2x + 0.5, validation ones on y = x + 0.5: fitting the first, the
# validation loss falls to a best epoch (4), then rises.
XT = RNG.uniform(-1, 1, 20)
YT = 2 * XT + 0.5
XV = RNG.uniform(-1, 1, 8)
YV = XV + 0.5
LINE = """\
input x
target y
param w = 0
param b = 0
L = mse(w x + b, y)
data "train.csv"
minimize L using sgd(lr=0.2), epochs=40{more}
"""
TOL = {"rtol": 1e-12, "atol": 1e-14}


def write_csv(path, *columns):
    path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in zip(*columns)))


@pytest.fixture
def line(tmp_path):
    """LINE's folder, with train.csv and val.csv; returns a function writing the spec there."""
    write_csv(tmp_path / "train.csv", XT, YT)
    write_csv(tmp_path / "val.csv", XV, YV)

    def spec(more=""):
        path = tmp_path / "sub" / "line.nn"
        path.parent.mkdir(exist_ok=True)
        path.write_text(LINE.format(more=more).replace('"train.csv"', '"../train.csv"'))
        return path
    return spec


def torch_line(epochs=40):
    """Full-batch SGD on the line, as PyTorch runs it: each epoch's (validation loss, w, b)."""
    w, b = (torch.zeros((), dtype=torch.float64, requires_grad=True) for _ in range(2))
    opt = torch.optim.SGD([w, b], lr=0.2)
    out = []
    for _ in range(epochs):
        loss = ((w * torch.tensor(XT) + b - torch.tensor(YT)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            out.append((((w * torch.tensor(XV) + b - torch.tensor(YV)) ** 2).mean().item(), w.item(), b.item()))
    return out


def keras_stop(val_losses, patience):
    """(best epoch, last epoch) by Keras' EarlyStopping rule, epochs from 1."""
    best, best_epoch, wait = np.inf, 0, 0
    for epoch, value in enumerate(val_losses, 1):
        if value < best:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return best_epoch, epoch
    return best_epoch, len(val_losses)


def test_early_stopping_keeps_the_best_epoch_of_a_validation_file(line):
    """`validation="../val.csv"` is relative to the spec's folder, as `data` is."""
    model = graphdsl.load(str(line(', validation="../val.csv", patience=3')))
    history = model.train()
    expected = torch_line()
    best, last = keras_stop([v for v, _, _ in expected], 3)
    assert (best, last) == (4, 7)
    assert history.epoch == list(range(1, last + 1))
    assert (history.best_epoch, history.stopped_epoch) == (best, last)
    np.testing.assert_allclose(history["val_loss"], [v for v, _, _ in expected[:last]], **TOL)
    np.testing.assert_allclose([model.params["w"], model.params["b"]], expected[best - 1][1:], **TOL)
    np.testing.assert_allclose(history.metrics["val_loss"], expected[best - 1][0], **TOL)


def test_validation_from_python_and_no_stopping_without_patience(line, tmp_path, monkeypatch):
    """A path passed in is relative to the current directory; arrays by name work too. Without
    `patience` training runs every epoch and keeps the last weights."""
    monkeypatch.chdir(tmp_path)
    expected = torch_line(12)
    for validation in ("val.csv", {"x": XV, "y": YV}):
        model = graphdsl.load(str(line()))
        history = model.train(validation=validation, epochs=12)
        assert history.epoch == list(range(1, 13)) and history.best_epoch is None
        np.testing.assert_allclose(history["val_loss"], [v for v, _, _ in expected], **TOL)
        np.testing.assert_allclose([model.params["w"], model.params["b"]], expected[-1][1:], **TOL)
    history = model.train(validation="val.csv", epochs=40, patience=2, monitor="val_loss")
    assert history.best_epoch is not None and history.stopped_epoch == history.best_epoch + 2


def test_a_resumed_run_stops_as_an_uninterrupted_one(line, tmp_path):
    spec = str(line(', validation="../val.csv", patience=3'))
    whole = graphdsl.load(spec)
    whole.train()
    first = graphdsl.load(spec)
    # epoch 4 is the best so far, 5 and 6 worse
    first.train(epochs=6, checkpoint=str(tmp_path / "c.npz"))
    resumed = graphdsl.load(spec)
    history = resumed.train(resume=str(tmp_path / "c.npz"))
    assert history.epoch == [7] and (history.best_epoch, history.stopped_epoch) == (4, 7)
    for name in ("w", "b"):
        assert resumed.params[name] == whole.params[name]


def test_validation_stopping_and_a_schedule_from_the_command_line(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", str(line()), "--set", "validation=val.csv", "--set", "patience=3", "--set", "schedule=constant",
            "--set", "warmup=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "val_loss" in result.output and "epoch 40/40" not in result.output


def test_early_stopping_needs_what_it_watches(line):
    model = graphdsl.load(str(line()))
    with pytest.raises(DataError, match="no examples are held out for validation"):
        model.train(patience=2)
    with pytest.raises(DataError, match="`L` is not a classifier's loss"):
        model.train(patience=2, monitor="val_accuracy", validation=0.25)
    with pytest.raises(DataError, match="`monitor` must be val_loss or val_accuracy or loss or accuracy, not `f1`"):
        model.train(monitor="f1")


# -- metrics ------------------------------------------------------------------------------------

FEATURES = RNG.normal(size=(30, 3))
CLASSIFIER = """\
input x[3]
target k{target}
param W[{out}, 3] = normal(std=0.5, seed=2)
param c[{out}] = zeros()
z = W x + c
L = {loss}(z{scores}, k)
data "fit.csv"
minimize L using sgd(lr=0.3), epochs={epochs}, batch=5, validation="val.csv"
"""


def metric_run(tmp_path, labels, epochs=3, **spec):
    """A model trained on FEATURES[:20] (validated on the rest) with these targets: (model,
    history, {"": fit examples, "val_": validation examples})."""
    targets = labels.reshape(len(labels), -1)
    for name, rows in (("fit", slice(0, 20)), ("val", slice(20, 30))):
        write_csv(tmp_path / f"{name}.csv", *FEATURES[rows].T, *targets[rows].T)
    path = tmp_path / "net.nn"
    path.write_text(CLASSIFIER.format(epochs=epochs, **spec))
    model = graphdsl.load(str(path))
    history = model.train()
    return model, history, {"": (FEATURES[:20], labels[:20]), "val_": (FEATURES[20:], labels[20:])}


def torch_scores(model, x):
    W, c = torch.tensor(model.params["W"]), torch.tensor(model.params["c"])
    return (torch.tensor(x) @ W.T + c).numpy()


def test_binary_classifier_metrics_are_scikit_learns(tmp_path):
    labels = (FEATURES[:, 0] + 0.3 * FEATURES[:, 1] > 0).astype(float)
    model, history, sets = metric_run(tmp_path, labels, target="", out=1, loss="bce_logits", scores="[0]")
    for prefix, (x, y) in sets.items():
        predicted = (torch_scores(model, x)[:, 0] >= 0).astype(int)
        assert history.metrics[f"{prefix}precision"] == pytest.approx(sk.precision_score(y, predicted), abs=1e-15)
        assert history.metrics[f"{prefix}recall"] == pytest.approx(sk.recall_score(y, predicted), abs=1e-15)
        assert history.metrics[f"{prefix}f1"] == pytest.approx(sk.f1_score(y, predicted), abs=1e-15)
        np.testing.assert_array_equal(history.metrics[f"{prefix}confusion"], sk.confusion_matrix(y, predicted))
        assert history.metrics[f"{prefix}accuracy"] == pytest.approx(sk.accuracy_score(y, predicted), abs=1e-15)


def test_multiclass_metrics_are_scikit_learns_macro_averages(tmp_path):
    """Three classes, one of which the untrained model never predicts (its precision 0, as
    scikit-learn's zero_division=0)."""
    labels = np.digitize(FEATURES[:, 0] - FEATURES[:, 2], [-0.5, 0.5]).astype(float)
    model, history, sets = metric_run(tmp_path, labels, epochs=0, target="", out=3, loss="softmax_ce", scores="")
    never = []
    for prefix, (x, y) in sets.items():
        predicted = np.argmax(torch_scores(model, x), axis=1)
        never += [k for k in range(3) if k not in predicted]
        for name, score in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
            want = score(y, predicted, average="macro", labels=[0, 1, 2], zero_division=0)
            assert history.metrics[prefix + name] == pytest.approx(want, abs=1e-15), prefix + name
        np.testing.assert_array_equal(history.metrics[f"{prefix}confusion"],
                                      sk.confusion_matrix(y, predicted, labels=[0, 1, 2]))
    assert never


def test_regressor_metrics_are_scikit_learns(tmp_path):
    """A target of two numbers: the MAE over every entry, R^2 averaged over the two."""
    targets = np.stack([FEATURES @ [1.0, -0.5, 0.2], FEATURES[:, 1] ** 2], axis=1)
    model, history, sets = metric_run(tmp_path, targets, target="[2]", out=2, loss="mse", scores="")
    assert "accuracy" not in history.metrics and "precision" not in history.metrics
    for prefix, (x, y) in sets.items():
        predicted = torch_scores(model, x)
        assert history.metrics[f"{prefix}mae"] == pytest.approx(sk.mean_absolute_error(y, predicted), rel=1e-13)
        assert history.metrics[f"{prefix}r2"] == pytest.approx(sk.r2_score(y, predicted), rel=1e-13)
        assert history.metrics[f"{prefix}loss"] == pytest.approx(np.mean((predicted - y) ** 2), rel=1e-13)
