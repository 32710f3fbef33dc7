"""Examples for a spec's `input` and `target` leaves: read, fitted to their fields, validated.

A spec is written per example (`input x[4]`, `target k`), so every loaded array gets a leading
example axis: the field x[4] becomes an array of shape (n, 4). The data `load` reads is one of

- "iris" or "digits": scikit-learn's offline copies (the optional extra `graphdsl[data]`);
- a path to a .csv, .npz or IDX (MNIST) file, any of them gzip-compressed as `name.gz`;
- a tuple of paths: each file supplies the next field in order, the last file all the rest;
- a dict name -> array-like: inline data from the spec.

Every problem is a DataError that names the file, the row and column (or the example) and
says what was expected. Nothing is returned until every field has loaded and passed.

The arrays a user hands a model outside of examples (its params, inputs to forward()) are checked
here too (`fitted`, `checked_params`), before compiled code reads them.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from graphdsl.errors import DataError
from graphdsl.files import read_regular
from graphdsl.ir.shapes import fmt_shape, plural
from graphdsl.ir.ops.nn import not_class_indices

BUILTIN = ("iris", "digits")
KINDS = ("input", "target")

# Exceptions that a damaged or foreign file raises from numpy, gzip and zipfile.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile)


@dataclass(frozen=True)
class Field:
    """An input or target of the spec, as one example sees it."""

    name: str                   # the spec name of an input or target
    kind: str                   # "input" or "target"
    shape: tuple                # per-example shape: () scalar, (4,), (8, 8) ...
    classes: int | None = None  # set when the spec reads this field as class indices

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))  # a list would never compare equal

    @property
    def size(self) -> int:
        """Numbers per example: 1 for a scalar."""
        return math.prod(self.shape)

    def __str__(self) -> str:
        """As the spec writes it: `k`, `x[4]`, `img[8, 8]`."""
        return self.name + ("" if self.shape == () else fmt_shape(self.shape))


# (example index, flat entry index or None) -> "data.csv, row 7, column 3": where a value came from.
Where = Callable[[int, "int | None"], str]


@dataclass
class _Piece:
    """One field's examples, fitted to its shape, and how to name where each value came from."""

    field: Field
    values: np.ndarray  # (n,) + field.shape
    origin: str         # where the values came from, for messages about the whole array
    where: Where


def load(data, fields: list[Field], base_dir: str | Path | None = None, dtype=np.float64) -> dict[str, np.ndarray]:
    """Examples for every field, as C-contiguous `dtype` arrays of shape (n,) + field.shape, all the
    same n. They are read, never written, so arrays given inline are used as they are where they
    already fit (float32 data for a float32 run is not copied)."""
    fields = list(fields)
    _check_fields(fields)
    try:
        arrays = _finish(_pieces(data, fields, base_dir), dtype)
    except MemoryError:
        raise DataError("the examples do not fit in this machine's memory: train on fewer, or on "
                        "smaller inputs") from None
    return {f.name: arrays[f.name] for f in fields}  # in the order the fields were given


def _pieces(data, fields: list[Field], base_dir) -> list[_Piece]:
    if isinstance(data, str) and data in BUILTIN:  # a builtin name wins over a file of that name
        return _builtin(data, fields)
    if isinstance(data, dict):
        return _inline(data, fields)
    if isinstance(data, (str, os.PathLike)):
        return _files([data], fields, base_dir)
    if isinstance(data, (tuple, list)):
        return _files(list(data), fields, base_dir)
    raise DataError(f"cannot read examples from a {type(data).__name__}: give a builtin name "
                    f"({', '.join(BUILTIN)}), a path, a tuple of paths, or a dict of arrays")


