"""Tests for graphdsl.training.records: trace and epoch CSVs, weight files, History and plots.

Expected values are written out by hand or computed independently (the csv module,
pandas, np.load, raw bytes), never by the code under test.
"""
import csv
import os
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from graphdsl.errors import DataError
from graphdsl.training.records import (EpochLog, History, TraceWriter, flat_names, grad_names,
                              load_weights, plot_history, read_trace, save_weights)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- column names -------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape, expected", [
    ("L", (), ["L"]),
    ("b", (3,), ["b[0]", "b[1]", "b[2]"]),
    ("W", (2, 3), ["W[0,0]", "W[0,1]", "W[0,2]", "W[1,0]", "W[1,1]", "W[1,2]"]),
    ("T", (2, 1, 2), ["T[0,0,0]", "T[0,0,1]", "T[1,0,0]", "T[1,0,1]"]),
    ("W.0", (1, 2), ["W.0[0,0]", "W.0[0,1]"]),
    ("b.12", (2,), ["b.12[0]", "b.12[1]"]),
    ("e", (0,), []),
])
def test_flat_names(name, shape, expected):
    assert flat_names(name, shape) == expected


def test_flat_names_follow_c_order_of_ravel():
    # Entry k of the names must label entry k of value.ravel() (C order).
    value = np.arange(24).reshape(2, 3, 4)
    for column, flat in zip(flat_names("T", value.shape), value.ravel()):
        i, j, k = map(int, column[2:-1].split(","))
        assert value[i, j, k] == flat


@pytest.mark.parametrize("loss, name, shape, expected", [
    ("L", "W", (1, 2), ["dL/dW[0,0]", "dL/dW[0,1]"]),
    ("loss", "b.1", (2,), ["dloss/db.1[0]", "dloss/db.1[1]"]),
    ("L", "c", (), ["dL/dc"]),
])
def test_grad_names(loss, name, shape, expected):
    assert grad_names(loss, name, shape) == expected


# --- trace CSV ----------------------------------------------------------------------------

def awkward_floats(rng, n):
    """Floats from random bit patterns (every exponent, subnormals), plus the special values."""
    bits = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    values = bits.view(np.float64)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3]
    values[:len(specials)] = specials[:n]
    return values


def trace_rows(rng, first_step, n, width):
    steps = np.arange(first_step, first_step + n, dtype=np.float64)
    epochs = steps // 4
    values = awkward_floats(rng, n * width).reshape(n, width)
    return np.column_stack([steps, epochs, values])


def assert_bit_equal(got, expected):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    keep = ~np.isnan(expected)  # nan payloads need not survive, nan-ness must
    assert np.array_equal(got[keep].view(np.uint64), expected[keep].view(np.uint64))


