"""Training (`minimize ... using ...`): every number checked against PyTorch in float64.

The reference for each run is a PyTorch loop doing the same training by hand: the same initial
weights, the same examples in the same order, torch.optim.SGD / torch.optim.Adam for the
updates. graphdsl's own results are compared only with each other where the point is that two
runs agree (same seed, resumed run).

Speed: Numba compiles each distinct training loop once per test session (tests/conftest.py gives
the session its cache). The loop depends on the spec's graph, the batch size and the optimizer,
not on the data, the settings' values or the number of epochs, so these tests share a handful of
loops: the XOR net at batch 1, 3 and all (7) with SGD, at batch 3 with Adam, and the classifier.
"""
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import graphdsl
from graphdsl import DataError
from graphdsl.backend import train_loop as loopgen
from graphdsl.cli import main
from graphdsl.training.plan import data_leaves, make_plan
from graphdsl.training.trainer import TrainingError

# every test twice: all runs compiled, then as the default engine picks (conftest.training_engine)
pytestmark = pytest.mark.usefixtures("training_engine")

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-12

# -- the XOR-like net ---------------------------------------------------------------------------

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.2], [0.9, 0.4], [0.1, 0.8]])
Y = np.array([0, 1, 1, 0, 1, 0, 1.0])
N = len(X)
INIT = {"W": [[0.5, -0.4], [0.3, 0.8]], "b": [0.1, -0.2], "v": [0.7, -0.6], "c": 0.05}

NET = """\
input x[2]{x_default}
target y{y_default}
param W[2, 2] = [[0.5, -0.4], [0.3, 0.8]]
param b[2] = [0.1, -0.2]
param v[2] = [0.7, -0.6]
param c = 0.05
h = sigmoid(W x + b)
p = sigmoid(v h + c)
L = bce(p, y)
show p
{data}
minimize L using sgd(lr=0.5), epochs=3, batch=1, shuffle=0{more}
"""
INLINE = ("data x = [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.2], [0.9, 0.4], [0.1, 0.8]], "
          "y = [0, 1, 1, 0, 1, 0, 1]")


def net(data=INLINE, defaults=False, more="") -> str:
    return NET.format(data=data, more=more, x_default=" = [0, 0]" if defaults else "",
                      y_default=" = 0" if defaults else "")


XOR = net()
COLUMNS = ["step", "epoch", "L", "p", "W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "b[0]", "b[1]", "v[0]", "v[1]", "c",
           "dL/dW[0,0]", "dL/dW[0,1]", "dL/dW[1,0]", "dL/dW[1,1]", "dL/db[0]", "dL/db[1]", "dL/dv[0]", "dL/dv[1]",
           "dL/dc"]

SEED = 7   # the seed of the shuffles, where a test does not say otherwise


def f64(value) -> torch.Tensor:
    """A float64 tensor (without changing torch's default dtype for the rest of the session)."""
    return torch.tensor(value, dtype=torch.float64)


def epoch_order(seed: int, shuffle: bool, batch: int, n: int = N):
    """The documented order: epoch e (from 0) is default_rng([seed, e]).permutation(n) when
    shuffle=1 and batch < n, else the data's order."""
    if shuffle and batch < n:
        return lambda e: np.random.default_rng([seed, e]).permutation(n)
    return lambda e: np.arange(n)


def torch_xor(order, epochs, batch, reduce="mean", optimizer="sgd", data=(X, Y), stop_at_nan=False,
              dtype=torch.float64, **hyper):
    """The XOR net trained by PyTorch: (params, trace rows, per-epoch {loss, accuracy}, failed step).

    A trace row is step, epoch, loss, [p when one example a step], every param before the step's
    update, then every gradient. The epoch loss is the mean of its steps' losses, its accuracy the
    share of its examples on the right side of 0.5, predicted before each step's update."""
    xs, ys = data
    P = {k: torch.tensor(v, dtype=dtype).requires_grad_() for k, v in INIT.items()}
    opt = (torch.optim.SGD(P.values(), **hyper) if optimizer == "sgd" else torch.optim.Adam(P.values(), **hyper))
    rows, epochs_out, t = [], [], 0
    for e in range(epochs):
        ids_all = order(e)
        losses, hits = [], 0
        for start in range(0, len(ids_all), batch):
            ids = ids_all[start:start + batch]
            x, y = torch.tensor(xs[ids], dtype=dtype), torch.tensor(ys[ids], dtype=dtype)
            h = torch.sigmoid(x @ P["W"].T + P["b"])
            p = torch.sigmoid(h @ P["v"] + P["c"])
            per = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
            loss = per.mean() if reduce == "mean" else per.sum()
            t += 1
            if stop_at_nan and not torch.isfinite(loss):
                return {k: v.detach().numpy().copy() for k, v in P.items()}, rows, epochs_out, (t, e + 1)
            opt.zero_grad()
            loss.backward()
            shown = [p.item()] if batch == 1 else []
            rows.append([t, e + 1, loss.item(), *shown, *(float(a) for k in P for a in P[k].detach().numpy().ravel()),
                         *(float(a) for k in P for a in P[k].grad.numpy().ravel())])
            losses.append(loss.item())
            hits += int(((p.detach().numpy() >= 0.5) == (y.numpy() >= 0.5)).sum())
            opt.step()
        epochs_out.append({"loss": np.mean(losses), "accuracy": hits / len(ids_all)})
    return {k: v.detach().numpy().copy() for k, v in P.items()}, np.array(rows), epochs_out, None