def split(arrays: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    """(train, validation): a seeded shuffle, then the last round(fraction*n) examples are validation;
    with none held out, the examples as given.

    The same seed gives the same split. No validation examples (fraction 0, or so few
    examples that round(fraction*n) is 0) gives {} for validation.
    """
    if not arrays and not fraction:  # a spec that reads no examples (minimising a function of params)
        return {}, {}
    n = _count(arrays)
    if not 0 <= fraction < 1:
        raise DataError(f"the validation fraction must be at least 0 and below 1, not {fraction}")
    n_val = round(fraction * n)
    if n_val == n:
        raise DataError(f"a validation fraction of {fraction} leaves none of the {n} examples for training")
    if not n_val:  # nothing held out: the examples stay in their order (shuffle=0 means that order)
        return dict(arrays), {}
    order = np.random.default_rng(seed).permutation(n)
    train, val = order[:n - n_val], order[n - n_val:]
    # Fancy indexing copies, so every part is a fresh C-contiguous array.
    return ({k: np.asarray(v)[train] for k, v in arrays.items()},
            {k: np.asarray(v)[val] for k, v in arrays.items()})


def _count(arrays: dict) -> int:
    if not arrays:
        raise DataError("there are no examples to hold out for validation: the spec reads no input or target")
    counts = {k: len(v) for k, v in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError("every field needs the same number of examples, but "
                        + ", ".join(f"{k} has {n}" for k, n in counts.items()))
    return next(iter(counts.values()))


def _check_fields(fields: list[Field]) -> None:
    if not fields:
        raise DataError("the spec has no input or target to load examples for")
    names = [f.name for f in fields]
    for f in fields:
        if f.kind not in KINDS:
            raise DataError(f"`{f.name}` is a {f.kind}, but only an input or a target is read from data")
        if names.count(f.name) > 1:
            raise DataError(f"`{f.name}` is named twice among the fields to load")


def _finish(pieces: list[_Piece], dtype) -> dict[str, np.ndarray]:
    """Checks every value and the example counts, then hands out the arrays in `dtype`."""
    for p in pieces:
        if len(p.values) == 0:
            raise DataError(f"{p.origin}: no examples for {p.field}")
        _check_values(p)
    first = pieces[0]
    for p in pieces[1:]:
        if len(p.values) != len(first.values):
            raise DataError(f"every field needs one value per example, but {first.field.name} has "
                            f"{plural(len(first.values), 'example')} ({first.origin}) and {p.field.name} "
                            f"has {len(p.values)} ({p.origin})")
    with np.errstate(over="ignore"):  # a number too large for float32: refused below, by its value
        arrays = {p.field.name: np.ascontiguousarray(p.values, dtype=dtype) for p in pieces}
    for p in pieces:
        if np.can_cast(p.values.dtype, dtype, "safe"):  # the same numbers _check_values saw, maybe widened
            continue
        flat = arrays[p.field.name].reshape(len(p.values), p.field.size)
        if not np.isfinite(flat.sum()):
            _refuse_first(p, p.values.reshape(flat.shape), ~np.isfinite(flat),
                          f"does not fit in {np.dtype(dtype).name}: train in float64, or scale the data")
    return arrays


def _check_values(p: _Piece) -> None:
    """No NaN or infinity; class indices whole numbers in range."""
    flat = p.values.reshape(len(p.values), p.field.size)
    # a finite sum means finite entries (one pass, no temporaries: data sets are large); a sum that
    # is not finite is from a bad entry or an overflow, so then look entry by entry
    if not np.isfinite(flat.sum()):
        _refuse_first(p, flat, ~np.isfinite(flat), f"is not a finite number ({p.field.name} needs finite values)")
    if p.field.classes is not None:
        _refuse_first(p, flat, not_class_indices(flat, p.field.classes),
                      f"is not a class index for {p.field.name}: expected a whole number from 0 to "
                      f"{p.field.classes - 1}")


def _refuse_first(p: _Piece, flat: np.ndarray, bad: np.ndarray, what: str) -> None:
    """A DataError naming the first entry marked in `bad`, if there is one."""
    if bad.any():
        i, e = divmod(int(np.argmax(bad)), bad.shape[1])  # (example, entry) of the first
        raise DataError(f"{p.where(i, e)}: {number_text(flat[i, e])} {what}")


def fitted(what: str, value, shape: tuple) -> np.ndarray:
    """`value`, for a leaf of `shape`, as compiled code reads it: a C-contiguous float64 array of exactly
    that shape (the same object where it is one already). Anything else is a DataError naming `what`:
    a kernel's loops run to the sizes the spec declares, so an array of another shape would be read
    out of bounds, and one of other numbers (complex, text) misread."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise DataError(f"{what} is not an array of numbers ({err})") from None
    if array.dtype.kind not in "biuf":
        raise DataError(f"{what} must hold real numbers, not {array.dtype} values")
    if array.shape != tuple(shape):
        raise DataError(f"{what} must be {fmt_shape(tuple(shape))}, but the value given is {fmt_shape(array.shape)}")
    return np.asarray(array, dtype=np.float64, order="C")  # not ascontiguousarray, which makes a scalar [1]


def checked_params(params: dict, shapes: dict) -> dict:
    """A model's params (name -> value) as compiled code reads them (`fitted`), for the params of
    `shapes` (name -> shape), all of them and no others; a DataError names the first that is wrong."""
    unknown = [name for name in params if name not in shapes]
    missing = [name for name in shapes if name not in params]
    if unknown or missing:
        raise DataError(f"model.params {f'has no `{missing[0]}`' if missing else f'has `{unknown[0]}`'}, but "
                        f"it holds exactly the spec's params: {', '.join(shapes) or 'none'}")
    return {name: fitted(f"model.params[{name!r}]", params[name], shape) for name, shape in shapes.items()}


def number_text(value) -> str:
    """A value as a person would write it: 3, 2.5, nan, inf, 1e+300."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


# --- arrays: npz, IDX, builtin, inline ---------------------------------------------------------

def _array_piece(field: Field, values, origin: str, *, labels: bool = False) -> _Piece:
    """An array with a leading example axis, fitted to the field.

    Each example reshapes to the field's shape when the number of values matches (digits'
    64 -> [8, 8], MNIST's 28 x 28 -> [784]). With labels=True, one number per example given
    to a target vector of C > 1 entries is a class label, one-hot encoded.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise DataError(f"{origin}: holds {values.dtype} values, but {field} needs numbers")
    where = _example_where(origin, field.shape)
    if labels and takes_labels(field) and values.ndim == 1:
        values = _one_hot(values, field, lambda i: where(i, None))
    elif values.ndim >= 1 and math.prod(values.shape[1:]) == field.size:
        values = values.reshape((len(values),) + field.shape)
    else:
        raise DataError(f"{origin}: {field} needs an array of shape {fmt_shape(('n',) + field.shape)} "
                        f"(n examples of {fmt_shape(field.shape)}), but found shape {fmt_shape(values.shape)}")
    floats = values.dtype if values.dtype.kind == "f" else np.float64  # kept: load() converts once
    return _Piece(field, np.ascontiguousarray(values, dtype=floats), origin, where)


def takes_labels(field: Field) -> bool:
    """Whether a field may be given one class label an example, one-hot encoded: a target vector."""
    return field.kind == "target" and len(field.shape) == 1 and field.size > 1


def _one_hot(labels: np.ndarray, field: Field, where: Callable[[int], str]) -> np.ndarray:
    """Labels, one an example, as rows of the identity; where(i) names example i's label."""
    classes = field.size
    labels = labels.astype(np.float64)
    bad = not_class_indices(labels, classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where(i)}: label {number_text(labels[i])} cannot be one-hot encoded for {field}: "
                        f"expected a whole number from 0 to {classes - 1}")
    return np.eye(classes)[labels.astype(np.intp)]


def _example_where(origin: str, shape: tuple) -> Where:
    """Names a value by its 1-based example and, inside a vector or matrix, 1-based entry."""
    def where(i: int, entry: int | None) -> str:
        text = f"{origin}, example {i + 1}"
        if entry is not None and shape:
            index = tuple(int(k) + 1 for k in np.unravel_index(entry, shape))
            text += f", entry {index[0] if len(index) == 1 else index}"
        return text
    return where


def _builtin(name: str, fields: list[Field]) -> list[_Piece]:
    inputs = [f for f in fields if f.kind == "input"]
    targets = [f for f in fields if f.kind == "target"]
    if len(inputs) != 1 or len(targets) != 1:
        found = ", ".join(f"{f.kind} {f.name}" for f in fields)
        raise DataError(f'the builtin data set "{name}" supplies one input (the features) and one target '
                        f"(the labels), but the spec reads {found}")
    try:
        from sklearn import datasets
    except ImportError:
        raise DataError(f'the builtin data set "{name}" needs scikit-learn: pip install "graphdsl[data]"') from None
    if name == "iris":
        bunch = datasets.load_iris()
        # Standardised per column: the raw lengths (cm) would saturate tanh and sigmoid units.
        features = (bunch.data - bunch.data.mean(axis=0)) / bunch.data.std(axis=0)
    else:
        bunch = datasets.load_digits()
        features = bunch.data / 16.0  # pixel intensities 0..16 -> [0, 1]
    return [_array_piece(inputs[0], features, name),
            _array_piece(targets[0], bunch.target, name, labels=True)]


def _inline(data: dict, fields: list[Field]) -> list[_Piece]:
    missing = [f.name for f in fields if f.name not in data]
    if missing:
        raise DataError(f"the inline data has no values for {', '.join(missing)} "
                        f"(it has {', '.join(map(str, data)) or 'nothing'})")
    values = {}
    for f in fields:
        try:
            values[f.name] = np.asarray(data[f.name])  # not copied: nothing writes to loaded examples
        except (ValueError, TypeError) as err:  # ragged nested lists
            raise DataError(f"the inline data for {f.name}: not an array of numbers ({err})") from None
    pieces = []
    for f in fields:
        one = values[f.name].shape == f.shape  # one example written out, as in `input x[2] = [0, 1]`
        if one and takes_labels(f) and _counts(fields, values, f) == {f.size}:
            one = False  # as many labels as the target has entries, and as many examples of the rest
        pieces.append(_array_piece(f, values[f.name][np.newaxis] if one else values[f.name],
                                   f"the inline data for {f.name}", labels=True))
    return pieces


def _counts(fields: list[Field], values: dict, but: Field) -> set:
    """The numbers of examples the inline values of fields other than `but` give, where that is
    clear: not for a target vector given a vector, which is one example or a label each."""
    counts = set()
    for f in fields:
        shape = values[f.name].shape
        if f is but or (takes_labels(f) and len(shape) == 1) or (not shape and f.shape):
            continue
        counts.add(1 if shape == f.shape else shape[0])
    return counts


# --- files ---------------------------------------------------------------------------------------

def _files(paths: list, fields: list[Field], base_dir) -> list[_Piece]:
    """Each file supplies the next field in order; the last file supplies all remaining fields."""
    if not paths:
        raise DataError("no data files were given")
    if len(paths) > len(fields):
        raise DataError(f"{len(paths)} data files were given for {plural(len(fields), 'field')} "
                        f"({', '.join(map(str, fields))}): each file supplies the next field in order")
    pieces = []
    for k, path in enumerate(paths):
        share = fields[k:] if k == len(paths) - 1 else [fields[k]]
        pieces += _file(path, share, base_dir)
    return pieces


def _file(path, fields: list[Field], base_dir) -> list[_Piece]:
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"a data file must be given as a path, not a {type(path).__name__}")
    label = os.fspath(path)  # as the user wrote it
    resolved = Path(base_dir) / path if base_dir is not None else Path(path)
    raw = _read(label, resolved)
    name = resolved.name.lower()
    if name.endswith(".gz"):
        raw, name = _gunzip(raw, label), name[:-3]
    if name.endswith(".csv"):
        return _csv(raw, label, fields)
    if name.endswith(".npz"):
        return _npz(raw, label, fields)
    return _idx(raw, label, fields)


