"""A homework in one run: statements in order (what is asked before `minimize` prints at the given
weights, what is asked after at the trained ones), each step of a short run as an update table,
`epochs=0`, frozen params, the deltas in the trace, and `graphdsl check` on a spec that only
trains. Expected values come from PyTorch (float64), step by step."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main
from test_optimizers import SPEC as OPTIMIZED

# A 2-2-2 sigmoid network with squared error (Matt Mazur's worked example); its biases are frozen.
NET = """\
input  x[2] = [0.05, 0.1]
target t[2] = [0.01, 0.99]
param  W1 = [[0.15, 0.2], [0.25, 0.3]]
param  b1 = [0.35, 0.35]
param  W2 = [[0.4, 0.45], [0.5, 0.55]]
param  b2 = [0.6, 0.6]
h = sigmoid(W1 x + b1)
o = sigmoid(W2 h + b2)
E = half_se(o, t, reduce=sum)
show h, o, E
grad E wrt W2, W1, b1, o
minimize E using {optimizer}, epochs={epochs}{freeze}
show E
"""
PARAMS = {"W1": [[0.15, 0.2], [0.25, 0.3]], "b1": [0.35, 0.35], "W2": [[0.4, 0.45], [0.5, 0.55]], "b2": [0.6, 0.6]}
NUMBER = re.compile(r"-?\d+\.?\d*(?:e[+-]?\d+)?")


def torch_net(params):
    x, t = torch.tensor([0.05, 0.1], dtype=torch.float64), torch.tensor([0.01, 0.99], dtype=torch.float64)
    h = torch.sigmoid(params["W1"] @ x + params["b1"])
    o = torch.sigmoid(params["W2"] @ h + params["b2"])
    if o.requires_grad:
        o.retain_grad()
    return h, o, 0.5 * ((o - t) ** 2).sum()


def torch_steps(make_optimizer, steps: int, frozen=("b1", "b2")) -> list:
    """Each step: (params before, their gradients, dE/do), then the params after the last."""
    params = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in PARAMS.items()}
    opt = make_optimizer([p for n, p in params.items() if n not in frozen])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        for p in params.values():
            p.grad = None
        _, o, E = torch_net(params)
        E.backward()
        out.append(({n: p.detach().clone().numpy() for n, p in params.items()},
                    {n: p.grad.clone().numpy() for n, p in params.items()}, o.grad.clone().numpy()))
        opt.step()
    out.append(({n: p.detach().numpy() for n, p in params.items()}, None, None))
    return out


def run(tmp_path, spec: str, *args) -> str:
    path = tmp_path / "net.nn"
    path.write_text(spec)
    result = CliRunner().invoke(main, ["run", str(path), "--precision", "15", *args])
    assert result.exit_code == 0, result.output
    return result.output


def numbers(block: str, label: str) -> np.ndarray:
    """The numbers printed on `label`'s row (and the rows continuing it) in one block of output."""
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"  {re.escape(label)} (scalar|\[)", line))
    text = re.sub(r"^.*?(scalar|\[[\d, ]*\])", "", lines[start])
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        text += line
    return np.array([float(n) for n in NUMBER.findall(text)])


