"""graphdsl.training.data: loading examples for a spec's inputs and targets, and every way it can fail.

Expected values come from independent computations here (literal tables, struct-packed IDX
bytes, scikit-learn and NumPy directly), never from the loader itself.
"""
import gzip
import struct
import sys

import numpy as np
import pytest

from graphdsl.training import data
from graphdsl.training.data import BUILTIN, Field, load, split
from graphdsl.errors import DataError

X4 = Field("x", "input", (4,))
Y = Field("y", "target", ())
K3 = Field("k", "target", (), classes=3)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def error(source, fields, **kw) -> str:
    with pytest.raises(DataError) as info:
        load(source, fields, **kw)
    return str(info.value)


def assert_contract(arrays, fields, n):
    """Every field present, float64, C-contiguous, shape (n,) + field.shape."""
    assert list(arrays) == [f.name for f in fields]
    for f in fields:
        a = arrays[f.name]
        assert a.dtype == np.float64 and a.flags.c_contiguous
        assert a.shape == (n,) + f.shape


# --- CSV -----------------------------------------------------------------------------------------

def test_csv_without_header_fields_take_columns_left_to_right(tmp_path):
    path = write(tmp_path, "d.csv", "1,2,3,4,0\n5,6,7,8.5,2\n")
    out = load(path, [X4, K3])
    assert_contract(out, [X4, K3], 2)
    np.testing.assert_array_equal(out["x"], [[1, 2, 3, 4], [5, 6, 7, 8.5]])
    np.testing.assert_array_equal(out["k"], [0, 2])


def test_csv_header_is_skipped_and_trailing_blank_lines_ignored(tmp_path):
    write(tmp_path, "d.csv", "a,b,c,d,label\r\n1,2,3,4,1\r\n-1,0,1e2,+3,0\r\n\r\n   \n")
    out = load("d.csv", [X4, K3], base_dir=tmp_path)
    np.testing.assert_array_equal(out["x"], [[1, 2, 3, 4], [-1, 0, 100, 3]])
    np.testing.assert_array_equal(out["k"], [1, 0])


@pytest.mark.parametrize("header", ["k,x0,x1,x2,x3", "x[1],x[0],x[2],x[3],k", "x,x,x,k,x", "x_0,x_1,k,x_2,x_3",
                                    "a,b,c,d,x", "x1,x0,x2,x3,k", "x0,x2,x1,x3,k", "x1,x2,x4,x3,k", "x0,x1,x2,x4,k",
                                    "x2,x3,x4,x5,k"])
def test_csv_header_naming_the_fields_in_another_order_is_refused(tmp_path, header):
    """Columns are read by position: a header that names the spec's fields (or x[i] entries) over
    other columns would be read silently wrong, so the file is refused at the cell, saying the order."""
    write(tmp_path, "d.csv", header + "\n1,2,3,4,0\n")
    with pytest.raises(DataError, match=r"d\.csv, row 1, column \d: the header names it .* x \(4 columns\), k \(1 column\)"):
        load("d.csv", [X4, K3], base_dir=tmp_path)


@pytest.mark.parametrize("header", ["x0,x1,x2,x3,k", "x1,x2,x3,x4,k", "x_1,x_2,x_3,x_4,k", "x[0],x[1],x[2],x[3],k",
                                    "x,x,x,x,k", "sepal,petal,a,b,species", "x1,x2,a,b,k"])
def test_csv_header_in_the_spec_order_or_of_other_names_reads_by_position(tmp_path, header):
    """x1..x4 may count from 1 (x[i] counts from 0); names that are not the spec's fields say
    nothing about the order."""
    write(tmp_path, "d.csv", header + "\n1,2,3,4,0\n")
    np.testing.assert_array_equal(load("d.csv", [X4, K3], base_dir=tmp_path)["x"], [[1, 2, 3, 4]])


