"""FLAME-format pickles with FLAME's keys and shapes and synthetic values, for the tests.

No FLAME file may enter the repository, and neither chumpy nor scipy is installed, so the
pickles are written here opcode-faithfully: ``FlamePickler`` writes the exact globals a real
file references (``chumpy.ch Ch``, ``scipy.sparse._csc csc_matrix``, ...) for small stand-in
classes, and in the FLAME 2020 style writes every string as a Python 2 ``str`` (BINSTRING), the
way the Python 2 ``generic_model.pkl`` does.

Two models:
- ``random_flame_arrays``: FLAME's exact shapes (5023 vertices, 9976 faces) with smooth random
  bases and a random skinning, for the loader and the forward-pass properties;
- ``face_like_flame_arrays``: the built-in open head resampled to exactly 5023 vertices (quad
  centres added to its largest quads), skinned by its own regions, for the automatic landmark
  correspondence, which needs a face MediaPipe can see.
"""
from __future__ import annotations

import copyreg
import os
import pickle
import struct
from pathlib import Path

import numpy as np

FLAME_VERTEX_COUNT = 5023
FLAME_FACE_COUNT = 9976
SHAPE_COMPONENTS, EXPRESSION_COMPONENTS = 300, 100
JOINT_COUNT = 5
ROOT_PARENT_UNSIGNED = 4294967295  # the root's parent in FLAME 2020's kintree_table: uint32 -1


class _Impersonated:
    """An object pickled as an instance of another module's class, state dict and all."""

    pickled_as: tuple[str, str] = ("", "")

    def __init__(self, state: dict) -> None:
        self.state = state

    def __reduce_ex__(self, protocol: int):
        if protocol < 2:  # what object.__reduce_ex__ gives old protocols
            return copyreg._reconstructor, (type(self), object, None), self.state
        return copyreg.__newobj__, (type(self),), self.state


class ChumpyCh(_Impersonated):
    pickled_as = ("chumpy.ch", "Ch")


class ScipyCsc(_Impersonated):
    pickled_as = ("scipy.sparse._csc", "csc_matrix")


class ScipyCscPython2(_Impersonated):
    pickled_as = ("scipy.sparse.csc", "csc_matrix")


class ScipyCsr(_Impersonated):
    pickled_as = ("scipy.sparse._csr", "csr_matrix")


def chumpy_array(array: np.ndarray, key: str = "x") -> ChumpyCh:
    """A plain chumpy ``Ch`` wrapping ``array`` (its state keeps the array under ``key``)."""
    return ChumpyCh({key: array})


def sparse_csc(dense: np.ndarray, python2: bool = False, shape_key: str = "_shape") -> _Impersonated:
    """A scipy CSC matrix's pickled state for ``dense`` (R, C), as scipy writes it."""
    columns = [np.flatnonzero(dense[:, column]) for column in range(dense.shape[1])]
    state = {
        "data": np.concatenate([dense[rows, column] for column, rows in enumerate(columns)]),
        "indices": np.concatenate(columns).astype(np.int32),
        "indptr": np.concatenate([[0], np.cumsum([len(rows) for rows in columns])]).astype(np.int32),
        shape_key: dense.shape,
        "maxprint": 50,
    }
    return (ScipyCscPython2 if python2 else ScipyCsc)(state)


def sparse_csr(dense: np.ndarray) -> ScipyCsr:
    rows = [np.flatnonzero(dense[row]) for row in range(dense.shape[0])]
    return ScipyCsr({
        "data": np.concatenate([dense[row, columns] for row, columns in enumerate(rows)]),
        "indices": np.concatenate(rows).astype(np.int32),
        "indptr": np.concatenate([[0], np.cumsum([len(columns) for columns in rows])]).astype(np.int32),
        "_shape": dense.shape,
        "maxprint": 50,
    })