def _read(label: str, resolved: Path) -> bytes:
    if not resolved.exists():
        looked = "" if str(resolved) == label else f" (looked for {resolved})"
        raise DataError(f"{label}: no such file{looked}")
    if resolved.is_dir():
        raise DataError(f"{label}: is a directory, not a data file")
    try:
        return read_regular(resolved)
    except OSError as err:
        raise DataError(f"{label}: cannot read it ({err.strerror or err})") from None


def _gunzip(raw: bytes, label: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except _READ_ERRORS as err:  # not gzip, or cut short
        raise DataError(f"{label}: cannot decompress it as gzip ({err})") from None


def _npz(raw: bytes, label: str, fields: list[Field]) -> list[_Piece]:
    if not raw.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # otherwise np.load would try pickle or .npy
        raise DataError(f"{label}: not an .npz archive (save one with np.savez(path, x=..., y=...))")
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)  # never unpickle: pickles run code
    except _READ_ERRORS as err:
        raise DataError(f"{label}: not a readable .npz archive ({err})") from None
    with archive:
        pieces = []
        for f in fields:
            if f.name not in archive.files:
                raise DataError(f"{label}: no array named {f.name} "
                                f"(it holds {', '.join(archive.files) or 'no arrays'})")
            origin = f"{label}, array {f.name}"
            try:
                values = npz_member(archive, f.name, len(raw), origin)
            except DataError:
                raise
            except _READ_ERRORS as err:  # an object array needs pickle; a damaged member fails its CRC
                raise DataError(f"{origin}: cannot be read without unpickling, or is damaged ({err})") from None
            pieces.append(_array_piece(f, values, origin, labels=True))
    return pieces