def test_csv_matrix_field_takes_its_columns_in_c_order(tmp_path):
    m = Field("m", "input", (2, 3))
    path = write(tmp_path, "m.csv", "1,2,3,4,5,6,7\n8,9,10,11,12,13,14\n")
    out = load(path, [Y, m])
    np.testing.assert_array_equal(out["y"], [1, 8])
    np.testing.assert_array_equal(out["m"], [[[2, 3, 4], [5, 6, 7]], [[9, 10, 11], [12, 13, 14]]])


def test_csv_quoted_numbers_gzip_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress('\ufeffx,y\n"1.5",2\n3,"4"\n'.encode("utf-8")))
    out = load(path, [Field("x", "input", ()), Y])
    np.testing.assert_array_equal(out["x"], [1.5, 3])
    np.testing.assert_array_equal(out["y"], [2, 4])


def test_csv_bad_cell_names_file_row_and_column(tmp_path):
    write(tmp_path, "train.csv", "a,b,c,d,e\n1,2,3,4,0\n\n1,2,abc,4,0\n")
    msg = error("train.csv", [X4, K3], base_dir=tmp_path)
    # the header is line 1 and the blank line 3: the bad row is the file's line 4
    assert msg == 'train.csv, row 4, column 3: "abc" is not a number'


def test_csv_empty_cell_in_the_first_row_is_not_a_header(tmp_path):
    path = write(tmp_path, "d.csv", "1,,3,4,0\n")
    assert error(path, [X4, K3]) == f'{path}, row 1, column 2: "" is not a number'


def test_csv_wrong_column_count_names_the_row_and_each_fields_need(tmp_path):
    path = write(tmp_path, "d.csv", "h1,h2,h3,h4,h5\n1,2,3,4,5\n")
    fields = [X4, Y, Field("k", "target", ())]
    assert error(path, fields) == f"{path}, row 2: 5 columns, but the spec's fields need 6 (x: 4, y: 1, k: 1)"


def test_csv_ragged_row_is_found(tmp_path):
    path = write(tmp_path, "d.csv", "1,2,3,4,0\n1,2,3,4,0\n1,2,3,0\n")
    assert error(path, [X4, K3]) == f"{path}, row 3: 4 columns, but the spec's fields need 5 (x: 4, k: 1)"


@pytest.mark.parametrize("cell, shown", [("nan", "nan"), ("inf", "inf"), ("-Infinity", "-inf")])
def test_csv_non_finite_value_names_row_and_column(tmp_path, cell, shown):
    path = write(tmp_path, "d.csv", f"1,2,3,4,0\n1,2,3,{cell},0\n")
    msg = error(path, [X4, K3])
    assert msg.startswith(f"{path}, row 2, column 4: {shown} is not a finite number")


@pytest.mark.parametrize("value, shown", [("3", "3"), ("-1", "-1"), ("1.5", "1.5")])
def test_csv_class_index_out_of_range_or_not_whole(tmp_path, value, shown):
    path = write(tmp_path, "d.csv", f"x1,x2,x3,x4,k\n1,2,3,4,0\n1,2,3,4,2\n1,2,3,4,{value}\n")
    msg = error(path, [X4, K3])
    assert msg == (f"{path}, row 4, column 5: {shown} is not a class index for k: "
                   "expected a whole number from 0 to 2")


def test_csv_with_only_a_header_has_no_examples(tmp_path):
    path = write(tmp_path, "d.csv", "a,b,c,d,e\n\n")
    assert "no examples" in error(path, [X4, K3])
    assert "no examples" in error(write(tmp_path, "e.csv", ""), [X4, K3])


