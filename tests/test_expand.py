"""Settings and `for` blocks (graphdsl/expand.py): values, overrides, loop copies, sizes, errors.

Everything here runs on the NumPy interpreter (engine="numpy"): expanding and lowering a spec
compiles nothing, so these tests are fast. Expected values are worked out by hand or with NumPy.
"""
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphdsl
from graphdsl import DataError, SpecError
from graphdsl.cli import open_spec, settings_from
from graphdsl.frontend.expand import parse_override

MLP = Path(__file__).resolve().parent.parent / "specs" / "mlp.nn"


def spec(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def build(text: str, **kw) -> graphdsl.Model:
    return graphdsl.compile(spec(text), engine="numpy", **kw)


def shapes(model) -> dict:
    return {name: value.shape for name, value in model.params.items()}


def error(text: str, *, filename="net.nn", **kw) -> SpecError:
    with pytest.raises(SpecError) as info:
        graphdsl.compile(spec(text), filename=filename, engine="numpy", **kw)
    return info.value


LAYERS = """
    setting n = 3
    setting hidden = [4, 2]
    input x[n]
    a = 2 * x
    for k in hidden
        param W[k, size(a)] = ones()
        param b[k] = k
        a = tanh(W a + b)
    end
    out = sum(a)
    show out
"""


def layers_by_hand(x, hidden):
    """The network LAYERS describes, in NumPy: all-ones weights, biases equal to the width."""
    a = 2 * np.asarray(x, dtype=float)
    for k in hidden:
        a = np.tanh(np.ones((k, a.size)) @ a + k)
    return a


# -- settings -------------------------------------------------------------------------------


def test_scalar_and_list_settings_are_recorded_and_replace_their_uses():
    model = build(LAYERS)
    assert model.spec.settings == {"n": 3.0, "hidden": (4.0, 2.0)}
    assert shapes(model) == {"W.0": (4, 3), "b.0": (4,), "W.1": (2, 4), "b.1": (2,)}
    assert np.array_equal(model.params["b.0"], [4, 4, 4, 4])
    assert np.array_equal(model.params["b.1"], [2, 2])
    x = np.array([0.1, -0.2, 0.05])
    values = model.forward(x=x)
    np.testing.assert_allclose(values["a.1"], layers_by_hand(x, [4, 2]), rtol=1e-14)
    np.testing.assert_allclose(values["out"], layers_by_hand(x, [4, 2]).sum(), rtol=1e-14)


def test_a_setting_replaces_numbers_in_literals_kwargs_and_training_options():
    model = build("""
        setting s = 0.5
        setting ax = -1
        setting lr = 0.25
        setting epochs = 7
        input A[2, 3] = [[1, 2, 3], [4, 5, 6]]
        param w[2] = s
        r = sum(A, axis=ax)
        L = sum(w * r)
        minimize L using sgd(lr=lr), epochs=epochs
    """)
    assert np.array_equal(model.params["w"], [0.5, 0.5])
    np.testing.assert_array_equal(model.forward()["r"], [6, 15])
    assert model.spec.training.settings["lr"] == 0.25
    assert model.spec.training.options["epochs"] == 7


def test_a_negative_setting_is_a_literal():
    model = build("setting s = -2\ninput x = s\nshow x\n")
    assert model.forward()["x"] == -2.0


@pytest.mark.parametrize("given, expected", [
    ({"n": 2}, {"n": 2.0, "hidden": (4.0, 2.0)}),
    ({"n": 2.0, "hidden": [5]}, {"n": 2.0, "hidden": (5.0,)}),
    ({"hidden": (3, 3, 1)}, {"n": 3.0, "hidden": (3.0, 3.0, 1.0)}),
    ({"hidden": np.array([6, 1])}, {"n": 3.0, "hidden": (6.0, 1.0)}),
    ({"hidden": 7}, {"n": 3.0, "hidden": (7.0,)}),       # one number for a list: a one-entry list
    ({"n": [4]}, {"n": 4.0, "hidden": (4.0, 2.0)}),      # a one-entry list for a number
])
def test_python_overrides_of_every_type(given, expected):
    model = build(LAYERS, settings=given)
    assert model.spec.settings == expected
    width = int(expected["n"])
    x = np.linspace(-0.3, 0.3, width)
    np.testing.assert_allclose(model.forward(x=x)["out"], layers_by_hand(x, [int(k) for k in expected["hidden"]]).sum(),
                               rtol=1e-14)
    last = f"W.{len(expected['hidden']) - 1}"
    assert model.params[last].shape[0] == int(expected["hidden"][-1])


@pytest.mark.parametrize("text, expected", [
    ("0.01", (0.01,)),
    ("256,64", (256.0, 64.0)),
    (" 3 , 4 ", (3.0, 4.0)),
    ("1e-3", (0.001,)),
    ("", ()),
    ("adam", "adam"),
    (" all ", "all"),
])
def test_parse_override_reads_command_line_values(text, expected):
    assert parse_override(text) == expected


def test_a_list_given_for_a_number_setting_is_refused():
    with pytest.raises(DataError, match=r"setting `n` is a number, but 2 values were given for it"):
        build(LAYERS, settings={"n": [1, 2]})


def test_a_word_given_for_a_setting_is_refused():
    with pytest.raises(DataError, match=r"setting `n` takes numbers, not `abc`"):
        build(LAYERS, settings={"n": "abc"})


def test_an_unknown_setting_is_refused_and_the_known_ones_listed():
    with pytest.raises(DataError) as info:
        build(LAYERS, settings={"nope": 1})
    assert str(info.value) == "the spec has no setting `nope`; its settings are n, hidden"


def test_an_override_that_makes_a_bad_size_is_located_at_the_use():
    err = error(LAYERS, settings={"n": 2.5})
    assert str(err) == ("net.nn:3:9: error: a size must be a whole number of at least 1, not 2.5\n"
                        "    input x[n]\n"
                        "            ^")


def test_overrides_reach_optimizer_settings_and_options_that_are_not_settings():
    text = """
        setting lr = 0.5
        input x = 1
        target t = 2
        param w = 0
        L = mse(w x, t)
        minimize L using sgd(lr=lr)
    """
    train = build(text, settings={"lr": 0.25, "momentum": 0.9, "batch": 2, "epochs": 3}).spec.training
    assert train.settings == {"lr": 0.25, "momentum": 0.9, "weight_decay": 0.0, "nesterov": 0.0}
    assert train.options["batch"] == 2 and train.options["epochs"] == 3
    train = build(text, settings={"optimizer": "adam", "beta2": 0.99}).spec.training
    assert train.optimizer == "adam"
    assert train.settings == {"lr": 0.5, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.0}
    with pytest.raises(DataError, match=r"`epochs` must be a whole number of at least 0, not -2"):
        build(text, settings={"epochs": -2})
    with pytest.raises(DataError, match=r"`bogus` is not a setting, an option of `minimize` or a setting of `sgd`"):
        build(text, settings={"bogus": 1})


# -- errors in settings ---------------------------------------------------------------------


def test_a_setting_given_twice():
    err = error("setting a = 1\nsetting a = 2\ninput x = a\n")
    assert str(err) == ("net.nn:2:9: error: setting `a` is given twice\n"
                        "    setting a = 2\n"
                        "            ^\n"
                        "  hint: give each setting once")


@pytest.mark.parametrize("value, caret", [
    ("1 + 2", "^~~~~"),
    ("y", "^"),
    ("[1, [2]]", "^~~~~~~~"),
    ("[1, y]", "^~~~~~"),
    ("sqrt(4)", "^~~~~~~"),
])
def test_a_setting_must_be_a_literal_number_or_list(value, caret):
    err = error(f"input y = 1\nsetting a = {value}\ninput x = a\n")
    assert str(err) == ("net.nn:2:13: error: setting `a` must be a number or a list of numbers, "
                        "as in `= 0.1` or `= [64, 32]`\n"
                        f"    setting a = {value}\n"
                        f"                {caret}")


def test_a_setting_and_a_declaration_may_not_share_a_name():
    with pytest.raises(SpecError, match=r"`x`"):
        build("setting x = 2\ninput x = 5\ny = 3 * x\nshow y\n")


def test_a_for_block_may_not_define_a_settings_name():
    err = error("setting hidden = [2]\nsetting a = 5\ninput x = 1\nfor n in hidden\n    a = x + 1\nend\n"
                "y = a * 10\nshow y\n")
    assert "`a` is already a setting" in str(err) and "net.nn:5:5" in str(err)


# -- for blocks: naming, the latest-copy rule, zero iterations -------------------------------


def test_loop_copies_are_numbered_and_the_latest_copy_is_used_inside_the_block():
    model = build("""
        setting h = [1, 2, 3]
        input x = 1
        a = 2 * x
        for k in h
            a = k a + 1
        end
        show a
    """)
    values = model.forward(x=1.5)
    # a = 3; a.0 = 1*3 + 1; a.1 = 2*a.0 + 1; a.2 = 3*a.1 + 1
    assert values["a"] == 3.0
    assert values["a.0"] == 4.0
    assert values["a.1"] == 9.0
    assert values["a.2"] == 28.0
    # after the block, `a` means the last copy
    assert model.spec.requests[0].names == ("a.2",)


def test_a_name_defined_twice_in_one_block_gets_a_copy_per_definition():
    model = build("""
        setting h = [1, 2]
        input x = 1
        for k in h
            y = k x
            y = 2 y
        end
        show y
    """)
    values = model.forward(x=1.0)
    assert [values[f"y.{i}"] for i in range(4)] == [1.0, 2.0, 2.0, 4.0]
    assert model.spec.requests[0].names == ("y.3",)


def test_copies_count_on_across_blocks_and_after_a_block_a_name_means_its_last_copy():
    model = build("""
        setting first = [2]
        setting second = [3, 1]
        input x[2] = [1, 2]
        h = 1 * x
        for n in first
            param W[n, size(h)] = ones()
            h = W h
        end
        for n in second
            param W[n, size(h)] = ones()
            h = W h
        end
        L = sum(h)
        grad L wrt W
    """)
    assert shapes(model) == {"W.0": (2, 2), "W.1": (3, 2), "W.2": (1, 3)}
    # [1, 2] -> [3, 3] -> [6, 6, 6] -> [18]
    assert model.forward()["L"] == 18.0
    assert model.spec.requests[0].names == ("W.2",)
    assert model.loss == "L"
    # dL/dW.2 = h.1' = [6, 6, 6]
    np.testing.assert_array_equal(model.grad()["W.2"], [[6.0, 6.0, 6.0]])


def test_grad_and_jacobian_after_a_block_name_the_last_copy():
    model = build("""
        setting h = [1, 2]
        input x = 1
        for k in h
            y = k x
        end
        grad y wrt x
        jacobian y wrt x
    """)
    assert model.loss == "y.1"
    assert model.grad(x=3.0)["x"] == 2.0
    assert model.jacobian("y.1", "x", x=3.0) == 2.0


def test_names_outside_blocks_keep_any_order_definitions():
    model = build("""
        setting h = [2, 3]
        input x = 1
        for k in h
            y = k z
        end
        z = x + 1
        show y
    """)
    values = model.forward(x=2.0)
    assert values["y.0"] == 6.0 and values["y.1"] == 9.0


def test_a_scalar_setting_runs_a_block_once():
    model = build("setting h = 3\ninput x = 1\nfor k in h\n    y = k x\nend\nshow y\n")
    assert model.forward(x=2.0)["y.0"] == 6.0
    assert model.spec.requests[0].names == ("y.0",)


def test_a_loop_variable_sets_sizes_and_values():
    model = build("""
        setting h = [2, 3]
        for k in h
            param w[k] = k
        end
        L = sum(w)
    """)
    assert np.array_equal(model.params["w.0"], [2.0, 2.0])
    assert np.array_equal(model.params["w.1"], [3.0, 3.0, 3.0])
    assert model.forward()["L"] == 9.0  # `w` after the block is w.1


@pytest.mark.parametrize("given", [[], ()])
def test_a_block_over_an_empty_list_runs_zero_times(given):
    model = build(LAYERS, settings={"hidden": given})
    assert model.params == {}
    assert model.spec.settings["hidden"] == ()
    x = np.array([0.1, -0.2, 0.05])
    values = model.forward(x=x)
    # `a` after an empty block is the definition before it
    np.testing.assert_allclose(values["out"], 2 * x.sum(), rtol=1e-15)
    assert not any("." in name for name in values)


def test_a_name_only_the_block_defines_is_unknown_after_zero_iterations():
    err = error("setting h = [1]\ninput x = 1\nfor k in h\n    y = k x\nend\nz = y\nshow z\n", settings={"h": []})
    assert "unknown name `y`" in str(err)
    assert str(err).startswith("net.nn:6:5: error:")


def test_the_empty_list_override_on_mlp_gives_softmax_regression():
    model = graphdsl.load(MLP, engine="numpy", settings={"hidden": []})
    assert shapes(model) == {"V": (10, 64), "c": (10,)}


@pytest.mark.parametrize("hidden, expected", [
    ([64], {"W.0": (64, 64), "b.0": (64,), "V": (10, 64), "c": (10,)}),
    ([16, 8], {"W.0": (16, 64), "b.0": (16,), "W.1": (8, 16), "b.1": (8,), "V": (10, 8), "c": (10,)}),
    ([5, 4, 3], {"W.0": (5, 64), "b.0": (5,), "W.1": (4, 5), "b.1": (4,), "W.2": (3, 4), "b.2": (3,),
                 "V": (10, 3), "c": (10,)}),
])
def test_hidden_layers_of_mlp(hidden, expected):
    model = graphdsl.load(MLP, engine="numpy", settings={"hidden": hidden})
    assert shapes(model) == expected


@pytest.mark.parametrize("given, expected", [
    ("hidden=16,8", {"W.0": (16, 64), "b.0": (16,), "W.1": (8, 16), "b.1": (8,), "V": (10, 8), "c": (10,)}),
    ("hidden=32", {"W.0": (32, 64), "b.0": (32,), "V": (10, 32), "c": (10,)}),
    ("hidden=", {"V": (10, 64), "c": (10,)}),
    ("features=4", {"W.0": (64, 4), "b.0": (64,), "V": (10, 64), "c": (10,)}),
])
def test_set_on_the_command_line_reshapes_mlp(given, expected):
    """`graphdsl run specs/mlp.nn --set ...` goes through settings_from and open_spec."""
    assert shapes(open_spec(str(MLP), settings=settings_from([given]))) == expected


@pytest.mark.parametrize("default", ["", " = [1, 2]"])
def test_an_alias_of_an_input_still_takes_the_inputs_value(default):
    """`a = x` before a `for` block is the usual way to start a stack of layers (specs/mlp.nn)."""
    model = build(f"input x[2]{default}\na = x\ns = sum(a)\n")
    assert model.forward(x=[3.0, 4.0])["s"] == 7.0


def test_mlp_with_an_alias_before_its_block_runs_forward():
    model = graphdsl.load(MLP, engine="numpy", settings={"hidden": [3]})
    x = np.linspace(0, 1, 64)
    values = model.forward(x=x, k=2)
    W, b, V, c = (model.params[n] for n in ("W.0", "b.0", "V", "c"))
    z = V @ (1 / (1 + np.exp(-(W @ x + b)))) + c
    np.testing.assert_allclose(values["z"], z, rtol=1e-13)
    np.testing.assert_allclose(values["L"], np.log(np.exp(z).sum()) - z[2], rtol=1e-13)


# -- for errors ------------------------------------------------------------------------------


def test_for_over_a_name_that_is_not_a_setting():
    err = error("setting h = [1, 2]\ninput x = 1\nfor k in x\n    y = x\nend\n")
    assert str(err) == ("net.nn:3:10: error: `for` runs over a list setting, and `x` is not a setting\n"
                        "    for k in x\n"
                        "             ^\n"
                        "  hint: declare it first, as in `setting x = [64, 32]`")


def test_for_over_an_unknown_name():
    err = error("input x = 1\nfor k in sizes\n    y = x\nend\n")
    assert str(err).startswith("net.nn:2:10: error: `for` runs over a list setting, and `sizes` is not a setting\n")


def test_a_later_definition_of_a_block_name():
    err = error("setting h = [1, 2]\ninput x = 1\nfor k in h\n    y = k x\nend\ny = 3\n")
    assert str(err) == ("net.nn:6:1: error: `y` is defined in the `for` block on line 3; "
                        "a later definition would hide it\n"
                        "    y = 3\n"
                        "    ^\n"
                        "  hint: give this value another name")


def test_a_loop_variable_may_not_hide_a_setting():
    err = error("setting h = [2, 3]\nsetting k = 1\ninput x = 1\nfor k in h\n    y = k x\nend\n")
    assert str(err) == ("net.nn:4:5: error: the loop variable `k` hides the setting of the same name\n"
                        "    for k in h\n"
                        "        ^\n"
                        "  hint: choose another name")


def test_only_declarations_and_assignments_go_inside_a_block():
    err = error("setting h = [1, 2]\ninput x = 1\nfor k in h\n    y = k x\n    show y\nend\n")
    assert str(err).startswith("net.nn:5:10: error: ")


# -- sizes -----------------------------------------------------------------------------------


def test_sizes_use_settings_size_and_arithmetic():
    model = build("""
        setting n = 2
        input x[2 * n + 1]
        param W[3, n] = ones()
        input y[n * n - 1, size(x)]
        input z[size(W) + size(x) - 1]
        input s
        input u[size(s)]
        show x
    """)
    g = model.spec.graph
    shape = lambda name: g.nodes[g.names[name]].shape  # noqa: E731
    assert shape("x") == (5,)
    assert shape("y") == (3, 5)
    assert shape("z") == (6 + 5 - 1,)   # size of a matrix: all its entries
    assert shape("s") == ()             # an input with no shape is a scalar
    assert shape("u") == (1,)


@pytest.mark.parametrize("size, message, caret", [
    ("n - 2", "a size must be a whole number of at least 1, not 0", "^~~~~"),
    ("n - 3", "a size must be a whole number of at least 1, not -1", "^~~~~"),
    ("n / 2", "a size must be a whole number, a setting, `size(x)` or arithmetic on these", "^~~~~"),
    ("h", "a size must be a whole number, a setting, `size(x)` or arithmetic on these", "^"),
    ("2 n", "a size must be a whole number, a setting, `size(x)` or arithmetic on these", "^~~"),
])
def test_bad_sizes(size, message, caret):
    err = error(f"setting n = 2\nsetting h = [2, 3]\ninput x[{size}]\n")
    assert str(err) == (f"net.nn:3:9: error: {message}\n"
                        f"    input x[{size}]\n"
                        f"            {caret}")