def test_one_run_prints_values_gradients_at_the_given_weights_then_the_step_then_after(tmp_path):
    out = run(tmp_path, NET.format(optimizer="sgd(lr=0.5)", epochs=1, freeze=", freeze=[b1, b2]"))
    blocks = out.split("\n\n")
    titles = [b.splitlines()[0] for b in blocks]
    assert titles[:2] == ["values", "gradients of E"] and titles[-1] == "values"
    assert any(t.startswith("step 1 of sgd(lr=0.5") for t in titles)
    (before, grads, d_o), (after, _, _) = torch_steps(lambda p: torch.optim.SGD(p, lr=0.5), 1)
    given = {n: torch.tensor(v, dtype=torch.float64) for n, v in PARAMS.items()}
    h, o, E = torch_net(given)
    np.testing.assert_allclose(numbers(blocks[0], "o"), o.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(numbers(blocks[0], "E"), [E.item()], rtol=1e-13)
    for n in ("W2", "W1", "b1"):  # b1 is frozen, and its gradient still printed
        np.testing.assert_allclose(numbers(blocks[1], f"dE/d{n}"), grads[n].ravel(), rtol=1e-12)
    np.testing.assert_allclose(numbers(blocks[1], "dE/do"), d_o, rtol=1e-12)
    step = next(b for b in blocks if b.startswith("step 1"))
    for n in ("W1", "W2"):
        np.testing.assert_allclose(numbers(step, n), before[n].ravel(), rtol=1e-13)
        np.testing.assert_allclose(numbers(step, f"dE/d{n}"), grads[n].ravel(), rtol=1e-12)
        np.testing.assert_allclose(numbers(step, f"{n} after"), after[n].ravel(), rtol=1e-13)
    assert "b1 after" not in step and "frozen, so left as they were: `b1`, `b2`" in out
    _, _, E_after = torch_net({n: torch.tensor(v) for n, v in after.items()})
    np.testing.assert_allclose(numbers(blocks[-1], "E"), [E_after.item()], rtol=1e-13)
    trained = next(b for b in blocks if b.startswith("after 1 epoch of training, at the trained weights"))
    np.testing.assert_allclose(numbers(trained, "loss"), [E_after.item()], rtol=1e-12)  # not the step's own loss


@pytest.mark.parametrize("optimizer, make, steps, freeze", [
    ("sgd(lr=0.5)", lambda p: torch.optim.SGD(p, lr=0.5), 3, ("b1", "b2")),
    ("sgd(lr=0.3, momentum=0.9)", lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9), 4, ("b2",)),
    ("adam(lr=0.1)", lambda p: torch.optim.Adam(p, lr=0.1), 5, ()),
])
def test_each_step_of_a_short_run_matches_torch(optimizer, make, steps, freeze):
    spec = NET.format(optimizer=optimizer, epochs=steps, freeze=f", freeze=[{', '.join(freeze)}]" if freeze else "")
    model = graphdsl.compile(spec)
    history = model.train()
    want = torch_steps(make, steps, freeze)
    assert [n for n, _ in history.updates] == list(range(1, steps + 1))
    for (number, params), (before, grads, _), (after, _, _) in zip(history.updates, want, want[1:]):
        assert set(params) == set(PARAMS) - set(freeze)
        for n, (old, grad, new) in params.items():
            np.testing.assert_allclose(old, before[n], rtol=1e-12, err_msg=f"step {number} {n}")
            np.testing.assert_allclose(grad, grads[n], rtol=1e-11, atol=1e-16, err_msg=f"step {number} d{n}")
            np.testing.assert_allclose(new, after[n], rtol=1e-12, err_msg=f"step {number} {n} after")
    for n in freeze:
        np.testing.assert_array_equal(model.params[n], PARAMS[n])


def test_a_long_run_prints_its_trained_params_not_each_step(tmp_path):
    out = run(tmp_path, NET.format(optimizer="sgd(lr=0.5)", epochs=6, freeze=""))
    assert "trained params" in out and "step 1 of" not in out


def test_the_trace_holds_the_deltas_and_the_frozen_gradients(tmp_path):
    run(tmp_path, NET.format(optimizer="sgd(lr=0.5)", epochs=2, freeze=", freeze=[b1]"), "--trace",
        str(tmp_path / "t.csv"))
    frame = pd.read_csv(tmp_path / "t.csv")
    want = torch_steps(lambda p: torch.optim.SGD(p, lr=0.5), 2, ("b1",))
    for i, (before, grads, d_o) in enumerate(want[:2]):
        np.testing.assert_allclose(frame.loc[i, ["dE/do[0]", "dE/do[1]"]].to_numpy(float), d_o, rtol=1e-12)
        np.testing.assert_allclose(frame.loc[i, ["dE/db1[0]", "dE/db1[1]"]].to_numpy(float), grads["b1"], rtol=1e-12)
        np.testing.assert_allclose(frame.loc[i, ["b2[0]", "b2[1]"]].to_numpy(float), before["b2"], rtol=1e-13)
    assert "b1[0]" not in frame.columns  # frozen: not a trained param