def test_csv_chunks_mix_integers_and_floats_and_keep_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_CHUNK", 2)
    path = write(tmp_path, "d.csv", "a,b\n1,2\n3,4\n\n5.5,6\n7,8\n9,10\n")
    out = load(path, [Field("a", "input", ()), Y])
    np.testing.assert_array_equal(out["a"], [1, 3, 5.5, 7, 9])
    np.testing.assert_array_equal(out["y"], [2, 4, 6, 8, 10])
    write(tmp_path, "d.csv", "a,b\n1,2\n3,4\n\n5.5,6\n7,8\n9,x\n")
    assert error(path, [Field("a", "input", ()), Y]) == f'{path}, row 7, column 2: "x" is not a number'
    write(tmp_path, "d.csv", "1,2\n3,4\n5,6,7\n8,9,10\n")
    assert error(path, [Field("a", "input", ()), Y]).startswith(f"{path}, row 3: 3 columns")


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"1,2,3,4,0\n1,2\xff,3,4,0\n")  # the 14th byte, in row 2's second cell
    assert error(path, [X4, K3]) == (f"{path}, row 2, column 2: not UTF-8 text (byte 14 cannot be decoded); "
                                     "save the file as UTF-8")


def test_large_integer_csv_takes_the_fast_path(tmp_path):
    rng = np.random.default_rng(1)
    table = rng.integers(0, 256, size=(3000, 785))
    path = tmp_path / "big.csv"
    path.write_text("label," + ",".join(f"p{i}" for i in range(784)) + "\n"
                    + "\n".join(",".join(map(str, row)) for row in table) + "\n")
    out = load(path, [Field("k", "target", (), classes=256), Field("x", "input", (28, 28))])
    assert_contract(out, [Field("k", "target", ()), Field("x", "input", (28, 28))], 3000)
    np.testing.assert_array_equal(out["k"], table[:, 0])
    np.testing.assert_array_equal(out["x"], table[:, 1:].reshape(3000, 28, 28))


# --- files in general ----------------------------------------------------------------------------

def test_missing_file_names_the_path_as_written_and_as_resolved(tmp_path):
    msg = error("data/nope.csv", [X4, K3], base_dir=tmp_path)
    assert msg == f"data/nope.csv: no such file (looked for {tmp_path / 'data' / 'nope.csv'})"


def test_directory_is_not_a_data_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    assert error(tmp_path / "d.csv", [X4, K3]) == f"{tmp_path / 'd.csv'}: is a directory, not a data file"


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, "d.csv", "1,2,3,4,0\n")

    def refuse(where):  # chmod 0 does not stop root, so refuse the read directly
        raise PermissionError(13, "Permission denied", str(where))
    monkeypatch.setattr(data, "read_regular", refuse)
    assert error(path, [X4, K3]) == f"{path}: cannot read it (Permission denied)"


def test_bad_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(b"not gzip at all")
    assert error(path, [X4, K3]).startswith(f"{path}: cannot decompress it as gzip")
    path.write_bytes(gzip.compress(b"1,2,3,4,0\n" * 100)[:30])
    assert error(path, [X4, K3]).startswith(f"{path}: cannot decompress it as gzip")


def test_fields_must_have_the_same_number_of_examples(tmp_path):
    a = write(tmp_path, "a.csv", "1,2,3,4\n5,6,7,8\n")
    b = write(tmp_path, "b.csv", "0\n")
    msg = error((a, b), [X4, K3])
    assert msg == f"every field needs one value per example, but x has 2 examples ({a}) and k has 1 ({b})"


def test_tuple_of_files_each_supplies_the_next_field_last_the_rest(tmp_path):
    a = write(tmp_path, "a.csv", "1\n2\n")
    b = write(tmp_path, "b.csv", "1,2,3,4,0\n5,6,7,8,1\n")
    out = load([a, b], [Y, X4, K3])
    np.testing.assert_array_equal(out["y"], [1, 2])
    np.testing.assert_array_equal(out["x"], [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(out["k"], [0, 1])
    assert "3 data files were given for 2 fields" in error((a, b, b), [X4, K3])


def test_unknown_source_type():
    assert "cannot read examples from a int" in error(3, [X4, K3])


# --- npz -----------------------------------------------------------------------------------------

def test_npz_round_trip_by_field_name(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    k = np.array([0, 2, 1], dtype=np.int64)
    np.savez(tmp_path / "d.npz", k=k, x=x, extra=np.zeros(2))
    out = load(tmp_path / "d.npz", [X4, K3])
    assert_contract(out, [X4, K3], 3)
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["k"], k)


def test_npz_labels_for_a_vector_target_are_one_hot(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=np.array([2, 0, 1]))
    out = load(tmp_path / "d.npz", [X4, Field("y", "target", (3,))])
    np.testing.assert_array_equal(out["y"], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_npz_missing_key_lists_the_keys_present(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 4)), labels=np.zeros(3))
    assert error(path, [X4, K3]) == f"{path}: no array named k (it holds x, labels)"


def test_npz_wrong_shape_says_expected_and_found(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 5)), k=np.zeros(3))
    assert error(path, [X4, K3]) == (f"{path}, array x: x[4] needs an array of shape [n, 4] "
                                     "(n examples of [4]), but found shape [3, 5]")