def assert_params(model, expected, rtol=RTOL):
    assert set(model.params) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(model.params[name], value, rtol=rtol, atol=1e-14, err_msg=name)


def same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def xor(**kw):
    return graphdsl.compile(XOR, **kw)


MB = {"batch": 3, "shuffle": 1, "seed": SEED}   # minibatches in a new order each epoch

SEEDS = [0, SEED]


# -- one example a step -------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [0, 1])
@pytest.mark.parametrize("seed", SEEDS)
def test_one_example_a_step_matches_torch_step_by_step(seed, shuffle):
    model = xor()
    history = model.train(trace=True, seed=seed, shuffle=shuffle)
    params, rows, epochs, _ = torch_xor(epoch_order(seed, shuffle, 1), 3, 1, lr=0.5)
    assert history.trace_columns == COLUMNS
    assert history.trace.shape == (3 * N, len(COLUMNS))
    np.testing.assert_array_equal(history.trace[:, :2], rows[:, :2])
    np.testing.assert_allclose(history.trace, rows, rtol=RTOL, atol=1e-15)
    assert_params(model, params)
    assert history.epoch == [1, 2, 3]
    np.testing.assert_allclose(history["loss"], [e["loss"] for e in epochs], rtol=RTOL)
    assert history["accuracy"] == [e["accuracy"] for e in epochs]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_training_order_is_the_datas_order(seed):
    """shuffle=0: step t of each epoch sees example t, whatever the seed. The trace shows which
    example a step saw: dL/dW = dL/db x' for the first layer."""
    model = xor()
    trace = model.train(trace=True, seed=seed, epochs=2).trace
    dW = trace[:, COLUMNS.index("dL/dW[0,0]"):COLUMNS.index("dL/dW[1,1]") + 1].reshape(-1, 2, 2)
    db = trace[:, COLUMNS.index("dL/db[0]"):COLUMNS.index("dL/db[1]") + 1]
    for t in range(2 * N):
        np.testing.assert_allclose(dW[t], np.outer(db[t], X[t % N]), rtol=1e-14, err_msg=f"step {t + 1}")


def test_python_data_overrides_the_specs_data():
    xs, ys = X[[3, 1, 2, 6, 5]], Y[[3, 1, 2, 6, 5]]
    model = xor()
    history = model.train(data={"x": xs, "y": ys}, seed=SEED, shuffle=1)
    params, _, _, _ = torch_xor(epoch_order(SEED, True, 1, n=5), 3, 1, data=(xs, ys), lr=0.5)
    assert_params(model, params)
    assert history.epoch == [1, 2, 3]


def test_without_data_the_specs_own_values_are_the_one_example():
    """No `data` statement: the defaults x = (0, 0), y = 0 are the only example, one step an epoch."""
    model = graphdsl.compile(net(data="", defaults=True))
    history = model.train(trace=True)
    params, rows, _, _ = torch_xor(lambda e: np.array([0]), 3, 1, data=(np.zeros((1, 2)), np.zeros(1)), lr=0.5)
    np.testing.assert_array_equal(history.trace[:, :2], [[1, 1], [2, 2], [3, 3]])
    np.testing.assert_allclose(history.trace, rows, rtol=RTOL, atol=1e-15)
    assert_params(model, params)


# -- minibatches --------------------------------------------------------------------------------


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("seed", SEEDS)
def test_minibatches_with_a_short_last_batch_match_torch(seed, reduce):
    """7 examples in batches of 3: steps of 3, 3 and 1 examples; a step's loss is the mean (or sum)
    over its real examples, the short batch averaged over its one example."""
    model = xor()
    history = model.train(trace=True, batch=3, shuffle=1, reduce=reduce, seed=seed, epochs=4)
    params, rows, epochs, _ = torch_xor(epoch_order(seed, True, 3), 4, 3, reduce=reduce, lr=0.5)
    assert history.trace_columns == [c for c in COLUMNS if c != "p"]   # shown values: only one example a step
    assert history.trace.shape == (4 * 3, len(COLUMNS) - 1)
    np.testing.assert_array_equal(history.trace[:, :2], rows[:, :2])
    np.testing.assert_allclose(history.trace, rows, rtol=RTOL, atol=1e-15)
    assert_params(model, params)
    np.testing.assert_allclose(history["loss"], [e["loss"] for e in epochs], rtol=RTOL)
    assert history["accuracy"] == [e["accuracy"] for e in epochs]


@pytest.mark.parametrize("optimizer", [{"momentum": 0.9}, {"optimizer": "adam", "lr": 0.05}], ids=["sgd", "adam"])
def test_float32_training_matches_torch_in_float32(optimizer):
    """dtype=float32 runs the loop in single precision, as torch does with float32 tensors; the
    model's params stay float64 (holding float32 values)."""
    model = xor()
    history = model.train(trace=True, dtype="float32", **MB, epochs=4, **optimizer)
    params, rows, _, _ = torch_xor(epoch_order(SEED, True, 3), 4, 3, dtype=torch.float32,
                                   optimizer=optimizer.get("optimizer", "sgd"),
                                   **{"lr": 0.5, **{k: v for k, v in optimizer.items() if k != "optimizer"}})
    np.testing.assert_allclose(history.trace, rows, rtol=1e-5, atol=1e-6)
    assert_params(model, params, rtol=1e-5)
    assert all(p.dtype == np.float64 and np.array_equal(p, p.astype(np.float32)) for p in model.params.values())