# The most a deflated zip member can expand: 258 bytes from 2 bits, 1032 to 1 (zlib's own figure).
_DEFLATE_RATIO = 1032


def npz_member(archive, key: str, size: int, origin: str) -> np.ndarray:
    """`archive[key]` of an .npz archive `size` bytes long, read only once the sizes its zip entry and
    its .npy header claim are found to fit the bytes there: a header that claims terabytes is a
    DataError naming `origin`, before NumPy allocates anything. A damaged member or one that needs
    pickle raises what NumPy and zipfile raise (_READ_ERRORS)."""
    info = archive.zip.getinfo(key if key in archive.zip.namelist() else f"{key}.npy")
    ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: _DEFLATE_RATIO}.get(info.compress_type)
    if ratio is None or info.compress_size > size or info.file_size > ratio * info.compress_size + 64:
        raise DataError(f"{origin}: its zip entry claims {info.file_size:,} bytes from {info.compress_size:,} "
                        f"bytes of a {size:,}-byte file (compression method {info.compress_type}); it is "
                        "damaged, or was not written by np.savez")
    with archive.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(member)
        claimed = math.prod(shape) * dtype.itemsize
        if not dtype.hasobject and claimed != info.file_size - member.tell():
            raise DataError(f"{origin}: its header claims an array of shape {fmt_shape(shape)}, {claimed:,} bytes, "
                            f"but it holds {info.file_size - member.tell():,}; it is damaged")
    return archive[key]


