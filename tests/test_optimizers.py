"""The update rules against PyTorch, step by step in float64: every optimizer (SGD with Nesterov
momentum, Adam, AdamW, RMSprop, Adagrad) as torch.optim computes it, every learning-rate schedule
as torch.optim.lr_scheduler sets it (stepped once an epoch or once a step, after a warm-up), and
gradient-norm clipping as torch.nn.utils.clip_grad_norm_.

Each run is 20 steps or more of minibatches in a new order each epoch, with a short last batch;
every trace row (the loss, each param before the step and each gradient) and the final params
must agree with PyTorch's to 1e-12. The spec is tests/test_homework.py's minibatch classifier, so
both files share its compiled loops (one per optimizer's update).
"""
import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graphdsl
from graphdsl import DataError
from graphdsl.cli import main
from graphdsl.training.optimizers import OPTIMIZERS
from graphdsl.training.schedules import SCHEDULES

# every test twice: all runs compiled, then as the default engine picks (conftest.training_engine)
pytestmark = pytest.mark.usefixtures("training_engine")

X = np.array([[1, 2], [0.5, -1], [-1.5, 0.2], [2, 0.3], [0.1, 0.1]])
Y = np.array([1, 0, 1, 0, 1.0])
INIT = {"W": [[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]], "v": [0.5, -0.6, 0.3], "c": 0.1}
SPEC = """\
input x[2]
target y
param W[3, 2] = [[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]]
param v[3] = [0.5, -0.6, 0.3]
param c = 0.1
h = tanh(W x)
p = sigmoid(v h + c)
L = bce(p, y)
show h
data x = [[1, 2], [0.5, -1], [-1.5, 0.2], [2, 0.3], [0.1, 0.1]], y = [1, 0, 1, 0, 1]
minimize L using {optimizer}, epochs={epochs}, batch=3
"""
BATCH, EPOCHS = 3, 11  # 2 steps an epoch: 22 steps
TOL = {"rtol": 1e-12, "atol": 1e-12}