def test_npz_values_are_checked_with_example_and_entry(tmp_path):
    path = tmp_path / "d.npz"
    x = np.zeros((3, 4))
    x[1, 2] = np.nan
    np.savez(path, x=x, k=np.zeros(3))
    assert error(path, [X4, K3]).startswith(f"{path}, array x, example 2, entry 3: nan is not a finite number")
    np.savez(path, x=np.zeros((3, 4)), k=np.array([0, 1, 7]))
    assert error(path, [X4, K3]).startswith(f"{path}, array k, example 3: 7 is not a class index for k")


def test_npz_strings_are_not_numbers(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([["1", "2", "3", "4"]]), k=np.zeros(1))
    assert "holds <U1 values, but x[4] needs numbers" in error(path, [X4, K3])


UNPICKLED = []


def _record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class Trap:
    """Unpickling this runs code: the loader must never do it."""

    def __reduce__(self):
        return (_record_unpickling, ("ran",))


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([[Trap(), 1, 2, 3]], dtype=object), k=np.zeros(1))
    msg = error(path, [X4, K3])
    assert msg.startswith(f"{path}, array x: cannot be read without unpickling")
    assert UNPICKLED == []


@pytest.mark.parametrize("content", [b"", b"1,2,3\n", b"\x93NUMPY\x01\x00", b"PK\x03\x04broken"])
def test_npz_that_is_not_an_archive(tmp_path, content):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    assert error(path, [X4, K3]).startswith(f"{path}: not a")


