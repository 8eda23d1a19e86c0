"""FLAME pickles that abuse numpy's own unpickling: crafted dtypes, shapes and bytes are refused
with ``FlameFileError``, never handed to numpy; plain arrays of every allowed dtype still load.

A dtype whose pickled state declares object fields makes numpy read bytes from the file as object
pointers and crash the process, so every hostile file is loaded in a subprocess: a segfault then
fails the test instead of killing pytest.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mxr.models.flame import (
    MAX_ARRAY_BYTES, REQUIRED_KEYS, FlameFileError, RestrictedUnpickler, as_array, load_flame, read_flame_pickle,
)

from flame_fixtures import FlamePickler, chumpy_array, sparse_csc, write_doubled_list_pickle

try:
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy < 1.26
    from numpy.core.multiarray import _reconstruct, scalar

# (protocol, Python 2 str for every string) as FLAME 2020 (protocol 2, py2), old and new Python 3 write
PICKLE_STYLES = ((0, True), (0, False), (2, True), (2, False), (4, False))
PLAIN_DTYPES = ("b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16")


class Dtype:
    """Pickles as ``numpy.dtype(descr, False, True)`` followed by a BUILD with ``state``."""

    def __init__(self, descr: str, state: tuple) -> None:
        self.descr, self.state = descr, state

    def __reduce__(self):
        return np.dtype, (self.descr, False, True), self.state


class Array:
    """Pickles as numpy's ``_reconstruct(ndarray, (0,), b'b')`` followed by a BUILD with ``state``
    (no BUILD when ``state`` is None)."""

    def __init__(self, state: tuple | None, subtype: type = np.ndarray) -> None:
        self.state, self.subtype = state, subtype

    def __reduce__(self):
        call = _reconstruct, (self.subtype, (0,), b"b")
        return call if self.state is None else (*call, self.state)


class Scalar:
    """Pickles as numpy's ``scalar(dtype, data)``."""

    def __init__(self, dtype: object, data: object) -> None:
        self.dtype, self.data = dtype, data

    def __reduce__(self):
        return scalar, (self.dtype, self.data)


# numpy's dtype state is (version, byte order, subarray, names, fields, itemsize, alignment, flags);
# flags 0 hides the object field from numpy's bookkeeping (it reads the field's 'pointer' on
# access), 61 is an object dtype's flags without NPY_LIST_PICKLE (it decrefs the 'pointer' on free).
def object_field_dtype(descr: str, flags: int) -> Dtype:
    return Dtype(descr, (3, "|", None, ("f",), {"f": (np.dtype(object), 0)}, 8, 1, flags))


POINTER = b"\x41" * 8  # what numpy would dereference


def crafted_values(route: str) -> dict[str, object]:
    """Every crafted object-field dtype, reached through ``route`` ("array" or "scalar")."""
    values = {}
    for descr in ("V8", "f8"):  # a void descr, and an allow-listed one whose state lies
        for flags in (0, 61):
            dtype = object_field_dtype(descr, flags)
            if route == "array":
                values[f"{descr}-flags{flags}"] = Array((1, (1,), dtype, False, POINTER))
            else:
                values[f"{descr}-flags{flags}"] = Scalar(dtype, POINTER)
    return values


def write(path: Path, content: object, protocol: int, python2: bool) -> Path:
    with open(path, "wb") as handle:
        FlamePickler(handle, protocol, python2).dump(content)
    return path


LOAD_IN_SUBPROCESS = """
import gc, json, sys
from mxr.models.flame import FlameFileError, load_flame, read_flame_pickle
for path in json.loads(sys.argv[1]):
    for step in (load_flame, lambda path: repr(read_flame_pickle(path))):
        print("loading", path, flush=True)
        try:
            step(path)
            print("LOADED", path, flush=True)
        except FlameFileError as error:
            print("FlameFileError:", error, flush=True)
        gc.collect()
"""