def test_epochs_0_trains_nothing_and_answers_at_loaded_weights(tmp_path):
    spec = NET.format(optimizer="sgd(lr=0.5)", epochs=0, freeze="")
    model = graphdsl.compile(spec)
    history = model.train()
    assert history.epoch == [] and history.updates == []
    for n, v in PARAMS.items():
        np.testing.assert_array_equal(model.params[n], v)
    saved = {n: np.asarray(v) * 2 for n, v in PARAMS.items()}
    np.savez(tmp_path / "w.npz", **saved)
    out = run(tmp_path, spec.replace("epochs=0", "epochs=30"), "--load", str(tmp_path / "w.npz"), "--set", "epochs=0")
    assert "after 0 epochs of training" in out
    _, o, E = torch_net({n: torch.tensor(v, dtype=torch.float64) for n, v in saved.items()})
    blocks = out.split("\n\n")
    np.testing.assert_allclose(numbers(blocks[0], "o"), o.numpy(), rtol=1e-13)   # before minimize
    np.testing.assert_allclose(numbers(blocks[-1], "E"), [E.item()], rtol=1e-13)  # after: the same weights


@pytest.mark.parametrize("freeze, message", [
    ("x", "`freeze` names params, but `x` is an input"),
    ("[W1, nope]", "`freeze` names params, but `nope` is not defined"),
    ("2", "`freeze` takes params by name"),
])
def test_freeze_names_params(freeze, message):
    with pytest.raises(graphdsl.SpecError, match=re.escape(message)):
        graphdsl.compile(NET.format(optimizer="sgd(lr=0.5)", epochs=1, freeze=f", freeze={freeze}"))


def check(tmp_path, spec: str):
    path = tmp_path / "net.nn"
    path.write_text(spec)
    return CliRunner().invoke(main, ["check", str(path)])


def test_check_checks_the_trained_loss_where_no_grad_statement_names_one(tmp_path):
    spec = "\n".join(line for line in NET.splitlines() if not line.startswith("grad"))
    result = check(tmp_path, spec.format(optimizer="sgd(lr=0.5)", epochs=1, freeze=""))
    assert result.exit_code == 0 and "ok (gradients of E agree with central differences)" in result.output
    assert "dE/dW1" in result.output


def test_check_checks_at_the_first_example_of_the_specs_data(tmp_path):
    spec = ("input x[2]\ntarget y\nparam w[2] = [0.5, -0.3]\nparam b = 0.1\np = sigmoid(w x + b)\n"
            "L = bce(p, y)\ndata x = [[1, 2], [3, 4]], y = [1, 0]\nminimize L using sgd(lr=0.1)\n")
    result = check(tmp_path, spec)
    assert result.exit_code == 0, result.output
    assert "agree with central differences at the first example of the spec's data" in result.output