def torch_run(make_optimizer, epochs=EPOCHS, schedule=None, per_step=False, clip=0.0):
    """The classifier trained by PyTorch: (final params, one row a step: loss, params before the
    step, gradients; the lr of each step; the gradients' total norm at each step)."""
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in INIT.items()}
    opt = make_optimizer(list(P.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation notes
        scheduler = schedule(opt) if schedule else None
    rows, lrs, norms = [], [], []
    for e in range(epochs):
        order = np.random.default_rng([0, e]).permutation(len(X))
        for start in range(0, len(X), BATCH):
            ids = order[start:start + BATCH]
            x, y = torch.tensor(X[ids]), torch.tensor(Y[ids])
            p = torch.sigmoid(torch.tanh(x @ P["W"].T) @ P["v"] + P["c"])
            loss = (-(y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean()
            opt.zero_grad()
            loss.backward()
            rows.append([loss.item(), *(a for t in P.values() for a in t.detach().numpy().ravel()),
                         *(a for t in P.values() for a in t.grad.numpy().ravel())])
            if clip:
                norms.append(torch.nn.utils.clip_grad_norm_(list(P.values()), clip).item())
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if scheduler and per_step:
                scheduler.step()
        if scheduler and not per_step:
            scheduler.step()
    return {k: v.detach().numpy() for k, v in P.items()}, np.array(rows), lrs, norms


def assert_trains_as_torch(model, expected, **train):
    params, rows, _, _ = expected
    history = model.train(trace=True, **train)
    assert len(rows) >= 20
    np.testing.assert_allclose(history.trace[:, 2:], rows, **TOL)
    for name, value in params.items():
        np.testing.assert_allclose(model.params[name], value, **TOL, err_msg=name)


def trains_as_torch(optimizer: str, expected, epochs=EPOCHS, **train):
    assert_trains_as_torch(graphdsl.compile(SPEC.format(optimizer=optimizer, epochs=epochs)), expected, **train)


# -- optimizers ---------------------------------------------------------------------------------

def adam_like(cls, lr, betas, eps, weight_decay):
    return lambda P: cls(P, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


@pytest.mark.parametrize("optimizer, make", [
    ("sgd(lr=0.2, momentum=0.9, nesterov=1)", lambda P: torch.optim.SGD(P, lr=0.2, momentum=0.9, nesterov=True)),
    ("sgd(lr=0.3, momentum=0.5, weight_decay=0.05, nesterov=1)",
     lambda P: torch.optim.SGD(P, lr=0.3, momentum=0.5, weight_decay=0.05, nesterov=True)),
    ("rmsprop()", lambda P: torch.optim.RMSprop(P)),
    ("rmsprop(lr=0.02, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.5, centered=1)",
     lambda P: torch.optim.RMSprop(P, lr=0.02, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.5, centered=True)),
    ("rmsprop(lr=0.05, centered=1)", lambda P: torch.optim.RMSprop(P, lr=0.05, centered=True)),
    ("adamw()", lambda P: torch.optim.AdamW(P)),
    ("adamw(lr=0.05, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)",
     adam_like(torch.optim.AdamW, 0.05, (0.8, 0.95), 1e-6, 0.1)),
    ("adam(lr=0.05, beta1=0.3, weight_decay=0.1)", adam_like(torch.optim.Adam, 0.05, (0.3, 0.999), 1e-8, 0.1)),
    ("adagrad()", lambda P: torch.optim.Adagrad(P)),
    ("adagrad(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2, eps=1e-8)",
     lambda P: torch.optim.Adagrad(P, lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2,
                                   eps=1e-8)),
], ids=["nesterov", "nesterov-decay", "rmsprop", "rmsprop-all", "rmsprop-centered", "adamw", "adamw-all",
        "adam-small-beta1", "adagrad", "adagrad-all"])
def test_optimizer_matches_torch_step_by_step(optimizer, make):
    trains_as_torch(optimizer, torch_run(make))


TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
         "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
# graphdsl's name for a PyTorch argument, where they differ; SGD's lr default is graphdsl's own
RENAMED = {"beta1": ("betas", 0), "beta2": ("betas", 1)}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_defaults_are_pytorchs(name):
    assert set(OPTIMIZERS) == set(TORCH)
    signature = inspect.signature(TORCH[name]).parameters
    for key, default in OPTIMIZERS[name].settings.items():
        if (name, key) == ("sgd", "lr"):
            continue  # 0.01, as graphdsl has always had it; PyTorch's is 0.001
        arg, index = RENAMED.get(key, (key, None))
        want = signature[arg].default if index is None else signature[arg].default[index]
        assert default == float(want), (name, key)


def test_optimizer_from_python_and_its_settings_checked():
    model = graphdsl.compile(SPEC.format(optimizer="sgd(lr=0.1)", epochs=EPOCHS))
    expected = torch_run(lambda P: torch.optim.RMSprop(P, lr=0.03, momentum=0.2))
    assert_trains_as_torch(model, expected, optimizer="rmsprop", lr=0.03, momentum=0.2)
    with pytest.raises(DataError, match="Nesterov momentum needs a `momentum` above 0"):
        model.train(nesterov=1)
    with pytest.raises(DataError, match="`alpha` must be at least 0 and below 1, not 1.5"):
        model.train(optimizer="rmsprop", alpha=1.5)


# -- schedules ----------------------------------------------------------------------------------

S = torch.optim.lr_scheduler


def warmed(warmup, then):
    """graphdsl's warm-up of `warmup` epochs (or steps) before a schedule, in PyTorch's words."""
    return lambda opt: S.SequentialLR(opt, [S.LinearLR(opt, 1 / (warmup + 1), 1.0, warmup), then(opt)], [warmup])


@pytest.mark.parametrize("schedule, torch_schedule, per_step", [
    ("step(size=3, gamma=0.5)", lambda o: S.StepLR(o, step_size=3, gamma=0.5), False),
    ("step(size=5, gamma=0.7, per=step)", lambda o: S.StepLR(o, step_size=5, gamma=0.7), True),
    ("exponential(gamma=0.8)", lambda o: S.ExponentialLR(o, gamma=0.8), False),
    ("exponential(gamma=0.93, per=step)", lambda o: S.ExponentialLR(o, gamma=0.93), True),
    # past its length the cosine rises again, as PyTorch's does
    ("cosine(length=4, min_lr=0.01)", lambda o: S.CosineAnnealingLR(o, T_max=4, eta_min=0.01), False),
    ("cosine", lambda o: S.CosineAnnealingLR(o, T_max=EPOCHS), False),  # the whole run
    ("cosine(per=step)", lambda o: S.CosineAnnealingLR(o, T_max=2 * EPOCHS), True),
    ("linear(length=6, start=0.9, end=0.1)", lambda o: S.LinearLR(o, 0.9, 0.1, total_iters=6), False),
    ("linear(per=step)", lambda o: S.LinearLR(o, 1.0, 0.0, total_iters=2 * EPOCHS), True),
    ("cosine(warmup=3)", warmed(3, lambda o: S.CosineAnnealingLR(o, T_max=EPOCHS - 3)), False),
    ("linear(warmup=4, per=step, end=0.2)",
     warmed(4, lambda o: S.LinearLR(o, 1.0, 0.2, total_iters=2 * EPOCHS - 4)), True),
    ("step(size=2, warmup=2)", warmed(2, lambda o: S.StepLR(o, step_size=2)), False),
    ("constant(warmup=3)", lambda o: S.LinearLR(o, 1 / 4, 1.0, 3), False),
], ids=lambda v: v if isinstance(v, str) else "")
def test_schedule_matches_torch_step_by_step(schedule, torch_schedule, per_step):
    expected = torch_run(lambda P: torch.optim.SGD(P, lr=0.5, momentum=0.5), schedule=torch_schedule,
                         per_step=per_step)
    assert len(set(expected[2])) > 3  # the lr does change
    trains_as_torch(f"sgd(lr=0.5, momentum=0.5), schedule={schedule}", expected)


def test_a_schedule_sets_the_lr_adam_and_adamw_read():
    """AdamW's decoupled weight decay and Adam's step both use the scheduled lr."""
    schedule = warmed(2, lambda o: S.ExponentialLR(o, gamma=0.9))
    expected = torch_run(lambda P: torch.optim.AdamW(P, lr=0.05, weight_decay=0.5), schedule=schedule, per_step=True)
    trains_as_torch("adamw(lr=0.05, weight_decay=0.5), schedule=exponential(gamma=0.9, warmup=2, per=step)", expected)


def test_a_schedule_from_python_and_plain_sgd_scheduled():
    """train(schedule=..., and its settings by name), as --set gives them; plain SGD, whose update
    the loop may fuse, still takes each step's lr."""
    model = graphdsl.compile(SPEC.format(optimizer="sgd(lr=0.5)", epochs=EPOCHS))
    expected = torch_run(lambda P: torch.optim.SGD(P, lr=0.5), schedule=warmed(2, lambda o: S.StepLR(o, 3, 0.3)))
    assert_trains_as_torch(model, expected, schedule="step", size=3, gamma=0.3, warmup=2)
    with pytest.raises(DataError, match="`gamma` is not a setting, an option of `minimize` or a setting of `sgd` or "
                                        "`cosine`"):
        model.train(schedule="cosine", gamma=0.5)
    with pytest.raises(DataError, match="unknown schedule `cyclic`"):
        model.train(schedule="cyclic")
    with pytest.raises(DataError, match="`step` needs `size`"):
        model.train(schedule="step")


# -- clipping -----------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, make, clip", [
    ("sgd(lr=0.5)", lambda P: torch.optim.SGD(P, lr=0.5), 0.4),
    ("adam(lr=0.05)", lambda P: torch.optim.Adam(P, lr=0.05), 0.4),
], ids=["sgd", "adam"])
def test_clipping_matches_torch_step_by_step(optimizer, make, clip):
    expected = torch_run(make, clip=clip)
    norms = expected[3]
    assert min(norms) < clip < max(norms)  # some steps clipped, some not
    trains_as_torch(f"{optimizer}, clip={clip}", expected)


WIDE = """\
input x[64]
target y[8]
param W[8, 64] = normal(std=0.3, seed=1)
L = mse(W x, y)
minimize L using sgd(lr=0.2), epochs=10, batch=8, shuffle=0, clip=0.5
"""


def test_clipping_a_gradient_plain_sgd_would_update_inside_its_product(tmp_path):
    """Plain SGD updates W inside the product making dL/dW (no gradient kept), unless every
    gradient must first be measured for clipping."""
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(16, 64)), rng.normal(size=(16, 8))
    model = graphdsl.compile(WIDE)
    W = torch.tensor(model.params["W"], requires_grad=True)
    opt, norms = torch.optim.SGD([W], lr=0.2), []
    for _ in range(10):
        for start in (0, 8):
            x, y = torch.tensor(xs[start:start + 8]), torch.tensor(ys[start:start + 8])
            opt.zero_grad()
            (((x @ W.T - y) ** 2).mean(dim=1)).mean().backward()
            norms.append(torch.nn.utils.clip_grad_norm_([W], 0.5).item())
            opt.step()
    assert min(norms) > 0.5
    model.train({"x": xs, "y": ys})
    np.testing.assert_allclose(model.params["W"], W.detach().numpy(), **TOL)


def test_a_short_run_names_its_schedule(tmp_path):
    """A short run prints each step's update under the optimizer and schedule it took."""
    spec = tmp_path / "net.nn"
    spec.write_text(SPEC.format(optimizer="adamw(lr=0.1), schedule=cosine(warmup=1, per=step)", epochs=2))
    result = CliRunner().invoke(main, ["run", str(spec)])
    assert result.exit_code == 0, result.output
    assert ("step 4 of adamw(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01), "
            "schedule=cosine(warmup=1, per=step): each param") in result.output


DOC = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [*OPTIMIZERS, *SCHEDULES])
def test_every_optimizer_and_schedule_is_documented(name):
    assert re.search(rf"^\| `{name}` \|", DOC, re.M), f"`{name}` has no row in docs/training.md"