class FlamePickler(pickle._Pickler):
    """The pure-Python pickler, writing impersonated classes under their real globals and, with
    ``python2_strings``, every str/bytes as a Python 2 ``str`` (what the 2020 file holds)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol: int, python2_strings: bool) -> None:
        super().__init__(file, protocol=protocol)
        self.python2_strings = python2_strings

    def save_global(self, obj, name=None) -> None:
        if isinstance(obj, type) and issubclass(obj, _Impersonated):
            module, qualname = obj.pickled_as
            if self.proto >= 4:
                self.save(module)
                self.save(qualname)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
            self.memoize(obj)
            return
        if self.python2_strings and obj in (copyreg._reconstructor, object):  # Python 2 module names
            module = "copy_reg" if obj is copyreg._reconstructor else "__builtin__"
            self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)

    def _save_python2_str(self, obj) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def _save_str(self, obj) -> None:
        if self.python2_strings:
            self._save_python2_str(obj)
        else:
            pickle._Pickler.save_str(self, obj)

    def _save_bytes(self, obj) -> None:
        if self.python2_strings:
            self._save_python2_str(obj)
        else:
            pickle._Pickler.save_bytes(self, obj)

    dispatch[str] = _save_str
    dispatch[bytes] = _save_bytes


def write_flame_pickle(path: Path, arrays: dict[str, np.ndarray], edition: str = "2020") -> Path:
    """Write ``arrays`` (plain FLAME keys) the way that edition's file holds them.

    "2020": Python 2 protocol 2, strings as py2 str, shapedirs and J as chumpy ``Ch``, the
    J_regressor under the old ``scipy.sparse.csc`` path, the root parent as 4294967295.
    "2023": Python 3 protocol 4, plain arrays, ``scipy.sparse._csc``, the root parent as -1.
    """
    content: dict[str, object] = dict(arrays)
    kintree = np.array(arrays["kintree_table"], dtype=np.int64)
    if edition == "2020":
        kintree[0, 0] = ROOT_PARENT_UNSIGNED
        content.update(
            shapedirs=chumpy_array(arrays["shapedirs"]),
            J=chumpy_array(arrays["J"]),
            J_regressor=sparse_csc(arrays["J_regressor"], python2=True),
            kintree_table=kintree,
            bs_style="lbs",
            bs_type="lrotmin",
        )
        protocol, python2_strings = 2, True
    elif edition == "2023":
        kintree[0, 0] = -1
        content.update(J_regressor=sparse_csc(arrays["J_regressor"]), kintree_table=kintree, bs_style="lbs",
                       bs_type="lrotmin")
        protocol, python2_strings = 4, False
    else:
        raise ValueError(f"unknown edition {edition}")
    with open(path, "wb") as handle:
        FlamePickler(handle, protocol, python2_strings).dump(content)
    return Path(path)


class _RunsCommand:
    """Unpickling this runs a shell command: what a hostile 'FLAME file' would try."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_malicious_pickle(path: Path, command: str, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """A FLAME-looking dict whose 'v_template' runs ``command`` when unpickled naively."""
    content: dict[str, object] = dict(arrays or {})
    content["v_template"] = _RunsCommand(command)
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)
    return Path(path)


# -- synthetic values -----------------------------------------------------------------------------
def write_doubled_list_pickle(path: Path, levels: int = 40) -> Path:
    """A pickle whose ``v_template`` lists one list twice per level: a few hundred bytes that would
    expand to 2**levels numbers in ``np.asarray``."""
    nested = [1.0, 2.0]
    for _ in range(levels):
        nested = [nested, nested]
    path.write_bytes(pickle.dumps({"v_template": nested}, protocol=2))
    return path


def smooth_fields(points: np.ndarray, count: int, scale_m: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` smooth random vector fields on points (V, 3) -> (V, 3, count) metres, each a mix
    of low-frequency cosines (wavelengths of a few centimetres and up), like PCA components."""
    frequencies = rng.normal(0.0, 15.0, (24, 3))  # (P, 3) radians per metre
    phases = rng.uniform(0.0, 2 * np.pi, 24)
    features = np.cos(points @ frequencies.T + phases)  # (V, P)
    mixing = rng.normal(0.0, scale_m / np.sqrt(24), (24, 3, count))  # (P, 3, count)
    return np.einsum("vp,pck->vck", features, mixing)