def test_trace_round_trips_through_pandas_in_chunks(tmp_path):
    rng = np.random.default_rng(1)
    columns = flat_names("W.0", (2, 2)) + grad_names("L", "b", (1,)) + ["L"]
    path = tmp_path / "trace.csv"
    chunks = [trace_rows(rng, 0, 7, len(columns)), trace_rows(rng, 7, 1, len(columns)),
              trace_rows(rng, 8, 300, len(columns))]
    with TraceWriter(path, columns) as trace:
        for chunk in chunks:
            trace.append(chunk)
    expected = np.vstack(chunks)

    frame = pd.read_csv(path)
    assert list(frame.columns) == ["step", "epoch", *columns]
    assert frame["step"].dtype == np.int64 and frame["epoch"].dtype == np.int64
    assert frame["step"].tolist() == list(range(308))
    assert frame["epoch"].tolist() == [s // 4 for s in range(308)]
    for i, column in enumerate(columns):
        assert_bit_equal(frame[column].to_numpy(), expected[:, 2 + i])


def test_trace_writes_integers_and_special_values_as_text(tmp_path):
    path = tmp_path / "trace.csv"
    with TraceWriter(path, ["a", "b", "c", "d"]) as trace:
        trace.append(np.array([[3.0, 1.0, np.nan, np.inf, -np.inf, 0.1]]))
    assert path.read_text() == "step,epoch,a,b,c,d\n3,1,nan,inf,-inf,0.1\n"


def read_lines(path):
    """The file's lines, asserting it ends in a complete line and every row is full width."""
    text = path.read_text()
    assert text.endswith("\n")
    rows = list(csv.reader(text.splitlines()))
    assert len({len(row) for row in rows}) == 1
    return rows


def test_trace_holds_only_whole_lines_after_every_append(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "trace.csv"
    trace = TraceWriter(path, flat_names("W", (2, 3)))
    assert read_lines(path) == [["step", "epoch", *flat_names("W", (2, 3))]]
    written = 0
    for n in (1, 50, 3):
        trace.append(trace_rows(rng, written, n, 6))
        written += n
        # Read while the writer is still open: each append is on disk, whole.
        assert len(read_lines(path)) == 1 + written
    trace.close()


def test_trace_rejects_rows_of_the_wrong_width_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "trace.csv"
    with TraceWriter(path, ["a", "b"]) as trace:
        trace.append(np.array([[0.0, 0.0, 1.0, 2.0]]))
        before = path.read_bytes()
        with pytest.raises(DataError, match=r"trace\.csv.*\[n, 4\].*\[2, 3\]"):
            trace.append(np.zeros((2, 3)))
        with pytest.raises(DataError, match=r"\[n, 4\]"):
            trace.append(np.zeros(4))
    assert path.read_bytes() == before


def test_trace_cannot_be_created_in_a_missing_directory(tmp_path):
    path = tmp_path / "nowhere" / "trace.csv"
    with pytest.raises(DataError, match=r"cannot write .*nowhere.*trace\.csv"):
        TraceWriter(path, ["a"])


# --- epoch log ----------------------------------------------------------------------------

def test_epoch_log_has_the_csvlogger_shape(tmp_path):
    path = tmp_path / "log.csv"
    log = EpochLog(path, ["loss", "accuracy", "val_loss"])
    log.append(0, {"loss": 0.75, "accuracy": 0.5, "val_loss": 0.8})
    assert path.read_text() == "epoch,loss,accuracy,val_loss\n0,0.75,0.5,0.8\n"  # flushed, still open
    log.append(1, {"loss": np.float64(1 / 3), "accuracy": np.float32(0.25)})  # val_loss missing
    log.close()

    frame = pd.read_csv(path)
    assert list(frame.columns) == ["epoch", "loss", "accuracy", "val_loss"]
    assert frame["epoch"].tolist() == [0, 1]
    assert frame["loss"].tolist() == [0.75, 1 / 3]
    assert frame["accuracy"].tolist() == [0.5, 0.25]
    assert frame["val_loss"].iloc[0] == 0.8 and np.isnan(frame["val_loss"].iloc[1])


def test_epoch_log_refuses_metrics_it_has_no_column_for(tmp_path):
    path = tmp_path / "log.csv"
    with EpochLog(path, ["loss"]) as log:
        with pytest.raises(DataError, match=r"log\.csv.*'acc'"):
            log.append(0, {"loss": 1.0, "acc": 0.5})
    assert path.read_text() == "epoch,loss\n"


# --- resuming and reading back ---------------------------------------------------------------

# A trace as a run killed mid-write leaves it: rows up to step 5, the last of them torn (no newline).
KILLED_TRACE = "step,epoch,a,b\n1,1,0.5,-1.0\n2,1,0.25,nan\n3,2,inf,2.0\n4,2,0.125,3.0\n5,3,0.0625,4."


def test_resuming_a_trace_keeps_the_rows_up_to_the_checkpoint_and_goes_on(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(KILLED_TRACE)
    with TraceWriter(path, ["a", "b"], upto=2) as trace:  # the checkpoint holds step 2
        assert path.read_text() == "step,epoch,a,b\n1,1,0.5,-1.0\n2,1,0.25,nan\n"
        trace.append(np.array([[3.0, 2.0, 8.0, 9.0]]))
    assert path.read_text() == "step,epoch,a,b\n1,1,0.5,-1.0\n2,1,0.25,nan\n3,2,8.0,9.0\n"


@pytest.mark.parametrize("upto, kept", [(0, 0), (4, 4), (5, 4), (9, 4)])
def test_resuming_a_trace_never_keeps_a_torn_line(tmp_path, upto, kept):
    path = tmp_path / "trace.csv"
    path.write_text(KILLED_TRACE)
    TraceWriter(path, ["a", "b"], upto=upto).close()
    assert path.read_text() == "".join(KILLED_TRACE.splitlines(keepends=True)[:1 + kept])


def test_resuming_an_epoch_log_keeps_the_epochs_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n1,0.75\n2,0.5\n3,0.375\n4,0.2")
    with EpochLog(path, ["loss"], upto=2) as log:
        log.append(3, {"loss": 0.125})
    assert path.read_text() == "epoch,loss\n1,0.75\n2,0.5\n3,0.125\n"


@pytest.mark.parametrize("content", [None, "", "step,epo"], ids=["missing", "empty", "torn header"])
def test_resuming_without_a_whole_header_starts_the_file_afresh(tmp_path, content):
    path = tmp_path / "trace.csv"
    if content is not None:
        path.write_text(content)
    with TraceWriter(path, ["a"], upto=3) as trace:
        trace.append(np.array([[4.0, 2.0, 0.5]]))
    assert path.read_text() == "step,epoch,a\n4,2,0.5\n"


@pytest.mark.parametrize("make, columns", [(TraceWriter, ["a", "c"]), (TraceWriter, ["a"]), (EpochLog, ["loss"])])
def test_resuming_a_file_with_other_columns_is_refused_and_leaves_it_alone(tmp_path, make, columns):
    path = tmp_path / "trace.csv"
    path.write_text(KILLED_TRACE)
    with pytest.raises(DataError, match=r"cannot continue .*trace\.csv.*columns.*new path"):
        make(path, columns, upto=2)
    assert path.read_text() == KILLED_TRACE


def test_resuming_a_file_with_a_row_graphdsl_did_not_write_is_refused(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n1,0.5\none,0.25\n")
    with pytest.raises(DataError, match=r"cannot continue .*log\.csv: row 3.*new path"):
        EpochLog(path, ["loss"], upto=2)


def test_without_resuming_an_existing_file_is_replaced(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(KILLED_TRACE)
    TraceWriter(path, ["x"]).close()
    assert path.read_text() == "step,epoch,x\n"


def test_read_trace_round_trips_bit_exact_and_skips_a_torn_last_line(tmp_path):
    rng = np.random.default_rng(4)
    columns = flat_names("W", (1, 2)) + ["L"]
    expected = trace_rows(rng, 1, 40, len(columns))
    path = tmp_path / "trace.csv"
    with TraceWriter(path, columns) as trace:
        trace.append(expected)
    with open(path, "a") as f:
        f.write("41,10,0.5,1")  # a row cut short: 1 of its 3 values, the last one a wrong number
    names, rows = read_trace(path)
    assert names == ["step", "epoch", *columns]
    assert rows.shape == expected.shape
    assert_bit_equal(rows, expected)


@pytest.mark.parametrize("content, shape", [("step,epoch,L\n", (0, 3)), ("step,epoch,L\n1,1,0.5", (0, 3)),
                                            ('epoch,"W[0,1]"\n1,2.5\n', (1, 2))])
def test_read_trace_of_a_short_file(tmp_path, content, shape):
    path = tmp_path / "t.csv"
    path.write_text(content)
    names, rows = read_trace(path)
    assert len(names) == shape[1] and rows.shape == shape


@pytest.mark.parametrize("content, words", [(None, "No such file"), ("step,ep", "no whole header"),
                                            ("step,epoch\n1,1,0.5\n", "3 values"), ("a\nx\n", "x")])
def test_read_trace_of_a_bad_file(tmp_path, content, words):
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=rf"cannot read .*t\.csv.*{words}"):
        read_trace(path)


# --- History ------------------------------------------------------------------------------

def test_history_lists_by_metric():
    history = History([], {})
    history.append(0, {"loss": 1.0, "accuracy": 0.5})
    history.append(1, {"loss": 0.5, "accuracy": 0.75})
    assert history.epoch == [0, 1]
    assert history["loss"] == [1.0, 0.5]
    assert history["accuracy"] == [0.5, 0.75]
    with pytest.raises(KeyError):
        history["val_loss"]


def test_history_keeps_metrics_aligned_with_epochs():
    history = History()
    history.append(1, {"loss": 3.0})
    history.append(2, {"loss": 2.0, "val_loss": 2.5})
    history.append(3, {"loss": 1.0})
    assert history.epoch == [1, 2, 3]
    assert history["loss"] == [3.0, 2.0, 1.0]
    assert np.isnan(history["val_loss"][0]) and history["val_loss"][1] == 2.5 and np.isnan(history["val_loss"][2])


def test_history_read_between_chunks_stays_aligned():
    """Training adds epochs as array chunks; reading in between must not lose or repeat any."""
    history = History()
    history.extend(np.arange(1, 4), {"loss": np.array([3.0, 2.0, 1.0])})
    assert history.epoch == [1, 2, 3] and history["loss"] == [3.0, 2.0, 1.0]
    history.extend(np.arange(4, 6), {"loss": np.array([0.5, 0.25]), "accuracy": np.array([0.5, 1.0])})
    history.extend(np.arange(6, 7), {"loss": np.array([0.125])})
    assert history.epoch == [1, 2, 3, 4, 5, 6]
    assert history["loss"] == [3.0, 2.0, 1.0, 0.5, 0.25, 0.125]
    assert history["accuracy"][3:5] == [0.5, 1.0]
    assert all(np.isnan(history["accuracy"][i]) for i in (0, 1, 2, 5))
    assert all(type(e) is int for e in history.epoch) and all(type(v) is float for v in history["loss"])


# --- weights ------------------------------------------------------------------------------

def example_params(rng):
    return {
        "W_h": rng.standard_normal((3, 2)),
        "b_h": rng.standard_normal(3),
        "b_o": np.float64(rng.standard_normal()),
        "W.0": awkward_floats(rng, 4).reshape(2, 2),
        # names np.savez reserves for its own arguments
        "file": np.arange(3.0),
        "allow_pickle": np.ones((1, 1)),
    }


def shapes_of(params):
    return {name: np.shape(value) for name, value in params.items()}


def test_weights_round_trip_bit_exact_with_state_and_meta(tmp_path):
    rng = np.random.default_rng(3)
    params = example_params(rng)
    state = {"m": rng.standard_normal(17), "v": np.float32([1.5, -0.0]), "t": np.int64(12)}
    meta = {"epoch": 7, "step": 2**40 + 1, "seed": 0, "lr": 0.1}
    path = tmp_path / "weights.npz"
    save_weights(path, params, state, meta)

    got_params, got_state, got_meta = load_weights(path, shapes_of(params))
    assert got_params.keys() == params.keys()
    for name, value in params.items():
        assert got_params[name].shape == np.shape(value)
        assert_bit_equal(got_params[name], value)
    assert got_state.keys() == state.keys()
    for key, value in state.items():
        assert got_state[key].dtype == np.asarray(value).dtype
        assert np.asarray(value).tobytes() == got_state[key].tobytes()
    assert got_meta == meta
    assert type(got_meta["epoch"]) is int and type(got_meta["lr"]) is float


def test_weights_file_is_a_plain_npz_keyed_by_parameter_name(tmp_path):
    params = {"W": np.array([[1.0, 2.0]]), "b": np.array([0.5])}
    path = tmp_path / "w.npz"
    save_weights(path, params, {"m": np.zeros(3)}, {"epoch": 2})
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["W", "b", "meta:epoch", "state:m"]
        assert np.array_equal(archive["W"], params["W"])


def test_weights_are_written_to_exactly_the_path_given(tmp_path):
    save_weights(tmp_path / "best", {"b": np.zeros(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_plain_weights_file_loads_with_empty_state_and_meta(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, W=np.eye(2), b=np.zeros(2))
    params, state, meta = load_weights(path, {"W": (2, 2), "b": (2,)})
    assert np.array_equal(params["W"], np.eye(2)) and np.array_equal(params["b"], np.zeros(2))
    assert state == {} and meta == {}


def test_weights_npz_is_a_zip_of_npy_members(tmp_path):
    # Anyone's tools can read it: a zip whose members are W.npy and b.npy.
    path = tmp_path / "w.npz"
    save_weights(path, {"W": np.ones((2, 3)), "b": np.zeros(3)})
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["W.npy", "b.npy"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_weights_file_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "w.npz"
    save_weights(path, {"b": np.zeros(1)})
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.fixture
def saved(tmp_path):
    """A weights file with W [2, 3] and b [3]."""
    path = tmp_path / "w.npz"
    save_weights(path, {"W": np.ones((2, 3)), "b": np.zeros(3)})
    return path


def load_error(path, shapes) -> str:
    with pytest.raises(DataError) as info:
        load_weights(path, shapes)
    message = str(info.value)
    assert str(path) in message
    assert "Traceback" not in message
    return message


def test_load_names_a_missing_parameter(saved):
    message = load_error(saved, {"W": (2, 3), "b": (3,), "c": ()})
    assert "`c` (scalar) is missing" in message
    assert "Load it with the spec it was saved from, or train again" in message


def test_load_names_an_unknown_parameter(saved):
    message = load_error(saved, {"W": (2, 3)})
    assert "`b` ([3]) is not a parameter of the spec" in message


def test_load_names_a_wrong_shape_with_both_shapes(saved):
    message = load_error(saved, {"W": (3, 2), "b": [3]})
    assert "`W` is [2, 3] in the file but the spec expects [3, 2]" in message
    assert "`b`" not in message  # shapes given as lists are fine


def test_load_reports_every_problem_at_once(saved):
    message = load_error(saved, {"W": (2, 2), "c": (1,)})
    assert "`W` is [2, 3]" in message and "`c` ([1]) is missing" in message and "`b` ([3]) is not" in message


def test_load_of_a_missing_file(tmp_path):
    message = load_error(tmp_path / "absent.npz", {"W": (1,)})
    assert "cannot read weights file" in message and "No such file" in message


def test_load_of_a_directory(tmp_path):
    assert "cannot read weights file" in load_error(tmp_path, {"W": (1,)})


@pytest.mark.parametrize("content", [b"", b"not a weights file at all\n" * 20, b"PK\x03\x04garbage"])
def test_load_of_a_garbage_file(tmp_path, content):
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    assert "is not a weights file" in load_error(path, {"W": (1,)})


def test_load_of_a_single_npy_array(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.zeros(3))
    assert "is not a weights file" in load_error(path, {"W": (3,)})


def test_load_of_a_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:len(data) // 2])
    assert "is not a weights file" in load_error(saved, {"W": (2, 3), "b": (3,)})


def test_load_of_a_damaged_member(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, W=np.arange(1000.0))
    data = bytearray(path.read_bytes())
    data[2000] ^= 0xFF  # inside W's data: the zip's CRC check fails
    path.write_bytes(bytes(data))
    assert "cannot read `W`" in load_error(path, {"W": (1000,)})


def test_load_never_unpickles_object_arrays(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, W=np.array([1, "x", None], dtype=object))
    message = load_error(path, {"W": (3,)})
    assert "cannot read `W`" in message and "never pickled objects" in message


def test_save_refuses_object_arrays_and_reserved_names(tmp_path):
    path = tmp_path / "w.npz"
    with pytest.raises(DataError, match=r"`W` to .*w\.npz.*Python objects"):
        save_weights(path, {"W": np.array([None])})
    with pytest.raises(DataError, match=r"w\.npz.*':'.*state:x"):
        save_weights(path, {"state:x": np.zeros(1)})
    with pytest.raises(DataError, match=r"w\.npz.*single numbers.*epoch"):
        save_weights(path, {"b": np.zeros(1)}, meta={"epoch": [1, 2]})
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_directory(tmp_path):
    path = tmp_path / "nowhere" / "w.npz"
    with pytest.raises(DataError, match=r"cannot write .*nowhere.*w\.npz"):
        save_weights(path, {"b": np.zeros(1)})


# --- atomic replacement ---------------------------------------------------------------------

def assert_only(path, content):
    """path holds content, and nothing else (no temp file) is in its directory."""
    assert path.read_bytes() == content
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_failed_replace_keeps_the_old_weights_and_no_temp_file(saved, monkeypatch):
    before = saved.read_bytes()

    def fail(src, dst):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(DataError, match=r"cannot write .*w\.npz: Permission denied"):
        save_weights(saved, {"W": np.zeros((2, 3)), "b": np.ones(3)})
    assert_only(saved, before)


def test_a_crash_midway_through_the_write_keeps_the_old_weights(saved, monkeypatch):
    before = saved.read_bytes()
    real_write_array = np.lib.format.write_array
    calls = []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # anything at all, after part of the new file is written
        real_write_array(*args, **kwargs)
    monkeypatch.setattr(np.lib.format, "write_array", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        save_weights(saved, {"W": np.zeros((2, 3)), "b": np.ones(3)})
    assert len(calls) == 2
    assert_only(saved, before)
    assert load_weights(saved, {"W": (2, 3), "b": (3,)})[0]["W"].tolist() == np.ones((2, 3)).tolist()


def test_the_new_file_is_fsynced_before_it_replaces_the_old(saved, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    save_weights(saved, {"W": np.zeros((2, 3)), "b": np.ones(3)})
    assert events == ["fsync", "replace"]
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    assert load_weights(saved, {"W": (2, 3), "b": (3,)})[0]["b"].tolist() == [1.0, 1.0, 1.0]


# --- plots --------------------------------------------------------------------------------

def history_with(*metrics):
    history = History()
    for epoch in range(1, 6):
        history.append(epoch, {name: 1.0 / (epoch + i) for i, name in enumerate(metrics)})
    return history


@pytest.mark.parametrize("metrics", [("loss",), ("loss", "val_loss", "accuracy", "val_accuracy"), ("accuracy",)])
def test_plot_writes_a_png(tmp_path, metrics):
    path = tmp_path / "history.png"
    plot_history(history_with(*metrics), path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["history.png"]


def test_plot_draws_a_sparse_val_loss(tmp_path):
    history = History()
    for epoch in range(6):
        history.append(epoch, {"loss": 1.0 / (epoch + 1), **({"val_loss": 0.5} if epoch % 2 else {})})
    plot_history(history, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_needs_a_loss_or_accuracy(tmp_path):
    with pytest.raises(DataError, match=r"h\.png.*no loss or accuracy.*mse"):
        plot_history(history_with("mse"), tmp_path / "h.png")


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(DataError, match=r'h\.png.*matplotlib.*pip install "graphdsl\[plot\]"'):
        plot_history(history_with("loss"), tmp_path / "h.png")
    assert list(tmp_path.iterdir()) == []


TRAINED = ("input x[2]\ntarget y\nparam w[2] = [0.5, -0.5]\nL = half_se(w x, y)\n"
           "data x = [[1, 2], [3, 4], [0, 1]], y = [1, 2, 0]\nminimize L using sgd(lr=0.01), epochs=30\n")


def test_a_missing_plotting_extra_is_found_before_training(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from graphdsl.cli import main
    from graphdsl.training.trainer import Trainer

    (tmp_path / "net.nn").write_text(TRAINED)
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(Trainer, "run", lambda *a, **k: pytest.fail("trained before finding matplotlib missing"))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "net.nn"), "--plot", str(tmp_path / "p.png"),
                                       "--save", str(tmp_path / "w.npz")])
    assert result.exit_code == 2 and 'pip install "graphdsl[plot]"' in result.output
    assert not (tmp_path / "w.npz").exists()


def test_a_failure_after_training_keeps_the_saved_weights(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import graphdsl
    from graphdsl.cli import main
    from graphdsl.training import records

    def full_disk(history, path):
        raise DataError(f"cannot write {path}: No space left on device")
    monkeypatch.setattr(records, "plot_history", full_disk)
    (tmp_path / "net.nn").write_text(TRAINED)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "net.nn"), "--save", str(tmp_path / "w.npz"),
                                       "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "No space left on device" in result.output
    model = graphdsl.compile(TRAINED, engine="numpy")
    model.train()
    saved = np.load(tmp_path / "w.npz")
    np.testing.assert_allclose(saved["w"], model.params["w"], rtol=1e-12)
