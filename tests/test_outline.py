"""Repeated loop nests made one function each (backend/outline.py): a deep network of one width
compiles each distinct nest once, and trains exactly as before."""
import numpy as np
import pytest

import graphdsl
from graphdsl.backend import codegen, train_loop
from graphdsl.training.trainer import Trainer

MLP = """\
setting hidden = [8, 8, 8]
input x[5]
target k
a = x
for n in hidden
    param W[n, size(a)] = xavier(seed=1)
    param b[n] = uniform(low=-0.1, high=0.1, seed=2)
    a = sigmoid(W a + b)
end
param V[3, size(a)] = xavier(seed=3)
z = V a
L = softmax_ce(z, k)
data x = [[0.1, 0.2, -0.3, 0.5, 1], [1, -1, 0.5, 0.2, 0], [0.3, 0.3, 0.3, -0.6, 2], [-1, 0, 1, 2, -2]], k = [0, 2, 1, 2]
minimize L using sgd(lr=0.5, momentum=0.5), batch=2, epochs=2
"""


def loop_source(depth: int) -> str:
    model = graphdsl.compile(MLP, settings={"hidden": [8] * depth})
    trainer = Trainer(model, model.spec.training)
    return codegen.module([train_loop.train_loop(trainer.plan)], "float64")


def test_each_distinct_nest_is_one_function_however_deep():
    shallow, deep = loop_source(6), loop_source(10)
    names = lambda src: {line.split("(")[0][4:] for line in src.splitlines() if line.startswith("def n_")}  # noqa: E731
    assert names(shallow) and names(shallow) == names(deep)
    train = deep[deep.index("def train("):]
    assert all(f"{name}(" in train for name in names(deep))


def test_the_training_loop_of_layers_of_one_shape_is_as_long_however_deep():
    """The layers' statements are one loop over the layers (backend/roll.py), reading each
    layer's buffers as a row of a stack and its params as a slice of theta: the training loop's
    code, and so its compile time, does not grow with depth."""
    train = lambda src: src[src.index("def train("):]  # noqa: E731
    shallow, deep = train(loop_source(6)), train(loop_source(20))
    assert len(shallow.splitlines()) == len(deep.splitlines())
    # the first layer reads x[5], not a vector of 8: the other layers are one loop
    assert "for layer in range(19):" in deep and "for layer in range(5):" in shallow


def test_a_network_of_two_layers_keeps_every_nest_inline():
    assert "def n_" not in loop_source(2)


@pytest.mark.parametrize("depth", [3, 5])
def test_an_outlined_loop_trains_as_the_interpreter_does(depth):
    reference = graphdsl.compile(MLP, settings={"hidden": [8] * depth})
    history = reference.train(trace=True)                    # 4 steps: interpreted
    model = graphdsl.compile(MLP, settings={"hidden": [8] * depth}, engine="numba")
    compiled = model.train(trace=True)                        # the jitted loop, nests outlined
    np.testing.assert_allclose(compiled.trace, history.trace, rtol=1e-11, atol=1e-14)
    for name, value in reference.params.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-11, err_msg=name)


def layered_spec(widths: list, acts: list, optimizer: str, batch: str) -> str:
    """Hidden layers of the given widths and activations, written one by one (no `for` block):
    runs of layers alike roll into loops, others stay as they are."""
    lines, a, size = ["input x[5]", "target k"], "x", 5
    for i, (n, act) in enumerate(zip(widths, acts)):
        lines += [f"param W{i}[{n}, {size}] = xavier(seed={i + 1})",
                  f"param b{i}[{n}] = uniform(low=-0.2, high=0.2, seed={i + 50})", f"h{i} = {act}(W{i} {a} + b{i})"]
        a, size = f"h{i}", n
    lines += [f"param V[3, {size}] = xavier(seed=99)", f"L = softmax_ce(V {a}, k)",
              "data x = [[0.1, 0.2, -0.3, 0.5, 1], [1, -1, 0.5, 0.2, 0], [0.3, 0.3, 0.3, -0.6, 2], "
              "[-1, 0, 1, 2, -2]], k = [0, 2, 1, 2]",
              f"minimize L using {optimizer}, batch={batch}, epochs={4 if batch == 'all' else 2}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("widths, acts, optimizer, batch", [
    ([6, 6, 6, 6, 4, 4, 4, 4, 6], ["tanh"] * 4 + ["relu"] * 4 + ["sigmoid"], "sgd(lr=0.3)", "2"),
    ([5, 7, 7, 7, 7, 5], ["sigmoid", "tanh", "tanh", "tanh", "tanh", "relu"], "sgd(lr=0.2, momentum=0.9)", "all"),
    ([4, 4, 4, 4, 4, 4, 4], ["tanh", "relu"] * 3 + ["tanh"], "adam(lr=0.05)", "2"),  # a run of pairs
    ([3, 3, 3, 3, 3, 3], ["sigmoid"] * 6, "sgd(lr=1.0)", "all"),
])
def test_rolled_layers_of_mixed_shapes_train_as_the_interpreter_does(widths, acts, optimizer, batch):
    """Networks whose runs of alike layers sit among layers of other widths and activations, plain
    (fused into the products), momentum and Adam, minibatch and full batch: the compiled loop, its
    runs rolled into loops, ends at the interpreter's weights."""
    text = layered_spec(widths, acts, optimizer, batch)
    reference = graphdsl.compile(text, filename="reference.nn")
    reference.train()                                              # 4 steps: interpreted
    model = graphdsl.compile(text, filename="compiled.nn", engine="numba")
    model.train()                                                  # the jitted loop
    assert "for layer in range(" in codegen.module([train_loop.train_loop(Trainer(model, model.spec.training).plan)],
                                                    "float64"), "nothing rolled: the case tests nothing"
    for name, value in reference.params.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-11, atol=1e-14, err_msg=name)