# --- IDX (MNIST format) --------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written by hand: magic 00 00 08 <ndim>, big-endian sizes, then the bytes."""
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_like(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 2), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 3], dtype=np.uint8)
    (tmp_path / "images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return tmp_path, images, labels


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_images_and_labels(mnist_like, suffix):
    tmp_path, images, labels = mnist_like
    fields = [Field("x", "input", (6,)), Field("k", "target", (), classes=10)]
    out = load((f"images-idx3-ubyte{suffix}", f"labels-idx1-ubyte{suffix}"), fields, base_dir=tmp_path)
    assert_contract(out, fields, 5)
    expected = np.array([[px / 255 for px in image.ravel().tolist()] for image in images])
    np.testing.assert_allclose(out["x"], expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(out["k"], [3, 0, 9, 1, 3])


def test_idx_images_keep_their_matrix_shape_and_labels_one_hot(mnist_like):
    tmp_path, images, labels = mnist_like
    fields = [Field("img", "input", (3, 2)), Field("y", "target", (10,))]
    out = load((tmp_path / "images-idx3-ubyte", tmp_path / "labels-idx1-ubyte"), fields)
    np.testing.assert_allclose(out["img"], images / 255.0)
    expected = np.zeros((5, 10))
    for row, label in enumerate([3, 0, 9, 1, 3]):
        expected[row, label] = 1
    np.testing.assert_array_equal(out["y"], expected)


def test_idx_label_too_big_for_one_hot(mnist_like):
    tmp_path, _, _ = mnist_like
    path = tmp_path / "labels-idx1-ubyte"
    fields = [Field("x", "input", (6,)), Field("y", "target", (4,))]
    msg = error((tmp_path / "images-idx3-ubyte", path), fields)
    assert msg == (f"{path}, example 3: label 9 cannot be one-hot encoded for y[4]: "
                   "expected a whole number from 0 to 3")


def test_idx_element_count_must_match_the_field(mnist_like):
    tmp_path, _, _ = mnist_like
    msg = error((tmp_path / "images-idx3-ubyte", tmp_path / "labels-idx1-ubyte"),
                [Field("x", "input", (7,)), K3])
    assert "x[7] needs an array of shape [n, 7]" in msg and "found shape [5, 3, 2]" in msg


def test_idx_truncated_data(tmp_path):
    path = tmp_path / "t-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((4, 2, 2)))[:-3])
    msg = error(path, [Field("x", "input", (4,))])
    assert msg == f"{path}: the IDX header promises 4 x 2 x 2 = 16 bytes of data, but the file holds 13 (truncated)"


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "t-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">I", 60000)))
    msg = error(path, [Field("x", "input", (4,))])
    assert msg == f"{path}: truncated IDX header: 3 dimensions need 16 header bytes, but the file has 8"


@pytest.mark.parametrize("content, words", [(b"", "not a .csv, .npz or IDX file"),
                                            (b"hello world", "not a .csv, .npz or IDX file"),
                                            (b"\x00\x00\x0d\x01" + struct.pack(">I", 0), "type 0x0d")])
def test_idx_bad_magic(tmp_path, content, words):
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    assert words in error(path, [Field("x", "input", ())])


def test_one_idx_file_cannot_supply_two_fields(mnist_like):
    tmp_path, _, _ = mnist_like
    msg = error(tmp_path / "images-idx3-ubyte", [Field("x", "input", (6,)), K3])
    assert "an IDX file holds one array, but it would have to supply x[6], k" in msg


# --- builtin data sets -----------------------------------------------------------------------------

def test_iris_is_standardised_with_one_hot_or_index_targets():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.preprocessing import StandardScaler
    iris = datasets.load_iris()
    fields = [Field("x", "input", (4,)), Field("y", "target", (3,))]
    out = load("iris", fields)
    assert_contract(out, fields, 150)
    np.testing.assert_allclose(out["x"], StandardScaler().fit_transform(iris.data), atol=1e-12)
    np.testing.assert_allclose(out["x"].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out["x"].std(axis=0), 1, atol=1e-12)
    np.testing.assert_array_equal(out["y"].argmax(axis=1), iris.target)
    np.testing.assert_array_equal(out["y"].sum(axis=1), 1)
    k = load("iris", [Field("x", "input", (4,)), Field("k", "target", (), classes=3)])["k"]
    np.testing.assert_array_equal(k, iris.target)


@pytest.mark.parametrize("shape", [(8, 8), (64,)])
def test_digits_are_scaled_to_unit_range(shape):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    fields = [Field("k", "target", (), classes=10), Field("x", "input", shape)]
    out = load("digits", fields)
    assert_contract(out, fields, 1797)
    np.testing.assert_array_equal(out["x"], (digits.images / 16.0).reshape((1797,) + shape))
    assert out["x"].min() == 0 and out["x"].max() == 1
    np.testing.assert_array_equal(out["k"], digits.target)


def test_builtin_needs_one_input_and_one_target():
    assert BUILTIN == ("iris", "digits")
    msg = error("iris", [X4, Field("z", "input", ()), Y])
    assert msg == ('the builtin data set "iris" supplies one input (the features) and one target '
                   "(the labels), but the spec reads input x, input z, target y")


def test_builtin_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` raise ImportError
    assert error("digits", [X4, Y]) == ('the builtin data set "digits" needs scikit-learn: '
                                        'pip install "graphdsl[data]"')


# --- inline data ---------------------------------------------------------------------------------

def test_inline_single_example_and_batches():
    out = load({"x": [0, 1, 2, 3], "y": 1}, [X4, Y])
    assert_contract(out, [X4, Y], 1)
    np.testing.assert_array_equal(out["x"], [[0, 1, 2, 3]])
    batch = {"x": np.arange(8).reshape(2, 4), "k": [0, 2]}
    out = load(batch, [X4, K3])
    np.testing.assert_array_equal(out["x"], [[0, 1, 2, 3], [4, 5, 6, 7]])
    out["x"][0, 0] = 99  # the result is a copy, not the caller's array
    assert batch["x"][0, 0] == 0


def test_inline_errors():
    assert error({"x": [1, 2, 3, 4]}, [X4, Y]) == "the inline data has no values for y (it has x)"
    assert "not an array of numbers" in error({"x": [[1, 2], [3]], "y": [1]}, [X4, Y])
    assert "holds <U1 values" in error({"x": ["1", "2", "3", "4"], "y": 1}, [X4, Y])
    assert error({"x": [1, 2, 3, 4], "k": 5}, [X4, K3]).startswith(
        "the inline data for k, example 1: 5 is not a class index for k")
    assert "no examples for x[4]" in error({"x": np.zeros((0, 4)), "y": np.zeros(0)}, [X4, Y])


def test_field_list_is_checked():
    assert "no input or target" in error({}, [])
    assert "only an input or a target" in error({"w": 1}, [Field("w", "param", ())])
    assert "named twice" in error({"x": 1}, [Field("x", "input", ()), Field("x", "target", ())])


# --- split ---------------------------------------------------------------------------------------

def arrays(n):
    return {"x": np.arange(n * 2, dtype=float).reshape(n, 2), "k": np.arange(n, dtype=float)}


def test_split_sizes_and_examples_stay_whole():
    train, val = split(arrays(10), 0.3, seed=0)
    assert len(train["x"]) == len(train["k"]) == 7 and len(val["x"]) == len(val["k"]) == 3
    for part in (train, val):
        np.testing.assert_array_equal(part["x"][:, 0], 2 * part["k"])  # rows move together
        assert all(a.flags.c_contiguous for a in part.values())
    np.testing.assert_array_equal(np.sort(np.concatenate([train["k"], val["k"]])), np.arange(10))


def test_split_is_a_seeded_shuffle():
    n, seed = 20, 7
    order = np.random.default_rng(seed).permutation(n)  # the documented recipe, computed here
    train, val = split(arrays(n), 0.25, seed)
    np.testing.assert_array_equal(train["k"], order[:15])
    np.testing.assert_array_equal(val["k"], order[15:])
    again, _ = split(arrays(n), 0.25, seed)
    np.testing.assert_array_equal(again["k"], train["k"])
    other, _ = split(arrays(n), 0.25, seed + 1)
    assert not np.array_equal(other["k"], train["k"])


def test_split_without_validation():
    train, val = split(arrays(5), 0.0, seed=1)
    assert val == {} and len(train["k"]) == 5
    assert split(arrays(5), 0.05, seed=1)[1] == {}  # round(0.25) == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 0.95, float("nan")])
def test_split_rejects_fractions_that_leave_nothing(fraction):
    with pytest.raises(DataError):
        split(arrays(5), fraction, seed=0)


def test_split_needs_equal_counts():
    with pytest.raises(DataError, match="x has 3, k has 2"):
        split({"x": np.zeros(3), "k": np.zeros(2)}, 0.5, seed=0)


def test_a_float32_run_gets_float32_data_as_given_and_refuses_what_does_not_fit():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = load({"x": x, "k": np.array([0, 2, 1])}, [X4, K3], None, np.float32)
    assert np.shares_memory(out["x"], x) and out["k"].dtype == np.float32  # float32 data: no copy
    big = np.zeros((3, 4))
    big[1, 2] = 1e39  # finite in float64, inf in float32
    with pytest.raises(DataError, match=r"1e\+39 does not fit in float32"):
        load({"x": big, "k": np.array([0, 2, 1])}, [X4, K3], None, np.float32)