def _idx(raw: bytes, label: str, fields: list[Field]) -> list[_Piece]:
    if len(fields) != 1:
        raise DataError(f"{label}: an IDX file holds one array, but it would have to supply "
                        f"{', '.join(map(str, fields))}: give one file per field, e.g. (images, labels)")
    array = _parse_idx(raw, label)
    if array.ndim == 1:  # a labels file: the values as they are
        return [_array_piece(fields[0], array, label, labels=True)]
    return [_array_piece(fields[0], array / 255.0, label)]  # image bytes -> [0, 1]


_MAX_IDX_AXES = 32  # NumPy's arrays have at most 64 axes, and some of its functions take 32


def _parse_idx(raw: bytes, label: str) -> np.ndarray:
    """An IDX file: 00 00, a type byte (08: unsigned byte), a dimension count, big-endian
    32-bit sizes, then the data in C order (MNIST: 0x00000803 images, 0x00000801 labels)."""
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[3] == 0:
        raise DataError(f"{label}: not a .csv, .npz or IDX file (an IDX file starts with bytes 00 00 08 "
                        f"and a dimension count; this one starts with {raw[:4].hex(' ') or 'nothing'})")
    if raw[2] != 0x08:
        raise DataError(f"{label}: IDX data of type 0x{raw[2]:02x}; only unsigned bytes (0x08) are read")
    ndim = raw[3]
    if ndim > _MAX_IDX_AXES:
        raise DataError(f"{label}: an IDX header of {ndim} dimensions; graphdsl reads at most {_MAX_IDX_AXES}")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataError(f"{label}: truncated IDX header: {ndim} dimensions need {start} header bytes, "
                        f"but the file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    size, found = math.prod(dims), len(raw) - start
    if found != size:
        why = "truncated" if found < size else "extra bytes after the data"
        raise DataError(f"{label}: the IDX header promises {' x '.join(map(str, dims))} = {size} bytes of "
                        f"data, but the file holds {found} ({why})")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims)


# --- CSV -------------------------------------------------------------------------------------------

