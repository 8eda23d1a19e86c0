"""Loading FLAME pickles: both editions' formats, the stand-ins, and refusal of anything else."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mxr.models.correspondence import LANDMARK_COUNT, LandmarkEmbedding
from mxr.models.flame import FLAME_COEFFICIENT_BOUNDS, FlameFileError, load_flame, to_head_model
from mxr.models.head_model import HeadModel
from mxr.ops.errors import MxrError

from flame_fixtures import (
    FLAME_FACE_COUNT,
    FLAME_VERTEX_COUNT,
    FlamePickler,
    chumpy_array,
    random_flame_arrays,
    sparse_csc,
    sparse_csr,
    write_flame_pickle,
    write_malicious_pickle,
)


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return random_flame_arrays(seed=3)


@pytest.mark.parametrize("edition", ["2020", "2023"])
def test_loads_both_editions_exactly(arrays, edition: str, tmp_path: Path) -> None:
    model = load_flame(write_flame_pickle(tmp_path / f"flame{edition}.pkl", arrays, edition))
    assert model.name == f"flame{edition}"
    assert model.template.shape == (FLAME_VERTEX_COUNT, 3)
    assert model.faces.shape == (FLAME_FACE_COUNT, 3) and model.faces.dtype == np.int32
    assert model.shape_basis.shape == (300, FLAME_VERTEX_COUNT, 3)
    assert model.expression_basis.shape == (100, FLAME_VERTEX_COUNT, 3)
    assert model.pose_basis.shape == (36, FLAME_VERTEX_COUNT, 3)
    np.testing.assert_array_equal(model.template, arrays["v_template"])
    np.testing.assert_array_equal(model.faces, arrays["f"])
    np.testing.assert_array_equal(model.shape_basis[7], arrays["shapedirs"][:, :, 7])
    np.testing.assert_array_equal(model.expression_basis[5], arrays["shapedirs"][:, :, 305])
    np.testing.assert_array_equal(model.pose_basis[20], arrays["posedirs"][:, :, 20])
    np.testing.assert_array_equal(model.joint_regressor, arrays["J_regressor"])  # the sparse, densified
    np.testing.assert_array_equal(model.skinning_weights, arrays["weights"])
    np.testing.assert_array_equal(model.parents, [-1, 0, 1, 1, 1])  # 4294967295 (2020) or -1 (2023)


def _load_value(value: object, tmp_path: Path, protocol: int = 2, python2: bool = True) -> np.ndarray:
    from mxr.models.flame import RestrictedUnpickler, as_array

    path = tmp_path / "value.pkl"
    with open(path, "wb") as handle:
        FlamePickler(handle, protocol, python2).dump(value)
    with open(path, "rb") as handle:
        return as_array(RestrictedUnpickler(handle, encoding="latin1").load())


def test_stand_ins_for_chumpy_and_scipy(tmp_path: Path) -> None:
    dense = np.array([[0.0, 2.0, 0.0], [1.5, 0.0, 0.0], [0.0, 0.0, -3.0], [4.0, 0.0, 0.25]])
    for key in ("x", "_x"):
        np.testing.assert_array_equal(_load_value(chumpy_array(dense, key), tmp_path), dense)
    for sparse in (sparse_csc(dense), sparse_csc(dense, python2=True, shape_key="shape"), sparse_csr(dense)):
        np.testing.assert_array_equal(_load_value(sparse, tmp_path), dense)
        np.testing.assert_array_equal(_load_value(sparse, tmp_path, protocol=4, python2=False), dense)
    for protocol, python2 in ((0, True), (1, True), (1, False)):  # copy_reg._reconstructor pickles
        np.testing.assert_array_equal(_load_value(chumpy_array(dense), tmp_path, protocol, python2), dense)
        np.testing.assert_array_equal(_load_value(sparse_csc(dense), tmp_path, protocol, python2), dense)


def test_malicious_pickle_is_refused_without_running_it(arrays, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    path = write_malicious_pickle(tmp_path / "evil.pkl", f"touch {sentinel}", {"f": arrays["f"]})
    with pytest.raises(FlameFileError, match=r"refused to load the global '(posix|os)\.system'"):
        load_flame(path)
    assert not sentinel.exists()
    assert issubclass(FlameFileError, MxrError)  # reported to people like every input error


class _Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def test_other_globals_are_refused(tmp_path: Path) -> None:
    for payload, refused in ((_Evaluates(), "builtins.eval"), (os.getcwd, "posix.getcwd"),
                             (pickle.Unpickler, "_pickle.Unpickler")):
        path = tmp_path / "bad.pkl"
        path.write_bytes(pickle.dumps({"v_template": payload}, protocol=4))
        with pytest.raises(FlameFileError, match=refused.replace(".", r"\.")):
            load_flame(path)
    # Python 2 module names reach find_class raw: __builtin__.eval is refused too.
    path.write_bytes(b"c__builtin__\neval\n(S'1+1'\ntR.")
    with pytest.raises(FlameFileError, match=r"__builtin__\.eval"):
        load_flame(path)


def test_clear_errors_for_bad_files(arrays, tmp_path: Path) -> None:
    with pytest.raises(FlameFileError, match="not found"):
        load_flame(tmp_path / "absent.pkl")
    text = tmp_path / "notes.pkl"
    text.write_text("FLAME? no, a text file\n")
    with pytest.raises(FlameFileError, match="not a readable FLAME pickle"):
        load_flame(text)
    listing = tmp_path / "list.pkl"
    listing.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(FlameFileError, match="not the dict"):
        load_flame(listing)
    incomplete = {key: value for key, value in arrays.items() if key != "posedirs"}
    with pytest.raises(FlameFileError, match="lacks the FLAME keys.*posedirs"):
        load_flame(_plain_pickle(tmp_path / "incomplete.pkl", incomplete))
    wrong = dict(arrays, weights=arrays["weights"][:, :4])
    with pytest.raises(FlameFileError, match=r"'weights' has shape \(5023, 4\)"):
        load_flame(_plain_pickle(tmp_path / "wrong.pkl", wrong))
    too_few = dict(arrays, shapedirs=arrays["shapedirs"][:, :, :100])
    with pytest.raises(FlameFileError, match="'shapedirs' has 100 components"):
        load_flame(_plain_pickle(tmp_path / "few.pkl", too_few))


def _plain_pickle(path: Path, content: dict) -> Path:
    path.write_bytes(pickle.dumps(content, protocol=4))
    return path


def test_head_model_view(arrays, tmp_path: Path) -> None:
    model = load_flame(write_flame_pickle(tmp_path / "flame.pkl", arrays, "2023"))
    rng = np.random.default_rng(0)
    embedding = LandmarkEmbedding(
        model.faces[rng.integers(0, len(model.faces), LANDMARK_COUNT)].astype(np.int32),
        rng.dirichlet(np.ones(3), LANDMARK_COUNT).astype(np.float32),
    )
    head = to_head_model(model, embedding)
    assert head.expression_names[0] == "Exp000" and head.expression_names[-1] == "Exp099"
    assert head.coefficient_bounds == FLAME_COEFFICIENT_BOUNDS
    assert head.identity_basis.shape == (300, FLAME_VERTEX_COUNT, 3)
    assert str(head.extras["identity_names"][299]) == "Shape299"
    jaw = head.regions["jaw"]
    assert len(jaw) and np.all(model.skinning_weights[jaw, 2] >= 0.5)
    assert len(head.regions["head"]) == FLAME_VERTEX_COUNT
    coefficients = rng.normal(size=100)
    expected = model.template + np.tensordot(coefficients, model.expression_basis, axes=1)
    np.testing.assert_allclose(head.evaluate(coefficients), expected, atol=1e-6)
    head.save(tmp_path / "flame_head.npz")  # the user's own asset, npz without pickles
    loaded = HeadModel.load(tmp_path / "flame_head.npz")
    np.testing.assert_array_equal(loaded.extras["parents"], [-1, 0, 1, 1, 1])
    assert loaded.extras["pose_basis"].shape == (36, FLAME_VERTEX_COUNT, 3)