def test_a_model_trained_again_with_other_options_gets_the_loop_they_need():
    """train() keeps each step graph and compiled loop with the spec: a later call with another
    batch size, optimizer or dtype must run its own, exactly as a fresh model would."""
    kept = xor()
    for i, call in enumerate([dict(MB, epochs=2), dict(batch=1, epochs=2, optimizer="adam", lr=0.05),
                              dict(MB, epochs=1, dtype="float32"), dict(MB, epochs=2)]):
        fresh = graphdsl.compile(XOR + f"# fresh {i}\n")  # other text each time: a spec sharing nothing built
        fresh.params.update({k: v.copy() for k, v in kept.params.items()})
        kept.train(**call)
        fresh.train(**call)
        assert same_params(kept.params, fresh.params), call


def test_a_spec_compiled_again_shares_what_was_built_but_not_its_params():
    """compile() of the same text reuses the checked spec and its training loop; each model
    starts from the spec's own initial values and trains as a fresh one would."""
    first = xor()
    first.train(epochs=2)
    again = xor()
    assert again.spec is first.spec and again.spec.programs
    apart = graphdsl.compile(XOR + "\n")
    assert apart.spec is not first.spec
    assert same_params(again.params, apart.params) and not same_params(again.params, first.params)
    again.train(epochs=2)
    apart.train(epochs=2)
    assert same_params(again.params, first.params) and same_params(again.params, apart.params)
    assert xor(settings={"lr": 0.1}).spec is not first.spec
    assert xor(seed=1).spec is not first.spec


