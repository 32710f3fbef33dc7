"""What training writes for people: the step trace CSV, the epoch log, weight files,
the History object and metric plots.

The training loop fills numeric buffers inside Numba and hands them here between
chunks of epochs, so everything in this module is plain Python on NumPy arrays.
Every file a reader might open mid-run is either appended in whole lines (the CSVs)
or replaced atomically (weights, plots).
"""
from __future__ import annotations

import csv
import io
import math
import zipfile
import zlib
from math import nan

import numpy as np

from graphdsl.errors import DataError, WriteError
from graphdsl.files import path_argument, read_regular, replace_atomically
from graphdsl.ir.shapes import fmt_shape
from graphdsl.training.data import npz_member

# Keys of optimizer state and metadata in a weights file. Spec names never contain
# ':', so these can never clash with a parameter's name.
STATE_PREFIX = "state:"
META_PREFIX = "meta:"

# The metric groups plot_history draws, one axes each.
PANELS = (("loss", "val_loss"), ("accuracy", "val_accuracy"))
SHOWN_EPOCHS = 10  # a notebook shows this many epochs at each end of a longer History


def flat_names(name: str, shape: tuple) -> list[str]:
    """Column names of a value flattened in C order: W[0,1] for a matrix entry, b[2] for a
    vector entry, L for a scalar. Names may contain dots (layer copies like `W.0`)."""
    if tuple(shape) == ():
        return [name]
    return [f"{name}[{','.join(map(str, index))}]" for index in np.ndindex(*shape)]


def grad_names(loss: str, name: str, shape: tuple) -> list[str]:
    """Gradient columns, documented naming: dL/dW[0,1] (d<loss>/d<flat name>)."""
    return [f"d{loss}/d{column}" for column in flat_names(name, shape)]


def _cannot_write(path, err: OSError) -> DataError:
    return DataError(f"cannot write {path}: {err.strerror or err}")


def quoted_line(cells: list) -> str:
    """A CSV line with the cells quoted where they need it: a header (flat names like W[0,1] hold
    a comma), or a sweep's results row."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(cells)
    return text.getvalue()


def csv_row(cells) -> str:
    """One CSV line: ints as integers, other numbers at full precision. repr is the shortest
    text that reads back to the same float, and its nan/inf/-inf are what pandas reads."""
    return ",".join(str(x) if isinstance(x, int) else repr(float(x)) for x in cells) + "\n"


def _csv_line(ints, floats) -> str:
    return csv_row([*(int(x) for x in ints), *(float(x) for x in floats)])


class _CsvLog:
    """A CSV file written in whole lines: each append is one unbuffered write, so a reader
    mid-run finds only complete rows on disk. A write that fails (the disk full, a file-size
    limit) is cut back off and raises WriteError, so the file keeps its whole rows. A crash in
    the middle of a write can still leave a last line without its newline: read_trace skips
    it, and resuming cuts it.

    `upto`, on resume, is the step (trace) or epoch (log) the checkpoint holds: an existing
    file with the same header keeps its rows up to there and is continued; None starts afresh."""

    def __init__(self, path, header: list[str], upto: int | None = None):
        self.path = path
        header = quoted_line(header)
        try:
            kept = 0 if upto is None else _whole_rows_upto(path, header.encode(), upto)
            self._file = open(path, "ab" if kept else "wb", buffering=0)  # no buffer left to fail at close
            if kept:
                self._file.truncate(kept)
        except OSError as err:
            raise _cannot_write(path, err) from None
        if not kept:
            self._write(header)

    def _write(self, text: str) -> None:
        data, end = memoryview(text.encode()), self._file.tell()
        try:
            while data:  # a raw write may write part, and say so
                data = data[self._file.write(data):]
        except OSError as err:
            try:
                self._file.truncate(end)
            except OSError:
                pass  # the file is already as short as it can be made: read_trace skips a torn last line
            raise WriteError(f"cannot write {self.path}: {err.strerror or err}; it keeps the rows written "
                             "before") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _whole_rows_upto(path, header: bytes, upto: int) -> int:
    """The length of `path`'s header and of its whole rows whose first cell is at most `upto`;
    0 when there is no file or no whole header. Later rows were written after the checkpoint
    (the resumed run writes them again) and a last line without its newline was cut by a crash."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        first = f.readline()
        if not first.endswith(b"\n"):
            return 0
        if first != header:
            raise DataError(f"cannot continue {path}: its columns are not the ones this run writes "
                            "(it was written for another spec or settings); pass a new path")
        kept = len(first)
        for number, line in enumerate(f, 2):
            try:
                if not line.endswith(b"\n") or int(line.split(b",", 1)[0]) > upto:
                    break  # rows are in order: the first one past `upto` ends what is kept
            except ValueError:
                raise DataError(f"cannot continue {path}: row {number} is not one graphdsl wrote; "
                                "pass a new path") from None
            kept += len(line)
        return kept