def _csv(raw: bytes, label: str, fields: list[Field]) -> list[_Piece]:
    """One example per row; the fields take columns left to right, in order."""
    try:
        text = raw.decode("utf-8-sig")  # -sig: drop the byte-order mark spreadsheets write
    except UnicodeDecodeError as err:
        rows = raw[:err.start].split(b"\n")  # up to the bad byte, to name its cell
        raise DataError(f"{label}, row {len(rows)}, column {rows[-1].count(b',') + 1}: not UTF-8 text (byte "
                        f"{err.start + 1} cannot be decoded); save the file as UTF-8") from None
    # Blank lines hold no example; keep each row's line number for messages.
    numbered = [(no, line) for no, line in enumerate(_LINE_END.split(text), 1) if line.strip()]
    if '"' in text:
        for no, line in numbered:
            if line.count('"') % 2:
                raise _open_quote(label, no, line)
    header = numbered[0] if numbered and _is_header(label, *numbered[0]) else None
    if header:
        numbered = numbered[1:]
    if not numbered:
        raise DataError(f"{label}: no examples (the file has no data rows)")
    line_no = [no for no, _ in numbered]
    rows = [line for _, line in numbered]
    sizes = _layout(label, line_no[0], rows[0], fields)
    if header:
        _check_header(label, *header, fields, sizes)
    table = _read_table(label, rows, line_no, fields, sum(sizes))
    pieces, start = [], 0
    for f, size in zip(fields, sizes):
        where = _csv_where(label, line_no, start)
        if size == f.size:
            values = table[:, start:start + size].reshape((len(table),) + f.shape)
        else:  # a target vector's class, one column
            values = _one_hot(table[:, start], f, lambda i, where=where: where(i, 0))
        pieces.append(_Piece(f, np.ascontiguousarray(values), label, where))
        start += size
    return pieces


# Lines end at \n, \r\n or \r, as the csv module reads them: str.splitlines also ends them at \f, \v,
# \x1c-\x1e, \x85, \u2028 and \u2029, which a cell may hold, so a row would be split in two.
_LINE_END = re.compile(r"\r\n|\r|\n")


def _open_quote(label: str, no: int, line: str) -> DataError:
    """The error for a line whose last quoted cell does not end on it. CSV lets a quoted cell hold a
    line break, but no number does, and graphdsl reads an example a line."""
    column, inside = 1, False
    for ch in line:
        if ch == '"':
            inside = not inside
        elif ch == "," and not inside:
            column += 1
    return DataError(f"{label}, row {no}, column {column}: a quoted cell runs onto the next line, and "
                     "a number never does: each example is one line")


def _layout(label: str, no: int, line: str, fields: list[Field]) -> list[int]:
    """The columns each field takes, told by the first row's: its entries, or, for a target vector
    of C entries (a class's one-hot code), either C or one column holding the class."""
    found = len(_cells(label, no, line))
    full = [f.size for f in fields]
    for sizes in (full, [1 if takes_labels(f) else f.size for f in fields]):
        if found == sum(sizes):
            return sizes
    raise _column_error(label, no, found, fields)


def _csv_where(label: str, line_no: list[int], start: int) -> Where:
    def where(i: int, entry: int | None) -> str:
        return f"{label}, row {line_no[i]}" + ("" if entry is None else f", column {start + entry + 1}")
    return where


# Rows per NumPy parse: large enough to run at full speed, small enough that the careful
# reader, which is much slower, rescans little when a chunk holds a bad cell.
_CHUNK = 4096


def _read_table(label: str, rows: list[str], line_no: list[int], fields: list[Field], width: int) -> np.ndarray:
    """The table, `width` columns, chunk by chunk: NumPy's C parser first, the careful reader where it fails."""
    table = np.empty((len(rows), width))
    for start in range(0, len(rows), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        part = _fast_table(rows[chunk])
        if part is None:
            part = _scan_table(label, rows[chunk], line_no[chunk], fields, width)  # raises at the first bad cell
        if part.shape[1] != width:
            raise _column_error(label, line_no[start], part.shape[1], fields, width)
        table[chunk] = part
    return table


def _fast_table(rows: list[str]) -> np.ndarray | None:
    """Rows through NumPy's C parser, as int64 or float64, or None if it rejects them.

    Integers parse much faster than floats, and pixel tables are all integers, so try them
    first; rows with any other number fail on their first one, cheaply.
    """
    for dtype in (np.int64, np.float64):
        try:
            return np.loadtxt(rows, delimiter=",", quotechar='"', comments=None, ndmin=2, dtype=dtype)
        except (ValueError, OverflowError):
            continue
    return None


# A number as NumPy's parser reads one: decimal digits with a sign, point and exponent, or inf or nan.
# Python's float() also reads `1_000` and the digits of other scripts, which NumPy and spreadsheets refuse.
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf(inity)?|nan)\s*", re.I | re.A)