def test_the_docs_one_run_homework_prints_values_gradients_and_the_step(tmp_path):
    """docs/language.md's 2-2-1 homework, as a student copies it: one run, exit 0, every number
    PyTorch's (float64, one optim.SGD step)."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text(encoding="utf-8")
    spec = next(block for block in re.findall(r"```nn\n(.*?)```", docs, re.S) if "minimize L using sgd" in block)
    out = run(tmp_path, spec)
    P = {"W": [[2.5, 1], [-1.5, -3]], "b": [1.5, 2], "v": [1, 0.5], "c": -1.0}
    P = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in P.items()}

    def loss():
        h = torch.sigmoid(P["W"] @ torch.tensor([0.0, 1.0], dtype=torch.float64) + P["b"])
        p = torch.sigmoid(P["v"] @ h + P["c"])
        return h, p, -torch.log(p)

    h, p, L = loss()
    L.backward()
    blocks = out.split("\n\n")
    np.testing.assert_allclose(numbers(blocks[0], "h"), h.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(numbers(blocks[0], "L"), [L.item()], rtol=1e-13)
    np.testing.assert_allclose(numbers(blocks[1], "dL/dW"), P["W"].grad.numpy().ravel(), rtol=1e-12)
    torch.optim.SGD(P.values(), lr=0.1).step()
    step = next(b for b in blocks if b.startswith("step 1 of sgd(lr=0.1"))
    for n, t in P.items():
        np.testing.assert_allclose(numbers(step, f"{n} after"), t.detach().numpy().ravel(), rtol=1e-13)
    np.testing.assert_allclose(numbers(blocks[-1], "L"), [loss()[2].item()], rtol=1e-13)


# A minibatch classifier with momentum, and a trace of shown values, for the interpreted/compiled pair.
MINIBATCH = OPTIMIZED.replace("epochs={epochs}, batch=3", "epochs=2, batch={batch}")


@pytest.mark.parametrize("spec", [
    NET.format(optimizer="sgd(lr=0.5)", epochs=3, freeze=", freeze=[b1, b2]"),
    NET.format(optimizer="adam(lr=0.05)", epochs=4, freeze=""),
    MINIBATCH.format(optimizer="sgd(lr=0.3, momentum=0.9)", batch=3),   # a short last batch
    MINIBATCH.format(optimizer="adam(lr=0.1)", batch="all"),
    # the optimizers, schedules and clipping of tests/test_optimizers.py, at their short-run size
    MINIBATCH.format(optimizer="sgd(lr=0.3, momentum=0.9, nesterov=1), clip=0.3", batch=3),
    MINIBATCH.format(optimizer="rmsprop(lr=0.05, momentum=0.5, centered=1, weight_decay=0.01), "
                               "schedule=step(size=1, gamma=0.5, per=step)", batch=3),
    MINIBATCH.format(optimizer="adamw(lr=0.1), schedule=cosine(warmup=1, per=step), clip=0.2", batch=3),
    MINIBATCH.format(optimizer="adagrad(lr=0.2, lr_decay=0.1, initial_accumulator_value=0.1), "
                               "schedule=linear(warmup=1, end=0.5)", batch=3),
], ids=["mazur-sgd", "mazur-adam", "minibatch-momentum", "fullbatch-adam", "nesterov-clip", "rmsprop-step",
        "adamw-warmup-cosine-clip", "adagrad-warmup-linear"])
def test_a_short_run_is_interpreted_and_equals_the_compiled_run(spec, monkeypatch):
    from graphdsl.training.trainer import Trainer

    compiled_model = graphdsl.compile(spec, engine="numba")  # the jitted loop runs
    compiled = compiled_model.train(trace=True)

    def no_compiling(self, tracing):
        raise AssertionError("a short run compiled its loop")
    monkeypatch.setattr(Trainer, "compiled", no_compiling)
    model = graphdsl.compile(spec)
    history = model.train(trace=True)
    assert history.trace_columns == compiled.trace_columns
    np.testing.assert_allclose(history.trace, compiled.trace, rtol=1e-12, atol=1e-15)
    for key in compiled.history:
        np.testing.assert_allclose(history[key], compiled[key], rtol=1e-12, err_msg=key)
    for name, value in compiled_model.params.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-12, err_msg=name)


def test_a_param_shows_before_and_after_minimize_when_the_inputs_live_in_the_data(tmp_path):
    """`show w` needs no input: it prints at the given weight and at the trained one, which two
    SGD steps on mean((w x - y)^2) over x = [1, 2], y = [2, 4] from 0.5 make 1.25, then 1.625."""
    out = run(tmp_path, "input x\ntarget y\nparam w = 0.5\nL = (w x - y)^2\nshow w\n"
                        "data x = [1, 2], y = [2, 4]\nminimize L using sgd(lr=0.1), epochs=2\nshow w\n")
    blocks = out.split("\n\n")
    assert numbers(blocks[0], "w") == pytest.approx([0.5]) and numbers(blocks[-1], "w") == pytest.approx([1.625])
    assert "not printed" not in out