def load_in_subprocess(paths: list[Path]) -> list[str]:
    """``load_flame`` and ``read_flame_pickle`` (and repr of what it read) on each file, in a
    subprocess; the error line of each, after checking the subprocess survived."""
    result = subprocess.run([sys.executable, "-c", LOAD_IN_SUBPROCESS, json.dumps([str(path) for path in paths])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the loader crashed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if not line.startswith("loading ")]
    assert len(lines) == 2 * len(paths), result.stdout + result.stderr
    return lines


@pytest.mark.parametrize("placement", ["value", "sparse", "chumpy"])
@pytest.mark.parametrize("route", ["array", "scalar"])
def test_object_field_dtypes_are_refused_without_crashing(route: str, placement: str, tmp_path: Path) -> None:
    paths = []
    for name, value in crafted_values(route).items():
        if placement == "sparse":  # the crafted value as the sparse J_regressor's data
            sparse = sparse_csc(np.eye(2), python2=True)
            sparse.state["data"] = value
            content = {"J_regressor": sparse}
        elif placement == "chumpy":
            content = {"shapedirs": chumpy_array(value)}
        else:
            content = {"v_template": value}
        for protocol, python2 in PICKLE_STYLES:
            path = tmp_path / f"{name}-p{protocol}-py{2 if python2 else 3}.pkl"
            paths.append(write(path, content, protocol, python2))
    for line in load_in_subprocess(paths):
        assert line.startswith("FlameFileError:") and "dtype" in line, line


def test_allowed_descr_whose_state_declares_fields_is_refused(tmp_path: Path) -> None:
    plain_field = Dtype("f8", (3, "<", None, None, None, -1, -1, 0))
    lying = Dtype("f8", (3, "|", None, ("f",), {"f": (plain_field, 0)}, 8, 1, 0))
    path = write(tmp_path / "lying_f8.pkl", {"v_template": Array((1, (1,), lying, False, POINTER))}, 2, True)
    assert load_in_subprocess([path])[0].startswith("FlameFileError:")  # survives, so also in-process:
    with pytest.raises(FlameFileError, match=r"lying_f8\.pkl: refused a pickled dtype 'f8' with fields"):
        load_flame(path)


def _load_value(value: object, tmp_path: Path, protocol: int, python2: bool) -> object:
    path = write(tmp_path / "value.pkl", value, protocol, python2)
    with open(path, "rb") as handle:
        return RestrictedUnpickler(handle, encoding="latin1").load()


@pytest.mark.parametrize("protocol, python2", PICKLE_STYLES)
def test_plain_arrays_round_trip_exactly(protocol: int, python2: bool, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, 4 * 3 * 2 * 16, dtype=np.uint8).tobytes()
    for descr in PLAIN_DTYPES:
        for order in "<>":
            dtype = np.dtype(order + descr)
            if dtype.kind == "b":
                source = rng.integers(0, 2, (4, 3, 2)).astype(bool)
            elif dtype.kind == "f":  # finite values, so equality means bit equality
                source = rng.normal(size=(4, 3, 2)).astype(dtype)
            elif dtype.kind == "c":
                source = (rng.normal(size=(4, 3, 2)) + 1j * rng.normal(size=(4, 3, 2))).astype(dtype)
            else:
                source = np.frombuffer(raw, dtype=dtype, count=24).reshape(4, 3, 2)
            for array in (source, np.asfortranarray(source), source[0, 0, 0].reshape(()), source[:0]):
                loaded = as_array(_load_value(array, tmp_path, protocol, python2))
                assert loaded.dtype == array.dtype and loaded.shape == array.shape, (descr, order)
                assert loaded.flags.f_contiguous == array.flags.f_contiguous or array.ndim < 2
                assert loaded.flags.writeable
                np.testing.assert_array_equal(loaded, array)
            loaded_scalar = _load_value(source.flat[1], tmp_path, protocol, python2)
            assert type(loaded_scalar) is type(source.flat[1]) and loaded_scalar == source.flat[1]


def test_plain_arrays_inside_sparse_and_chumpy(tmp_path: Path) -> None:
    dense = np.array([[0.0, 2.0, 0.0], [1.5, 0.0, 0.0], [0.0, 0.0, -3.0]])
    for protocol, python2 in PICKLE_STYLES:
        sparse = sparse_csc(dense, python2=True)
        sparse.state["_shape"] = tuple(np.int64(size) for size in dense.shape)  # numpy scalars, as Python 2 may
        np.testing.assert_array_equal(as_array(_load_value(sparse, tmp_path, protocol, python2)), dense)
        big_endian = chumpy_array(dense.astype(">f8"))
        np.testing.assert_array_equal(as_array(_load_value(big_endian, tmp_path, protocol, python2)), dense)


def _refusal(value: object, tmp_path: Path, protocol: int = 2, python2: bool = True) -> str:
    """The FlameFileError message ``load_flame`` gives for a dict of FLAME's keys with ``value`` as
    'v_template' (the others tiny: values are read before shapes are checked)."""
    content = {key: np.zeros(1) for key in REQUIRED_KEYS}
    content["v_template"] = value
    path = write(tmp_path / "refused.pkl", content, protocol, python2)
    with pytest.raises(FlameFileError) as error:
        load_flame(path)
    return str(error.value)


f8 = Dtype("f8", (3, "<", None, None, None, -1, -1, 0))


@pytest.mark.parametrize("protocol, python2", PICKLE_STYLES)
def test_inconsistent_arrays_are_refused(protocol: int, python2: bool, tmp_path: Path) -> None:
    def refused(value: object) -> str:
        return _refusal(value, tmp_path, protocol, python2)

    assert "(3, 4) (float64) but holds 88 bytes" in refused(Array((1, (3, 4), f8, False, b"\0" * 88)))
    assert "(3, 4) (float64) but holds 104 bytes" in refused(Array((1, (3, 4), f8, False, b"\0" * 104)))
    assert "larger than any FLAME array" in refused(Array((1, (2**20, 2**20), f8, False, b"\0" * 8)))
    assert "larger than any FLAME array" in refused(Array((1, (0, 2**40), f8, False, b"")))
    assert "larger than any FLAME array" in refused(Array((1, (MAX_ARRAY_BYTES // 8 + 1,), f8, False, b"")))
    assert "impossible shape (-1, 8)" in refused(Array((1, (-1, 8), f8, False, b"\0" * 64)))
    assert "impossible shape" in refused(Array((1, (1,) * 33, f8, False, b"\0" * 8)))
    assert "not a tuple of integers" in refused(Array((1, (2.0,), f8, False, b"\0" * 16)))
    assert "holds Python objects" in refused(Array((1, (2,), f8, False, [1.0, 2.0])))
    assert "holds Python objects" in refused(Array((1, (1,), f8, False, None)))
    assert "no valid memory order" in refused(Array((1, (1,), f8, 2, b"\0" * 8)))
    assert "state numpy never writes" in refused(Array((2, (1,), f8, False, b"\0" * 8)))
    assert "state numpy never writes" in refused(Array(((1,), f8, False, b"\0" * 8)))
    assert "no complete plain dtype" in refused(Array((1, (1,), "f8", False, b"\0" * 8)))
    assert "anything but a plain ndarray" in refused(Array((1, (1,), f8, False, b"\0" * 8), subtype=object))
    assert "holds 4 bytes, not 8" in refused(Scalar(f8, b"\0" * 4))


@pytest.mark.parametrize("protocol, python2", PICKLE_STYLES)
def test_non_plain_dtypes_are_refused(protocol: int, python2: bool, tmp_path: Path) -> None:
    def refused(value: object) -> str:
        return _refusal(value, tmp_path, protocol, python2)

    for array in (np.array([1, None], dtype=object), np.zeros(2, dtype="M8[s]"), np.zeros(2, dtype="U3"),
                  np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]),
                  np.zeros(2, dtype="V8"), np.zeros(2, dtype=np.longdouble), np.zeros(2, dtype="S4")):
        assert "refused the dtype" in refused(array), array.dtype
    assert "refused the dtype 'O8'" in refused(Scalar(np.dtype(object), 5))
    metadata = Dtype("f8", (4, "<", None, None, None, -1, -1, 0, {"a": 1}))
    subarray = Dtype("f8", (3, "<", (np.dtype("f8"), (2,)), None, None, -1, -1, 0))
    for dtype in (metadata, subarray, Dtype("f8", (3, "|", None, None, None, -1, -1, 0)),
                  Dtype("f8", (3, "<", None, None, None, 16, -1, 0)),
                  Dtype("f8", (3, "!", None, None, None, -1, -1, 0))):
        assert "dtype 'f8'" in refused(Array((1, (1,), dtype, False, b"\0" * 8))), dtype.state


def test_malformed_stand_ins_are_refused(tmp_path: Path) -> None:
    dense = np.eye(3)
    huge = sparse_csc(dense)
    huge.state["_shape"] = (2**20, 2**20)
    hollow = sparse_csc(dense)
    hollow.state["indptr"] = np.array([0, 2, 1, 3], dtype=np.int32)
    nested = chumpy_array(chumpy_array(dense))
    looped = chumpy_array(dense)
    looped.state["x"] = looped  # pickled as a reference to itself
    for value, message in ((huge, "larger than any FLAME array"), (hollow, "inconsistent with its shape"),
                           (nested, "nested chumpy or sparse object"), (looped, "nested chumpy or sparse object"),
                           (chumpy_array("abc"), "holds <U3 values, not numbers"),
                           ([[1.0, 2.0], [3.0]], "not an array of numbers"),
                           (Array(None), "has no contents")):
        for protocol, python2 in PICKLE_STYLES:
            refusal = _refusal(value, tmp_path, protocol, python2)
            assert "refused.pkl: 'v_template': " in refusal and message in refusal, (refusal, protocol, python2)


def test_a_list_doubled_at_every_level_is_refused_before_it_expands(tmp_path):
    """A pickle can hold one list twice per level: 40 levels cost a few hundred bytes and would
    expand to 2**40 numbers in ``np.asarray``."""
    path = write_doubled_list_pickle(tmp_path / "bomb.pkl")
    assert path.stat().st_size < 2000
    with pytest.raises(FlameFileError, match="nested too deep or too large"):
        as_array(read_flame_pickle(path)["v_template"])