def test_models_of_one_spec_training_in_two_threads_build_its_loop_once(monkeypatch, training_engine):
    """The second thread waits for the first one's loop instead of generating it again."""
    built, real = [], loopgen.train_loop

    def slow_train_loop(*args, **kwargs):
        built.append(1)
        time.sleep(0.2)  # long enough for the other thread to ask for the loop meanwhile
        return real(*args, **kwargs)
    monkeypatch.setattr(loopgen, "train_loop", slow_train_loop)
    text = XOR + f"# trained in two threads ({training_engine})\n"  # no loop built by the other run
    models = [graphdsl.compile(text, engine="numba") for _ in range(2)]
    threads = [threading.Thread(target=m.train, kwargs=dict(MB, epochs=2)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert same_params(models[0].params, models[1].params)


def test_sgd_with_momentum_and_weight_decay_matches_torch():
    model = xor()
    model.train(**MB, epochs=5, lr=0.3, momentum=0.9, weight_decay=0.01)
    params, _, _, _ = torch_xor(epoch_order(SEED, True, 3), 5, 3, lr=0.3, momentum=0.9, weight_decay=0.01)
    assert_params(model, params)


@pytest.mark.parametrize("shuffle", [0, 1])
def test_full_batch_with_momentum_and_weight_decay_matches_torch(shuffle):
    """batch=all: one step an epoch over every example, in the data's order whatever shuffle says."""
    model = xor()
    history = model.train(batch="all", epochs=6, shuffle=shuffle, lr=0.7, momentum=0.5, weight_decay=0.02,
                          trace=True)
    params, rows, epochs, _ = torch_xor(epoch_order(SEED, shuffle, N), 6, N, lr=0.7, momentum=0.5, weight_decay=0.02)
    assert_params(model, params)
    np.testing.assert_allclose(history.trace, rows, rtol=RTOL, atol=1e-15)
    np.testing.assert_array_equal(history.trace[:, 0], np.arange(1, 7))
    np.testing.assert_allclose(history["loss"], [e["loss"] for e in epochs], rtol=RTOL)


@pytest.mark.parametrize("shuffle", [0, 1])
def test_plain_full_batch_without_a_trace_matches_torch_across_chunks(shuffle):
    """Plain SGD untraced updates in loops written into the step, and a batch that is the same every
    step is gathered at each call's first step only: 20 epochs run as chunks of 1, 16 and 3."""
    model = xor()
    history = model.train(batch="all", epochs=20, shuffle=shuffle, lr=0.7)
    params, _, epochs, _ = torch_xor(epoch_order(SEED, shuffle, N), 20, N, lr=0.7)
    assert_params(model, params)
    np.testing.assert_allclose(history["loss"], [e["loss"] for e in epochs], rtol=RTOL)


def test_adam_with_every_setting_matches_torch():
    model = xor()
    history = model.train(**MB, epochs=5, trace=True, optimizer="adam", lr=0.05, beta1=0.8,
                          beta2=0.95, eps=1e-6, weight_decay=0.02)
    params, rows, _, _ = torch_xor(epoch_order(SEED, True, 3), 5, 3, optimizer="adam", lr=0.05, betas=(0.8, 0.95),
                                   eps=1e-6, weight_decay=0.02)
    np.testing.assert_allclose(history.trace, rows, rtol=RTOL, atol=1e-15)
    assert_params(model, params)


def test_switching_to_adam_keeps_lr_and_takes_adams_defaults_for_the_rest():
    """optimizer="adam" on a spec that says sgd(lr=0.5): lr stays 0.5; betas (0.9, 0.999), eps 1e-8
    and no weight decay are Adam's defaults, as in PyTorch."""
    model = xor()
    model.train(**MB, epochs=3, optimizer="adam")
    params, _, _, _ = torch_xor(epoch_order(SEED, True, 3), 3, 3, optimizer="adam", lr=0.5)
    assert_params(model, params)


@pytest.mark.parametrize("written, settings", [
    ("adam(lr=0.02, beta1=0.85, beta2=0.98, eps=1e-7, weight_decay=0.1)",
     {"lr": 0.02, "betas": (0.85, 0.98), "eps": 1e-7, "weight_decay": 0.1}),
    ("adam()", {}),    # lr 0.001, betas (0.9, 0.999), eps 1e-8, weight_decay 0: PyTorch's defaults
], ids=["every-setting", "defaults"])
def test_an_optimizer_written_in_the_spec(written, settings):
    model = graphdsl.compile(net(more=f", seed={SEED}").replace("sgd(lr=0.5)", written))
    model.train(batch=3, shuffle=1, epochs=4)
    params, _, _, _ = torch_xor(epoch_order(SEED, True, 3), 4, 3, optimizer="adam", **settings)
    assert_params(model, params)


# -- seeds, checkpoints ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_params_bit_for_bit():
    runs = []
    for seed in (SEED, SEED, SEED + 1):
        model = xor()
        model.train(**{**MB, "seed": seed}, epochs=4)
        runs.append(model.params)
    assert same_params(runs[0], runs[1])
    assert not same_params(runs[0], runs[2])


@pytest.mark.parametrize("optimizer", [{"momentum": 0.9}, {"optimizer": "adam", "lr": 0.05},
                                       {"optimizer": "adam", "lr": 0.05, "dtype": "float32"}],
                         ids=["sgd", "adam", "adam-float32"])
def test_resuming_from_a_checkpoint_is_the_same_as_never_stopping(tmp_path, optimizer):
    """Params, optimizer state (the momentum buffer; Adam's moments and step count) and the
    shuffle orders all carry over: 2 + 2 epochs give exactly the params of 4."""
    checkpoint = tmp_path / "c.npz"
    first = xor()
    first.train(**MB, epochs=2, checkpoint=checkpoint, **optimizer)
    with np.load(checkpoint, allow_pickle=False) as saved:
        assert all(np.array_equal(saved[k], first.params[k]) for k in first.params)

    resumed = xor()   # a new model: only the checkpoint carries anything over
    tail = resumed.train(**MB, epochs=4, resume=checkpoint, trace=True, **optimizer)
    whole = xor()
    full = whole.train(**MB, epochs=4, trace=True, **optimizer)
    assert same_params(resumed.params, whole.params)
    assert tail.epoch == [3, 4]
    assert full.epoch == [1, 2, 3, 4]
    np.testing.assert_array_equal(tail.trace[:, 0], np.arange(7, 13))
    assert np.array_equal(tail.trace, full.trace[6:])
    assert tail["loss"] == full["loss"][2:]


# -- what training writes -------------------------------------------------------------------------


@pytest.mark.parametrize("every", [1, 2, 5])
def test_trace_csv_and_trace_in_memory_agree_exactly(tmp_path, every):
    path = tmp_path / "trace.csv"
    on_disk = xor().train(trace=path, every=every, seed=SEED)
    in_memory = xor().train(trace=True, every=every, seed=SEED)
    assert on_disk.trace is None
    steps = np.arange(1, 3 * N + 1)[::every]       # steps 1, 1 + k, 1 + 2k, ...
    table = pd.read_csv(path)
    assert list(table.columns) == COLUMNS == in_memory.trace_columns
    assert len(table) == len(steps) == -(-3 * N // every)
    np.testing.assert_array_equal(table["step"], steps)
    np.testing.assert_array_equal(table["epoch"], (steps - 1) // N + 1)
    assert table["step"].dtype == np.int64 and table["epoch"].dtype == np.int64
    assert np.array_equal(table.to_numpy(dtype=float), in_memory.trace)
    _, rows, _, _ = torch_xor(epoch_order(SEED, False, 1), 3, 1, lr=0.5)
    np.testing.assert_allclose(in_memory.trace, rows[::every], rtol=RTOL, atol=1e-15)


def test_trace_keeps_every_kth_step_across_epochs_of_minibatches():
    history = xor().train(**MB, trace=True, every=2, epochs=4)
    np.testing.assert_array_equal(history.trace[:, 0], [1, 3, 5, 7, 9, 11])
    np.testing.assert_array_equal(history.trace[:, 1], [1, 1, 2, 3, 3, 4])


def test_epoch_log_is_a_keras_csv_logger_file(tmp_path):
    path = tmp_path / "log.csv"
    history = xor().train(log=path, seed=SEED, epochs=3)
    assert path.read_text().splitlines()[0] == "epoch,loss,accuracy"
    table = pd.read_csv(path)
    assert list(table.columns) == ["epoch", "loss", "accuracy"]
    np.testing.assert_array_equal(table["epoch"], [1, 2, 3])
    assert table["loss"].tolist() == history["loss"]
    assert table["accuracy"].tolist() == history["accuracy"]
    _, _, epochs, _ = torch_xor(epoch_order(SEED, False, 1), 3, 1, lr=0.5)
    np.testing.assert_allclose(table["loss"], [e["loss"] for e in epochs], rtol=RTOL)


# -- classification, validation -------------------------------------------------------------------

CLASSIFIER = """\
input x[2]
target k
param W[3, 2] = [[0.2, -0.5], [0.4, 0.1], [-0.3, 0.6]]
param b[3] = [0, 0.1, -0.1]
z = W x + b
L = softmax_ce(z, k)
minimize L using sgd(lr=0.4), epochs=4, batch=2, validation=0.3, seed=5
"""
POINTS = np.array([[1, 0], [0, 1], [-1, -1], [2, 1], [0.5, -1], [-1, 2], [1, 1], [-2, 0], [0, -2], [1.5, 0.5]])
CLASSES = np.array([0, 1, 2, 0, 2, 1, 0, 2, 2, 1])


def torch_classifier(epochs=4, batch=2, lr=0.4, seed=5, validation=0.3):
    """Validation as data.split documents it: default_rng(seed) permutes the examples and the last
    round(fraction * n) are held out; each epoch then shuffles the rest with default_rng([seed, e])."""
    n = len(POINTS)
    held = round(validation * n)
    perm = np.random.default_rng(seed).permutation(n)
    fit, val = perm[:n - held], perm[n - held:]
    W = f64([[0.2, -0.5], [0.4, 0.1], [-0.3, 0.6]]).requires_grad_()
    b = f64([0, 0.1, -0.1]).requires_grad_()
    opt = torch.optim.SGD([W, b], lr=lr)
    out = []
    for e in range(epochs):
        order = fit[np.random.default_rng([seed, e]).permutation(len(fit))]
        losses, hits = [], 0
        for start in range(0, len(order), batch):
            ids = order[start:start + batch]
            z = f64(POINTS[ids]) @ W.T + b
            loss = torch.nn.functional.cross_entropy(z, torch.tensor(CLASSES[ids]))
            hits += int((z.argmax(1).numpy() == CLASSES[ids]).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            zv = f64(POINTS[val]) @ W.T + b
            val_loss = torch.nn.functional.cross_entropy(zv, torch.tensor(CLASSES[val])).item()
            val_accuracy = float((zv.argmax(1).numpy() == CLASSES[val]).mean())
        out.append({"loss": np.mean(losses), "accuracy": hits / len(fit), "val_loss": val_loss,
                    "val_accuracy": val_accuracy})
    return {"W": W.detach().numpy(), "b": b.detach().numpy()}, out


def test_softmax_classifier_with_accuracy_and_validation_matches_torch(tmp_path):
    model = graphdsl.compile(CLASSIFIER)
    log = tmp_path / "log.csv"
    history = model.train(data={"x": POINTS, "k": CLASSES}, log=log)
    params, epochs = torch_classifier()
    assert_params(model, params)
    assert history.epoch == [1, 2, 3, 4]
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(history[key], [e[key] for e in epochs], rtol=RTOL, err_msg=key)
    for key in ("accuracy", "val_accuracy"):
        assert history[key] == pytest.approx([e[key] for e in epochs], abs=1e-15), key
    table = pd.read_csv(log)
    assert list(table.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    for key in history.history:
        assert table[key].tolist() == history[key]


# -- plain SGD inside the weight-gradient products --------------------------------------------------

WIDE = """\
input x[40]
target k
param W1[64, 40] = xavier()
param b1[64] = zeros()
param W2[3, 64] = xavier()
param b2[3] = zeros()
h = relu(W1 x + b1)
L = softmax_ce(W2 h + b2, k)
minimize L using sgd(lr=0.3), epochs=3, batch=32, seed=3
"""
WIDE_DATA = {"x": np.random.default_rng(11).normal(size=(100, 40))}
WIDE_DATA["k"] = np.argmax(WIDE_DATA["x"][:, :3] + WIDE_DATA["x"][:, 3:6], axis=1)


def torch_wide(init: dict, dtype=torch.float64, **hyper) -> dict:
    """WIDE trained by PyTorch for 3 epochs, batches of 32 in graphdsl's order (the last one holds 4
    examples)."""
    P = {k: torch.tensor(v, dtype=dtype).requires_grad_() for k, v in init.items()}
    opt = torch.optim.SGD(P.values(), **{"lr": 0.3, **hyper})
    xs, ks = WIDE_DATA["x"], WIDE_DATA["k"]
    for e in range(3):
        order = epoch_order(3, True, 32, n=len(xs))(e)
        for start in range(0, len(order), 32):
            ids = order[start:start + 32]
            h = torch.relu(torch.tensor(xs[ids], dtype=dtype) @ P["W1"].T + P["b1"])
            loss = torch.nn.functional.cross_entropy(h @ P["W2"].T + P["b2"], torch.tensor(ks[ids]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().numpy() for k, v in P.items()}


def test_plain_sgd_in_the_gradient_products_matches_torch_with_and_without_a_trace():
    """32 examples a step make both weight gradients BLAS products, which plain SGD subtracts
    straight into the weights; a trace records gradients, so a traced run keeps them apart."""
    fused, traced = graphdsl.compile(WIDE), graphdsl.compile(WIDE)
    spec = fused.spec
    plan = make_plan(spec, spec.training, data_leaves(spec, spec.graph.names["L"]), 32, [], [])
    assert len(loopgen.sgd_products(plan)) == 2  # both weights take the fused path
    params = torch_wide({k: v.copy() for k, v in fused.params.items()})
    fused.train(data=WIDE_DATA)
    traced.train(data=WIDE_DATA, trace=True)
    assert_params(fused, params, rtol=1e-10)
    assert_params(traced, params, rtol=1e-10)


@pytest.mark.parametrize("changes", [{"momentum": 0.9}, {"weight_decay": 0.01}, {"dtype": "float32"}])
def test_wide_training_with_momentum_weight_decay_or_float32_matches_torch(changes):
    """Momentum and weight decay need the gradient itself, so those runs keep it apart; float32
    runs the products in single precision."""
    model = graphdsl.compile(WIDE)
    init = {k: v.copy() for k, v in model.params.items()}
    model.train(data=WIDE_DATA, **changes)
    if changes.get("dtype") == "float32":
        params = torch_wide(init, dtype=torch.float32)
        for name, value in params.items():
            np.testing.assert_allclose(model.params[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    else:
        assert_params(model, torch_wide(init, **changes), rtol=1e-10)


def test_a_non_finite_operand_of_a_fused_product_stops_training_before_any_update():
    """sqrt's slope at 0 is infinite, so every unit relu turns off gives the first layer's gradient
    product a nan operand while the loss stays finite. W1 has no bias: only that product sees it."""
    spec = WIDE.replace("param b1[64] = zeros()\n", "").replace("h = relu(W1 x + b1)", "h = sqrt(relu(W1 x))")
    model = graphdsl.compile(spec)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(TrainingError, match=r"training stopped at step 1 \(epoch 1\)"):
        model.train(data=WIDE_DATA)
    assert same_params(model.params, before)


def test_a_float32_minibatch_too_large_for_the_fused_products_bound_stops_training_before_any_update():
    """Entries of 1e20 fit float32 but their squares do not: the gathered batch's norm is inf, so
    the check cannot rule out an overflow in W1's gradient product, and no weight moves. W1 reads
    them with weights 0, so the loss, the hidden layer and W2's product stay small."""
    model = graphdsl.compile(WIDE)
    model.params["W1"][:, 0] = 0.0
    before = {k: v.copy() for k, v in model.params.items()}
    data = {**WIDE_DATA, "x": WIDE_DATA["x"].copy()}
    data["x"][:, 0] = 1e20
    with pytest.raises(TrainingError, match=r"training stopped at step 1 \(epoch 1\)"):
        model.train(data=data, dtype="float32")
    assert same_params(model.params, {k: v.astype(np.float32).astype(np.float64) for k, v in before.items()})


# -- non-finite losses ----------------------------------------------------------------------------


def test_a_non_finite_loss_stops_training_and_keeps_the_last_finite_params():
    """lr = 10^4 throws the sigmoid into saturation: p is exactly 0 or 1 and bce takes log(0)."""
    model = xor()
    with pytest.raises(TrainingError) as info:
        model.train(lr=1e4, seed=SEED, epochs=5, trace=True)
    params, rows, _, (step, epoch) = torch_xor(epoch_order(SEED, False, 1), 5, 1, lr=1e4, stop_at_nan=True)
    message = str(info.value)
    assert f"training stopped at step {step} (epoch {epoch}): the loss or a gradient is not finite" in message
    assert re.search(r"the first value that is not finite is (`\w+`|a `\w+` value)", message), message
    assert f"The model keeps the weights of step {step - 1}" in message
    assert_params(model, params, rtol=1e-10)
    assert all(np.all(np.isfinite(v)) for v in model.params.values())


@pytest.mark.parametrize("batch", [1, 3])
def test_a_non_finite_loss_names_the_first_value_that_is_not_finite(batch):
    """h and p are sigmoids, finite for any weights; p reaches exactly 0 or 1 and the first value
    that is not finite is one of bce's logs, not the loss that it ends up in."""
    model = xor()
    with pytest.raises(TrainingError) as info:
        model.train(lr=1e4, seed=SEED, epochs=5, batch=batch)
    assert "the first value that is not finite is a `log` value" in str(info.value)


def test_a_float32_overflow_is_replayed_in_float32():
    """e^100 overflows in float32 only: the replay that names the value must run in the loop's dtype."""
    model = graphdsl.compile("input x\nparam w = 1\nL = exp(w * x)\ndata x = [[100]]\n"
                             "minimize L using sgd(lr=0.01), epochs=1, batch=1, dtype=float32\n")
    with pytest.raises(TrainingError, match="the first value that is not finite is `L`"):
        model.train()
    assert model.train(dtype="float64")["loss"][0] == pytest.approx(np.exp(100.0), rel=1e-12)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_non_finite_loss_is_located_in_the_spec(batch):
    model = graphdsl.compile(XOR, filename="xor.nn")
    with pytest.raises(TrainingError) as info:
        model.train(lr=1e4, seed=SEED, epochs=5, batch=batch)
    message = str(info.value)
    assert message.startswith("xor.nn:9:5: error: training stopped at step "), message
    assert "\n    L = bce(p, y)\n        ^~~~~~~~~\n" in message, message


SQRT = """\
input x
param w = 0
L = sqrt(w) + x
data x = [1, 2]
minimize L using sgd(lr=0.1), epochs=2, batch=1
"""


def test_a_non_finite_gradient_does_not_leave_non_finite_params():
    model = graphdsl.compile(SQRT)
    try:
        model.train()
    except TrainingError:
        pass
    assert np.isfinite(model.params["w"])


def test_train_needs_a_minimize_statement():
    model = graphdsl.compile("input x = 1\nparam w = 2\nL = w x\n")
    with pytest.raises(DataError, match="does not say what to minimize"):
        model.train()


# -- files: data next to the spec, the command line ----------------------------------------------


def write_csv(path: Path, xs, ys, header=True):
    lines = (["x0,x1,y"] if header else []) + [f"{a!r},{b!r},{c!r}" for (a, b), c in zip(xs.tolist(), ys.tolist())]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """tmp/sub/net.nn reads `data "train.csv"`, which lies beside it in tmp/sub; the cwd is tmp."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "net.nn").write_text(net(data='data "train.csv"', defaults=True, more=f", seed={SEED}"))
    write_csv(sub / "train.csv", X, Y)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_data_file_is_read_beside_the_spec(project):
    model = graphdsl.load("sub/net.nn")
    model.train()
    params, _, _, _ = torch_xor(epoch_order(SEED, False, 1), 3, 1, lr=0.5)
    assert_params(model, params)


def test_a_path_passed_to_train_is_read_from_the_current_directory(project):
    """As --data and predict() read it; only the spec's own `data` paths are relative to the spec."""
    write_csv(project / "train.csv", X[:4], Y[:4])  # a different train.csv, in the cwd
    by_path, by_arrays = graphdsl.load("sub/net.nn"), graphdsl.load("sub/net.nn")
    by_path.train("train.csv")
    by_arrays.train({"x": X[:4], "y": Y[:4]})
    assert same_params(by_path.params, by_arrays.params)


def test_cli_trains_saves_traces_logs_and_plots(project):
    result = run_cli("run", "sub/net.nn", "--set", "batch=3", "--set", "shuffle=1", "--set", "epochs=2",
                     "--set", "lr=0.25", "--save", "w.npz", "--trace", "t.csv", "--log", "l.csv", "--plot", "p.png")
    assert result.exit_code == 0, result.output
    assert "after 2 epochs of training" in result.output
    params, rows, epochs, _ = torch_xor(epoch_order(SEED, True, 3), 2, 3, lr=0.25)
    with np.load(project / "w.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["W", "b", "c", "v"]
        for name, value in params.items():
            np.testing.assert_allclose(saved[name], value, rtol=RTOL, err_msg=name)
    trace = pd.read_csv(project / "t.csv")
    assert list(trace.columns) == [c for c in COLUMNS if c != "p"]
    np.testing.assert_allclose(trace.to_numpy(dtype=float), rows, rtol=RTOL, atol=1e-15)
    log = pd.read_csv(project / "l.csv")
    assert list(log.columns) == ["epoch", "loss", "accuracy"]
    np.testing.assert_allclose(log["loss"], [e["loss"] for e in epochs], rtol=RTOL)
    assert (project / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_data_option_takes_an_absolute_path(project):
    xs, ys = X[::-1].copy(), Y[::-1].copy()
    write_csv(project / "other.csv", xs, ys, header=False)
    result = run_cli("run", "sub/net.nn", "--data", project / "other.csv", "--set", "batch=3", "--set", "shuffle=1",
                     "--save", "w.npz")
    assert result.exit_code == 0, result.output
    params, _, _, _ = torch_xor(epoch_order(SEED, True, 3), 3, 3, data=(xs, ys), lr=0.5)
    with np.load(project / "w.npz", allow_pickle=False) as saved:
        for name, value in params.items():
            np.testing.assert_allclose(saved[name], value, rtol=RTOL, err_msg=name)


def test_cli_set_changes_options_and_optimizer_settings(project):
    result = run_cli("run", "sub/net.nn", "--set", "batch=all", "--set", "momentum=0.5", "--set", "epochs=4",
                     "--save", "w.npz")
    assert result.exit_code == 0, result.output
    params, _, _, _ = torch_xor(epoch_order(SEED, True, N), 4, N, lr=0.5, momentum=0.5)
    with np.load(project / "w.npz", allow_pickle=False) as saved:
        for name, value in params.items():
            np.testing.assert_allclose(saved[name], value, rtol=RTOL, err_msg=name)


def test_cli_load_starts_from_saved_weights(project):
    """Plain SGD in the data's order keeps no state: 2 epochs, --save, --load, 2 more = 4 epochs."""
    first = run_cli("run", "sub/net.nn", "--set", "epochs=2", "--save", "a.npz")
    assert first.exit_code == 0, first.output
    second = run_cli("run", "sub/net.nn", "--set", "epochs=2", "--load", "a.npz", "--save", "b.npz")
    assert second.exit_code == 0, second.output
    params, _, _, _ = torch_xor(epoch_order(SEED, False, 1), 4, 1, lr=0.5)
    with np.load(project / "b.npz", allow_pickle=False) as saved:
        for name, value in params.items():
            np.testing.assert_allclose(saved[name], value, rtol=RTOL, err_msg=name)


def test_cli_checkpoint_and_resume(project):
    common = ["run", "sub/net.nn", "--set", "batch=3", "--set", "shuffle=1", "--set", "momentum=0.9"]
    assert run_cli(*common, "--set", "epochs=2", "--checkpoint", "c.npz").exit_code == 0
    resumed = run_cli(*common, "--set", "epochs=4", "--resume", "c.npz", "--save", "resumed.npz")
    assert resumed.exit_code == 0, resumed.output
    assert run_cli(*common, "--set", "epochs=4", "--save", "whole.npz").exit_code == 0
    with np.load(project / "resumed.npz") as a, np.load(project / "whole.npz") as b:
        assert sorted(a.files) == sorted(b.files) == ["W", "b", "c", "v"]
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_cli_data_option_is_relative_to_the_current_directory(project):
    write_csv(project / "other.csv", X[::-1].copy(), Y[::-1].copy(), header=False)
    result = run_cli("run", "sub/net.nn", "--data", "other.csv", "--set", "batch=3")
    assert result.exit_code == 0, result.output


def test_cli_trains_a_spec_that_shows_values_of_inputs_without_defaults(tmp_path):
    (tmp_path / "net.nn").write_text(net(more=f", seed={SEED}"))
    result = run_cli("run", tmp_path / "net.nn", "--set", "batch=3")
    assert result.exit_code == 0, result.output


def test_cli_non_finite_loss_exits_1(project):
    result = run_cli("run", "sub/net.nn", "--set", "batch=3", "--set", "lr=1e4", "--set", "epochs=5")
    assert result.exit_code == 1, result.output
    assert re.search(r"training stopped at step \d+ \(epoch \d+\): the loss or a gradient is not finite", result.output)
    assert "trained params" not in result.output


@pytest.mark.parametrize("args, words", [
    (["--set", "bogus=1"], ["`bogus` is not a setting"]),
    (["--set", "epochs=-1"], ["`epochs` must be a whole number of at least 0, not -1"]),
    (["--set", "batch=0"], ["`batch` must be a whole number of at least 1, not 0"]),
    (["--set", "reduce=median"], ["`reduce` must be mean or sum, not `median`"]),
    (["--set", "optimizer=lbfgs"], ["unknown optimizer `lbfgs`"]),
    (["--set", "novalue"], ["novalue", "is not NAME=VALUE"]),
    (["--set", "epochs=inf"], ["`epochs` takes finite numbers, not inf"]),
    (["--set", "epochs=1,2"], ["`epochs` is a number, but 2 values were given for it"]),
    (["--set", "lr=nan"], ["`lr`, a setting of `sgd`, takes finite numbers, not nan"]),
    (["--set", "lr=0.1,0.2"], ["`lr`, a setting of `sgd`, is a number, but 2 values were given for it"]),
    (["--set", "batch=3", "--data", "missing.csv"], ["missing.csv", "no such file"]),
])
def test_cli_training_errors_exit_2(project, args, words):
    result = run_cli("run", "sub/net.nn", *args)
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output


def test_cli_a_word_for_an_optimizer_setting_exits_2(project):
    result = run_cli("run", "sub/net.nn", "--set", "lr=abc")
    assert result.exit_code == 2, result.output
    assert "`lr`" in result.output


@pytest.mark.parametrize("args, words", [
    (["--set", "nope=3"], ["`nope` is not a setting, an option of `minimize` or a setting of `sgd`"]),
    (["--set", "hidden=a,b"], ["setting `hidden` takes numbers, not `a,b`"]),
    (["--set", "features=4,4"], ["setting `features` is a number, but 2 values were given for it"]),
    (["--set", "lr=fast"], ["setting `lr` takes numbers, not `fast`"]),
])
def test_cli_bad_settings_exit_2(args, words):
    result = run_cli("run", ROOT / "specs" / "mlp.nn", *args)
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output


@pytest.mark.parametrize("args", [["--log", "l.csv"], ["--trace", "t.csv"], ["--save", "w.npz"],
                                  ["--plot", "p.png"], ["--data", "iris"], ["--checkpoint", "c.npz"]])
def test_cli_training_options_need_a_minimize_statement(tmp_path, args):
    result = run_cli("run", ROOT / "specs" / "backprop_2_2_1.nn", *args)
    assert result.exit_code == 2, result.output
    assert "training options need a spec that says `minimize L using ...`" in result.output


def test_cli_set_on_a_spec_without_settings_or_minimize_exits_2():
    result = run_cli("run", ROOT / "specs" / "backprop_2_2_1.nn", "--set", "lr=0.1")
    assert result.exit_code == 2, result.output
    assert "the spec has no setting `lr`" in result.output


def test_mlp_on_digits_from_the_command_line(tmp_path):
    """The installed command in a fresh process: two epochs of specs/mlp.nn with one hidden layer of 16."""
    graphdsl_cmd = Path(sys.executable).with_name("graphdsl")
    result = subprocess.run(
        [str(graphdsl_cmd), "run", str(ROOT / "specs" / "mlp.nn"), "--set", "hidden=16", "--set", "epochs=2",
         "--log", "log.csv", "--plot", "plot.png", "--save", "w.npz"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "after 2 epochs of training" in result.stdout
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert log["epoch"].tolist() == [1, 2]
    assert log["val_accuracy"].iloc[-1] > 0.5
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(tmp_path / "w.npz", allow_pickle=False) as saved:
        assert {k: saved[k].shape for k in saved.files} == {"W.0": (16, 64), "b.0": (16,), "V": (10, 16), "c": (10,)}


@pytest.mark.parametrize("more, name", [(", epochs=5", "epochs"), ("", "lr")], ids=["option", "optimizer-setting"])
def test_a_minimize_setting_given_twice_is_refused(more, name):
    text = net(more=more) if name == "epochs" else XOR.replace("sgd(lr=0.5)", "sgd(lr=0.5, lr=0.1)")
    with pytest.raises(graphdsl.SpecError, match=f"`{name}` is given twice"):
        graphdsl.compile(text)


def test_a_minimize_setting_may_read_a_const_sized_by_an_unseeded_param():
    """`size(W)` in a constant that a `minimize` setting reads: W (drawn without `seed=`) has 4
    entries, so c is four quarters and lr = sum(c) = 1 (this ended in an internal KeyError)."""
    spec = ("input x[2] = [1, 2]\nparam W[2, 2] = xavier()\nconst c[size(W)] = 0.25\nL = sum(W x)\n"
            "minimize L using sgd(lr=sum(c)), epochs=1\n")
    assert graphdsl.compile(spec, engine="numpy").spec.training.settings["lr"] == 1.0