def read_trace(path) -> tuple[list[str], np.ndarray]:
    """(column names, rows as a float array) of a trace or epoch log CSV. A last line without
    its newline, which a run killed mid-write can leave, is not a row and is skipped."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    try:  # up to the last newline: a line without one is not a row
        header, _, body = text[:text.rfind(b"\n") + 1].decode("utf-8").partition("\n")
        rows = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2) if body else None
    except ValueError as err:  # not UTF-8, or a value that is not a number
        raise DataError(f"cannot read {path}: {err}") from None
    if not header:
        raise DataError(f"cannot read {path}: it has no whole header line")
    columns = next(csv.reader([header]))
    rows = np.zeros((0, len(columns))) if rows is None else rows
    if rows.shape[1] != len(columns):
        raise DataError(f"cannot read {path}: its rows have {rows.shape[1]} values, its header {len(columns)} names")
    return columns, rows


class TraceWriter(_CsvLog):
    """Per-step trace CSV: header `step,epoch,<columns...>`; step and epoch written as
    integers, every other value at full precision; nan and inf read back by pandas.read_csv."""

    def __init__(self, path, columns: list[str], upto: int | None = None):
        super().__init__(path, ["step", "epoch", *columns], upto)
        self.width = 2 + len(columns)

    def append(self, rows: np.ndarray) -> None:
        """Write rows (2-D; columns step, epoch, then the trace columns) in one write."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise DataError(f"cannot append to {self.path}: rows must be [n, {self.width}] "
                            f"(step, epoch and {self.width - 2} trace columns), not {fmt_shape(rows.shape)}")
        # Format everything first: a failure while formatting leaves the file untouched.
        self._write("".join(_csv_line(row[:2], row[2:]) for row in rows.tolist()))


class EpochLog(_CsvLog):
    """Keras CSVLogger shape: header `epoch,<metric names...>`, one row per epoch, flushed
    after every append. A metric missing from an epoch's values is written as nan."""

    def __init__(self, path, metrics: list[str], upto: int | None = None):
        super().__init__(path, ["epoch", *metrics], upto)
        self.metrics = list(metrics)

    def append(self, epoch: int, values: dict[str, float]) -> None:
        unknown = [key for key in values if key not in self.metrics]
        if unknown:
            raise DataError(f"cannot log to {self.path}: {', '.join(map(repr, unknown))} not among "
                            f"its columns {', '.join(self.metrics)}; name every metric when creating the log")
        self._write(_csv_line([epoch], [values.get(key, nan) for key in self.metrics]))


class History:
    """Like Keras' History: epoch numbers and metric lists, e.g. history["loss"].

    The lists stay aligned with `epoch`: a metric missing from an epoch (say val_loss
    computed every few epochs) is nan there, so history[key][i] is always epoch[i]'s.
    Training adds epochs as NumPy chunks; the lists are made when first read, so a long
    run of short epochs does not spend its time making Python floats."""

    def __init__(self, epoch: list | None = None, history: dict | None = None):
        self.trace: np.ndarray | None = None  # the step trace, when train(trace=True) keeps it
        self.trace_columns: list = []
        self.updates: list | None = None  # a short run's steps: (step, {param: (before, gradient, after)})
        self.metrics: dict = {}  # at the weights training ends with (evaluate.Scores): f1, val_r2, ...
        self.best_epoch: int | None = None  # early stopping's best epoch, whose weights the model keeps
        self.stopped_epoch: int | None = None  # the epoch after which early stopping stopped training
        self._epoch, self._history = list(epoch or []), dict(history or {})
        self._chunks: list = []  # (epochs, {metric: values}) not yet in the lists

    @property
    def epoch(self) -> list[int]:
        self._settle()
        return self._epoch

    @property
    def history(self) -> dict[str, list[float]]:
        self._settle()
        return self._history

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self) -> str:
        epochs = self.epoch
        last = ", ".join(f"{key} {values[-1]:.6g}" for key, values in self.history.items()) if epochs else ""
        return f"<History: {len(epochs)} epoch{'s' if len(epochs) != 1 else ''}{'; last: ' + last if last else ''}>"

    def _repr_html_(self) -> str:
        """One row an epoch, one column a metric: how a notebook shows a History (the first and
        last SHOWN_EPOCHS of a long run)."""
        from graphdsl.tools.formats import html_table

        rows = [[epoch, *(f"{self.history[key][i]:.6g}" for key in self.history)]
                for i, epoch in enumerate(self.epoch)]
        if len(rows) > 2 * SHOWN_EPOCHS:
            rows = rows[:SHOWN_EPOCHS] + [["..."] * len(rows[0])] + rows[-SHOWN_EPOCHS:]
        return html_table(["epoch", *self.history], rows)

    def append(self, epoch: int, values: dict[str, float]) -> None:
        self.extend([epoch], {key: [value] for key, value in values.items()})

    def extend(self, epochs, columns: dict) -> None:
        """Several epochs at once: `columns` maps each metric to one value per epoch."""
        self._chunks.append((np.asarray(epochs, dtype=np.int64), columns))

    def _settle(self) -> None:
        for epochs, columns in self._chunks:
            for key in columns:
                if key not in self._history:
                    self._history[key] = [nan] * len(self._epoch)
            self._epoch.extend(epochs.tolist())
            for key, column in self._history.items():  # tolist: Python floats, at C speed
                column.extend(np.asarray(columns.get(key, np.full(len(epochs), nan)), dtype=np.float64).tolist())
        self._chunks.clear()