def _scan_table(label: str, rows: list[str], line_no: list[int], fields: list[Field], width: int) -> np.ndarray:
    """The careful, slow reader of what NumPy's parser refused: it reads the numbers that parser reads
    (_NUMBER), names the first bad row or cell, and returns the table if it finds nothing wrong."""
    table = np.empty((len(rows), width))
    for i, line in enumerate(rows):
        cells = _cells(label, line_no[i], line)
        if len(cells) != width:
            raise _column_error(label, line_no[i], len(cells), fields, width)
        for j, cell in enumerate(cells):
            if not _NUMBER.fullmatch(cell):
                shown = cell if len(cell) <= 40 else cell[:37] + "..."
                raise DataError(f'{label}, row {line_no[i]}, column {j + 1}: "{shown}" is not a number')
            table[i, j] = float(cell)
    return table


def _cells(label: str, no: int, line: str) -> list[str]:
    try:
        return next(csv.reader([line]))
    except csv.Error as err:
        raise DataError(f"{label}, row {no}: cannot split the line into cells ({err})") from None


# x, x2, x_2, x[2]: a cell naming a field; only x[2], graphdsl's own way of writing it, is taken
# to number its entries from 0 (x1, x2 may count from 1)
_NAMED = re.compile(r"\s*([A-Za-z_]\w*?)(?:\[(\d+)\]|_?(\d+))?\s*")


def _check_header(label: str, no: int, line: str, fields: list[Field], sizes: list[int]) -> None:
    """Columns are read by position; a header cell that names one of the spec's fields (or an entry
    of one) over another's column would be read as that other without a word, so it is refused.
    x[i] numbers entries from 0; x0, x_1, ... may count from 0 or from 1, but one way throughout."""
    owner = [(f.name, k) for f, size in zip(fields, sizes) for k in range(size)]
    names, counted = {f.name for f in fields}, {}  # a field's suffix numbers: from 0 or from 1
    for column, (cell, (reads, entry)) in enumerate(zip(_cells(label, no, line), owner), 1):
        named = _NAMED.fullmatch(cell)
        if not named or named.group(1) not in names:
            continue
        index, suffix = named.group(2), named.group(3)
        start = None if suffix is None else counted.setdefault(reads, int(suffix) - entry)
        if (named.group(1) != reads or (index is not None and int(index) != entry)
                or (suffix is not None and (start not in (0, 1) or int(suffix) != entry + start))):
            order = ", ".join(f"{f.name} ({size} column{'s' if size > 1 else ''})" for f, size in zip(fields, sizes))
            raise DataError(f"{label}, row {no}, column {column}: the header names it {cell.strip()!r}, but columns "
                            f"are read in the spec's order of declaration, {order}, so it would be read as "
                            f"{reads}[{entry}]; put the columns in that order")


def _is_header(label: str, no: int, line: str) -> bool:
    """A first row with a cell that is not a number names the columns. An empty cell does not
    make a header: in a data row it is a missing value, reported as such."""
    def number(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False
    return any(cell.strip() and not number(cell) for cell in _cells(label, no, line))


def _column_error(label: str, no: int, found: int, fields: list[Field], width: int | None = None) -> DataError:
    """The error for a row of `found` cells; `width`: the first row's, once it is known."""
    need = ", ".join(f"{f.name}: {f.size}" for f in fields)
    labelled = " and ".join(f.name for f in fields if takes_labels(f))
    fewer = sum(1 if takes_labels(f) else f.size for f in fields)
    if width == fewer != sum(f.size for f in fields):
        return DataError(f"{label}, row {no}: {plural(found, 'column')}, but the first row has {width}, with one "
                         f"column for the class of {labelled}; every row needs the same")
    also = f", or {fewer} with one column for the class of {labelled}" if labelled else ""
    return DataError(f"{label}, row {no}: {plural(found, 'column')}, but the spec's fields need "
                     f"{sum(f.size for f in fields)} ({need}){also}")