def _bases(template: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """shapedirs (V, 3, 400) and posedirs (V, 3, 36), the joint j correctives confined to the
    vertices joint j carries (as FLAME's learned correctives essentially are)."""
    shapedirs = smooth_fields(template, SHAPE_COMPONENTS + EXPRESSION_COMPONENTS, 0.002, rng)
    posedirs = smooth_fields(template, (JOINT_COUNT - 1) * 9, 0.0005, rng)
    for joint in range(1, JOINT_COUNT):
        posedirs[:, :, 9 * (joint - 1): 9 * joint] *= (weights[:, joint] > 0)[:, None, None]
    return {"shapedirs": shapedirs, "posedirs": posedirs}


def _kintree() -> np.ndarray:
    return np.array([[-1, 0, 1, 1, 1], np.arange(JOINT_COUNT)], dtype=np.int64)


def random_flame_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """FLAME's keys at FLAME's exact shapes, synthetic values: a noisy ellipsoid template,
    random faces, smooth bases, a random sparse skinning whose jaw joint carries the lower front."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(FLAME_VERTEX_COUNT, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    template = direction * np.array([0.08, 0.11, 0.1])  # (V, 3) metres, a head-sized ellipsoid
    faces = rng.integers(0, FLAME_VERTEX_COUNT, (FLAME_FACE_COUNT, 3)).astype(np.uint32)
    weights = np.zeros((FLAME_VERTEX_COUNT, JOINT_COUNT))
    weights[:, 1] = 1.0
    lower_front = (template[:, 1] < -0.03) & (template[:, 2] > 0.02)
    weights[lower_front, 2] = rng.uniform(0.2, 1.0, lower_front.sum())  # jaw, partly shared with neck
    weights[lower_front, 1] = 1.0 - weights[lower_front, 2]
    bottom = template[:, 1] < -0.09
    weights[bottom] = np.eye(JOINT_COUNT)[0]  # the global joint keeps the neck base
    for joint, side in ((3, 1.0), (4, -1.0)):  # eyes: a small patch each side
        eye = np.linalg.norm(template - [side * 0.03, 0.03, 0.09], axis=1) < 0.015
        weights[eye] = np.eye(JOINT_COUNT)[joint]
    regressor = np.zeros((JOINT_COUNT, FLAME_VERTEX_COUNT))
    for joint in range(JOINT_COUNT):
        members = rng.choice(np.flatnonzero(weights[:, joint] > 0.5), 12, replace=False)
        regressor[joint, members] = rng.dirichlet(np.ones(len(members)))
    arrays = {
        "v_template": template,
        "f": faces,
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": _kintree(),
        "J": regressor @ template,
        **_bases(template, weights, rng),
    }
    return arrays


def resample_to_vertex_count(vertices: np.ndarray, quads: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """A quad mesh as triangles with exactly ``count`` vertices: the largest quads (count - V of
    them) get a centre vertex and become four triangles, the others split in two.
    Returns vertices (count, 3) and triangles (F', 3); new vertex i sits at its quad's centre."""
    extra = count - len(vertices)
    if not 0 <= extra <= len(quads):
        raise ValueError(f"cannot reach {count} vertices from {len(vertices)} with {len(quads)} quads")
    split, _ = _split_quads(vertices, quads, count)
    corners = vertices[quads]  # (Q, 4, 3)
    centres = corners[split].mean(axis=1)  # (extra, 3)
    centre_index = len(vertices) + np.arange(extra)
    a, b, c, d = quads[split].T
    fans = np.concatenate([np.stack([a, b, centre_index], 1), np.stack([b, c, centre_index], 1),
                           np.stack([c, d, centre_index], 1), np.stack([d, a, centre_index], 1)])
    kept = quads[~split]
    halves = np.concatenate([kept[:, [0, 1, 2]], kept[:, [0, 2, 3]]])
    return np.concatenate([vertices, centres]), np.concatenate([halves, fans]).astype(np.uint32)


def face_like_flame_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The built-in open head resampled to FLAME's 5023 vertices, in a FLAME-format dict.

    Skinning from the open head's own regions: its jaw region to the jaw joint (0.8, the rest to
    the neck joint), eyeballs to the eye joint of their side (+X is the subject's left), its
    neck region to the global joint, everything else to the neck joint (FLAME's head turn). Each
    joint sits at the centroid of what it carries. Raises FileNotFoundError without the asset.
    """
    from mxr.models.open_head import load_open_head

    head = load_open_head()
    source = head.vertices.astype(np.float64)
    vertices, triangles = resample_to_vertex_count(source, head.faces.astype(np.int64), FLAME_VERTEX_COUNT)
    vertices = vertices - np.array([0.0, source[:, 1].mean(), 0.0])  # FLAME sits near the origin
    joint_of_source = np.ones(len(source), dtype=np.int64)  # neck joint: the head itself
    joint_of_source[head.regions["neck"]] = 0
    joint_of_source[head.regions["jaw"]] = 2
    eyeballs = head.regions["eyeballs"]
    joint_of_source[eyeballs] = np.where(source[eyeballs, 0] > 0, 3, 4)
    # A quad-centre vertex takes the joint its quad's first corner has.
    _, quads_split = _split_quads(source, head.faces.astype(np.int64), FLAME_VERTEX_COUNT)
    joint_of_vertex = np.concatenate([joint_of_source, joint_of_source[quads_split[:, 0]]])
    weights = np.eye(JOINT_COUNT)[joint_of_vertex]  # (V, 5)
    jaw = joint_of_vertex == 2
    weights[jaw, 2], weights[jaw, 1] = 0.8, 0.2
    regressor = np.zeros((JOINT_COUNT, FLAME_VERTEX_COUNT))
    for joint in range(JOINT_COUNT):
        members = np.flatnonzero(joint_of_vertex == joint)
        regressor[joint, members] = 1.0 / len(members)
    rng = np.random.default_rng(seed)
    return {
        "v_template": vertices,
        "f": triangles,
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": _kintree(),
        "J": regressor @ vertices,
        **_bases(vertices, weights, rng),
    }


def _split_quads(vertices: np.ndarray, quads: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Which quads ``resample_to_vertex_count`` splits (mask) and those quads, in its order."""
    corners = vertices[quads]
    area = np.linalg.norm(np.cross(corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]), axis=1)
    split = np.zeros(len(quads), dtype=bool)
    split[np.argsort(-area, kind="stable")[: count - len(vertices)]] = True
    return split, quads[split]


# -- for the Blender rig and bake tests -----------------------------------------------------------
def write_synthetic_registration(path: Path, model, seed: int = 0) -> Path:
    """A landmark registration file (``save_landmark_embedding``'s format) without MediaPipe:
    random triangles of ``model`` (a FlameModel) with random barycentric weights, the first 60
    among those the jaw carries most, so the jaw solve sees what the jaw moves."""
    from mxr.models.correspondence import LANDMARK_COUNT, LandmarkEmbedding
    from mxr.models.flame_embedding import save_landmark_embedding

    rng = np.random.default_rng(seed)
    jaw_share = model.skinning_weights[model.faces][:, :, 2].mean(axis=1)  # (F,)
    jaw = np.argsort(-jaw_share, kind="stable")[:200]
    chosen = np.concatenate([rng.choice(jaw, 60, replace=False), rng.integers(0, len(model.faces), LANDMARK_COUNT - 60)])
    embedding = LandmarkEmbedding(model.faces[chosen].astype(np.int32),
                                  rng.dirichlet(np.ones(3), LANDMARK_COUNT).astype(np.float32))
    save_landmark_embedding(path, embedding, model.vertex_count, np.ones(LANDMARK_COUNT, dtype=bool))
    return Path(path)


def flame_take(model, landmarks, identity: np.ndarray, expression: np.ndarray, pose: np.ndarray,
               invalid: tuple[int, ...] = (), source_path: str = "/nonexistent/performer.mp4", fps: float = 30.0):
    """A take whose deformation is exactly FLAME's (expression (T, E'), pose (T, 5, 3); the neck
    and global joints' rotation goes into the head pose, not the canonical deformation), seen
    through ``landmarks`` on a performer whose neutral is FLAME's with ``identity``, in mm."""
    from mxr.models.flame import rodrigues
    from mxr.models.retarget import FlameLandmarks
    from conftest import take_from_deformation

    frames = len(expression)
    rig = FlameLandmarks.build(model, landmarks, identity, expression.shape[1])
    face_pose = pose.copy()
    face_pose[:, :2] = 0.0  # the face's own motion: jaw and eyes
    neutral = rig.locate(np.zeros(expression.shape[1]), np.zeros((5, 3)))  # (478, 3) m
    neutral_mm = (neutral - neutral.mean(axis=0)) * 1000.0
    deformation_mm = (rig.locate(expression, face_pose) - neutral) * 1000.0  # (T, 478, 3)
    valid = np.ones(frames, dtype=bool)
    valid[list(invalid)] = False

    return take_from_deformation(neutral_mm, deformation_mm, np.zeros_like(deformation_mm), rodrigues(pose[:, 1]),
                                 valid, np.zeros((frames, 478, 3)), source_path, fps)