def _write_atomically(path, write) -> None:
    """files.replace_atomically, with a failure to write reported as a WriteError naming the file, which
    keeps what it held."""
    try:
        replace_atomically(path, write)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}; the file is as it was") from None


def _weight_arrays(path, params: dict, state: dict, meta: dict) -> dict[str, np.ndarray]:
    """Every array the weights file holds, keyed as it will be in the .npz."""
    arrays = {name: np.asarray(value) for name, value in params.items()}
    arrays.update((STATE_PREFIX + key, np.asarray(value)) for key, value in state.items())
    arrays.update((META_PREFIX + key, np.asarray(value)) for key, value in meta.items())
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise DataError(f"cannot save `{key}` to {path}: it holds Python objects; "
                            "weights files hold numeric arrays only")
    clashing = [name for name in params if ":" in name]
    if clashing:
        raise DataError(f"cannot save {path}: parameter names may not contain ':' "
                        f"({', '.join(clashing)}); it marks state and metadata keys")
    bad_meta = [key for key in meta if arrays[META_PREFIX + key].ndim]
    if bad_meta:
        raise DataError(f"cannot save {path}: metadata must be single numbers, not arrays ({', '.join(bad_meta)})")
    return arrays


def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """What np.savez writes, without passing names as keyword arguments: a parameter
    named `file` or `allow_pickle` would collide with np.savez's own arguments."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def save_weights(path, params: dict[str, np.ndarray], state: dict[str, np.ndarray] | None = None,
                 meta: dict[str, int | float] | None = None) -> None:
    """An .npz keyed by parameter name (np.load(path)["W"] works for anyone); optimizer
    state under `state:<key>` and metadata (epoch, step, seed...) under `meta:<key>`.
    Written atomically, to exactly `path` (no .npz is appended)."""
    path_argument("the weights file", path)
    arrays = _weight_arrays(path, params, state or {}, meta or {})
    _write_atomically(path, lambda f: _write_npz(f, arrays))


def _read_npz(path) -> dict[str, np.ndarray]:
    """Every array in an .npz, read without pickle, each only once its size is found to fit the file
    (data.npz_member); any failure is a DataError naming the file."""
    try:
        raw = read_regular(path)
    except OSError as err:
        raise DataError(f"cannot read weights file {path}: {err.strerror or err}; check the path") from None
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        archive = None  # neither a zip nor an .npy: the same answer as a lone .npy array
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is not a weights file: expected an .npz archive of named arrays, "
                        "as save_weights or np.savez writes")
    with archive:
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = npz_member(archive, key, len(raw), f"{path}: `{key}`")
            except DataError:
                raise
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise DataError(f"{path}: cannot read `{key}` ({err}); graphdsl loads plain numeric "
                                "arrays only, never pickled objects: save the weights again with "
                                "save_weights or np.savez") from None
    return arrays


def _check_params(path, params: dict[str, np.ndarray], shapes: dict[str, tuple]) -> None:
    """Every expected parameter present with its shape, and nothing else; all problems at once."""
    problems = []
    for name, shape in shapes.items():
        if name not in params:
            problems.append(f"`{name}` ({fmt_shape(tuple(shape))}) is missing")
        elif params[name].shape != tuple(shape):
            problems.append(f"`{name}` is {fmt_shape(params[name].shape)} in the file "
                            f"but the spec expects {fmt_shape(tuple(shape))}")
    problems += [f"`{name}` ({fmt_shape(array.shape)}) is not a parameter of the spec"
                 for name, array in params.items() if name not in shapes]
    if problems:
        raise DataError(f"{path} does not fit the spec: {'; '.join(problems)}. Load it with the "
                        "spec it was saved from, or train again to write new weights")


# Metadata that counts (the trainer goes on from them): whole numbers from 0, below 2^53, where
# every whole number is a float and no step count overflows the loop's 64-bit integers.
COUNTS = ("step", "epoch")


def _check_numbers(path, arrays: dict[str, np.ndarray]) -> None:
    """What a weights file claims, checked before anything reads it: real numbers throughout,
    metadata single finite numbers, counts whole."""
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise DataError(f"{path}: `{key}` holds {array.dtype} values, but a weights file holds real numbers; "
                            "save the weights again with save_weights or np.savez")
        if not key.startswith(META_PREFIX):
            continue
        if array.ndim or not math.isfinite(array):
            raise DataError(f"{path}: `{key}` must be one finite number, not {array.tolist()}")
        value = float(array)
        if key[len(META_PREFIX):] in COUNTS and not (value == math.floor(value) and 0 <= value < 2**53):
            raise DataError(f"{path}: `{key}` counts, so it is a whole number of at least 0, not {array.item()}")


def load_weights(path, shapes: dict[str, tuple], finite: bool = False) -> tuple[dict, dict, dict]:
    """(params, state, meta) from a weights file, checked against the expected parameter
    shapes. State and meta are empty for a plain weights file; meta values are Python numbers.
    `finite`: refuse a param holding nan or inf (a model's weights; the file itself keeps any value)."""
    path_argument("the weights file", path)
    params, state, meta = {}, {}, {}
    arrays = _read_npz(path)
    _check_numbers(path, arrays)
    for key, array in arrays.items():
        if key.startswith(STATE_PREFIX):
            state[key[len(STATE_PREFIX):]] = array
        elif key.startswith(META_PREFIX):
            meta[key[len(META_PREFIX):]] = array.item()
        else:
            params[key] = array
    _check_params(path, params, shapes)
    for key, array in params.items() if finite else ():
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):  # a nan weight gives nan scores, which read as class 0
            where = f" (entry {list(map(int, bad[0]))})" if array.ndim else ""
            raise DataError(f"{path}: `{key}` holds {array[tuple(bad[0])]}{where}: a model's weights must be finite")
    return params, state, meta


def plotting(path) -> tuple:
    """(Figure, FigureCanvasAgg) from the optional matplotlib, or a DataError saying how to install
    it: called before a run trains too, so a missing extra never costs a finished run."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DataError(f'cannot plot {path}: plotting needs matplotlib; '
                        f'install it with: pip install "graphdsl[plot]"') from None
    return Figure, FigureCanvasAgg


def figure(path, width: float, height: float):
    """A bare matplotlib Figure on the Agg canvas, to be written to `path`: no display is needed
    and no pyplot state changes in the caller's process (a notebook keeps its own backend)."""
    Figure, FigureCanvasAgg = plotting(path)
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> None:
    _write_atomically(path, lambda f: fig.savefig(f, format="png"))


def plot_history(history: History, path) -> None:
    """Loss (and val_loss) on one axes, accuracy (and val_accuracy) on another when present,
    against epoch, written as a PNG atomically. Needs the optional matplotlib."""
    panels = [[key for key in group if key in history.history] for group in PANELS]
    panels = [keys for keys in panels if keys]
    fig = figure(path, 6, 3 * max(len(panels), 1))
    if not panels:
        raise DataError(f"cannot plot {path}: the history has no loss or accuracy "
                        f"(it has {', '.join(history.history) or 'nothing'})")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    epochs = np.asarray(history.epoch)
    for ax, keys in zip(axes, panels):
        for key in keys:
            values = np.asarray(history[key], dtype=np.float64)
            # Skip the nan of epochs that lack the metric, so a sparse val_loss still draws a line.
            shown = np.isfinite(values)
            ax.plot(epochs[shown], values[shown], label=key)
        ax.set_ylabel(keys[0])
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1].set_xlabel("epoch")
    save_png(fig, path)
