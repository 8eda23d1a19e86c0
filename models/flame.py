"""FLAME head models from the user's own file: a restricted loader and the numpy forward pass.

FLAME (Li et al. 2017, "Learning a model of facial shape and expression from 4D scans") is a
linear-blend-skinned head: a template, identity and expression blendshapes, five joints (global,
neck, jaw, left eye, right eye) regressed from the shaped mesh, and pose correctives driven by
the joint rotations. Its files need registration and most editions are non-commercial, so MXR
never ships one: users point MXR at their own ``generic_model.pkl`` (FLAME 2020, chumpy arrays,
Python 2 pickle) or ``flame2023.pkl`` / ``flame2023_no_jaw.pkl`` / FLAME 2023 Open (plain arrays).

Pickles from users are untrusted. ``load_flame`` reads them with an unpickler that resolves only
the globals a FLAME file needs, and maps every one of them to ``object`` or a stand-in of our own:
numpy arrays are rebuilt from checked plain dtypes, shapes and bytes (never by numpy's own
unpickling); scipy sparse matrices and chumpy arrays become plain arrays without importing scipy
or chumpy (Blender's Python has neither). Any other global is refused before anything is called.

numpy only: Blender's Python imports this module. The torch twin is ``flame_torch``.
"""
from __future__ import annotations

import io
import math
import operator
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ops.errors import MxrError
from .correspondence import LandmarkEmbedding
from .head_model import HeadModel

JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")
EXPRESSION_COMPONENTS = 100  # FLAME's last 100 shapedirs columns are expression, the rest identity
# FLAME's PCA coefficients are in units of one standard deviation of the training scans (the
# shapedirs are scaled by the component's sigma), so +-3 covers 99.7 % of what the scans showed;
# retargeting past it only fits noise with implausible faces.
FLAME_COEFFICIENT_BOUNDS = (-3.0, 3.0)
# A vertex belongs to a joint's region when that joint carries at least this skinning weight.
REGION_WEIGHT_THRESHOLD = 0.5
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


class FlameFileError(MxrError):
    """The file is not a FLAME model MXR can read (missing, not a pickle, unsafe, or malformed)."""


# -- restricted unpickling -----------------------------------------------------------------------
# numpy's own unpickling (``dtype.__setstate__``, ``_reconstruct``, ``scalar``) trusts its state: a
# crafted dtype state can declare object fields, and numpy then reads bytes from the file as object
# pointers and crashes. So arrays are rebuilt here from checked primitives: a plain numeric dtype
# (descr from this list, byte order), a bounded shape, and exactly the bytes that shape needs.
_PLAIN_DESCRS = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"})
MAX_ARRAY_BYTES = 2**31  # FLAME's largest array (shapedirs, 5023 x 3 x 400 float64) is 48 MB
# A sparse matrix holds only its entries but is densified: its declared shape is bounded far lower.
# FLAME's sparse arrays are regressors (J_regressor: 5 x 5023 float64, 200 kB); a 769-byte file
# declaring (2**26, 3) took 1.6 GB before FLAME's own shapes were checked.
MAX_SPARSE_DENSE_BYTES = 64 << 20
MAX_DIMENSIONS = 32
# Items in one level of a nested list (FLAME's largest array, as lists, has 6 million numbers at
# its last level): a pickle that lists one list twice per level is refused before its lists take
# more than 128 MB of references.
MAX_LIST_ITEMS = 2**24


class _PickledDtype:
    """Stand-in for ``numpy.dtype`` in a pickle: becomes a plain numeric dtype, nothing else."""

    resolved: np.dtype | None = None  # set by the BUILD numpy always writes after the call

    def __init__(self, descr: object, align: object = False, copy: object = True) -> None:
        if not isinstance(descr, str) or descr not in _PLAIN_DESCRS:
            raise FlameFileError(f"refused the dtype {descr!r}: a FLAME model holds only plain numbers")
        self.descr = descr

    def __setstate__(self, state: object) -> None:
        # numpy writes (3, byte order, subarray, names, fields, itemsize, alignment, flags); the flags
        # are ignored, as the dtype is built from its descr alone.
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3):
            raise FlameFileError(f"a pickled dtype {self.descr!r} has a state numpy never writes for plain numbers")
        _, order, subarray, names, fields, itemsize, alignment, _ = state
        dtype = np.dtype(self.descr)
        plain = (
            order in ("<", ">", "=", "|")
            and (order != "|" or dtype.itemsize == 1)
            and subarray is None and names is None and fields is None
            and itemsize in (-1, dtype.itemsize) and alignment in (-1, dtype.alignment)
        )
        if not plain:
            raise FlameFileError(f"refused a pickled dtype {self.descr!r} with fields, a subarray or a wrong size")
        self.resolved = dtype.newbyteorder(order)


def _dtype(value: object) -> np.dtype:
    if not isinstance(value, _PickledDtype) or value.resolved is None:
        raise FlameFileError("a pickled array or scalar has no complete plain dtype")
    return value.resolved


def _raw_bytes(data: object) -> bytes:
    """An array's pickled data: bytes, or a Python 2 str (read as latin1); a list means objects."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("latin1")
    raise FlameFileError("an array in the file holds Python objects, not numbers")


def _shape(shape: object, itemsize: int) -> tuple[int, ...]:
    """``shape`` as non-negative ints within ``MAX_DIMENSIONS`` axes and ``MAX_ARRAY_BYTES``."""
    try:
        sizes = tuple(operator.index(size) for size in shape)
    except TypeError:
        raise FlameFileError(f"an array in the file has the shape {shape!r}, not a tuple of integers") from None
    if len(sizes) > MAX_DIMENSIONS or any(size < 0 for size in sizes):
        raise FlameFileError(f"an array in the file has the impossible shape {sizes}")
    if math.prod(sizes) * itemsize > MAX_ARRAY_BYTES or any(size > MAX_ARRAY_BYTES for size in sizes):
        raise FlameFileError(f"an array in the file declares the shape {sizes}, larger than any FLAME array")
    return sizes


class _PickledArray:
    """Stand-in for a pickled ndarray (``numpy.ndarray`` and ``_reconstruct`` + its state): its
    BUILD makes a real array with ``np.frombuffer`` from the checked dtype, shape and bytes."""

    array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise FlameFileError("a pickled array has a state numpy never writes")
        _, shape, dtype, fortran, data = state
        dtype = _dtype(dtype)
        shape = _shape(shape, dtype.itemsize)
        raw = _raw_bytes(data)
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise FlameFileError(f"an array in the file declares the shape {shape} ({dtype}) "
                                 f"but holds {len(raw)} bytes")
        if not isinstance(fortran, (bool, int)) or fortran not in (0, 1):
            raise FlameFileError("a pickled array has no valid memory order")
        order = "F" if fortran else "C"
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy(order="K")

    def to_array(self) -> np.ndarray:
        if self.array is None:
            raise FlameFileError("a pickled array in the file has no contents")
        return self.array


def _reconstruct(subtype: object, shape: object, typecode: object) -> _PickledArray:
    """``numpy.core.multiarray._reconstruct``: an empty array stand-in that its BUILD fills."""
    if subtype is not _PickledArray:
        raise FlameFileError("refused numpy's _reconstruct for anything but a plain ndarray")
    return _PickledArray()


def _scalar(dtype: object, data: object) -> np.generic:
    """``numpy.core.multiarray.scalar``: a numpy scalar from a plain dtype and exactly its bytes."""
    dtype = _dtype(dtype)
    raw = _raw_bytes(data)
    if len(raw) != dtype.itemsize:
        raise FlameFileError(f"a pickled {dtype} scalar holds {len(raw)} bytes, not {dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype)[0]


def _count_nested(value: object, what: str) -> None:
    """Refuse nested lists that would expand past ``MAX_ARRAY_BYTES``: a pickle can list one list
    twice per level, doubling the elements with every level at no cost in file size."""
    budget = MAX_LIST_ITEMS
    level, depth = [value], 0
    while level:
        # Each level is counted before it is built: a level that doubles is refused before it exists.
        size = sum(len(entry) for entry in level if isinstance(entry, (list, tuple)))
        depth += 1
        if size > budget or depth > MAX_DIMENSIONS:
            raise FlameFileError(f"{what} is a list nested too deep or too large for any FLAME array")
        level = [item for entry in level if isinstance(entry, (list, tuple)) for item in entry
                 if isinstance(item, (list, tuple))]


def _plain_array(value: object, what: str) -> np.ndarray:
    """A numeric array from a pickled array, a number or a list of numbers; chumpy or sparse
    stand-ins (which may nest or refer to themselves) are refused."""
    if isinstance(value, _PickledArray):
        return value.to_array()
    if isinstance(value, (_ChumpyArray, _SparseMatrix)):
        raise FlameFileError(f"{what} is a nested chumpy or sparse object, not an array")
    _count_nested(value, what)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RecursionError) as error:
        raise FlameFileError(f"{what} is not an array of numbers ({error})") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise FlameFileError(f"{what} holds {array.dtype} values, not numbers")
    return array


class _SparseMatrix:
    """Stand-in for a pickled scipy.sparse CSC/CSR matrix: keeps its state, converts to dense."""

    format = ""
    state: dict | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise FlameFileError(f"a pickled {self.format} sparse matrix has no state dict")
        self.state = state

    def to_dense(self) -> np.ndarray:
        state = self.state or {}
        shape = state.get("_shape", state.get("shape"))
        if shape is None or not {"data", "indices", "indptr"} <= set(state):
            raise FlameFileError(f"a pickled {self.format} sparse matrix lacks data/indices/indptr/shape")
        shape = _shape(shape, np.dtype(np.float64).itemsize)
        if len(shape) != 2:
            raise FlameFileError(f"a pickled {self.format} sparse matrix has the shape {shape}, not 2D")
        if math.prod(shape) * np.dtype(np.float64).itemsize > MAX_SPARSE_DENSE_BYTES:
            raise FlameFileError(f"a pickled {self.format} sparse matrix declares the shape {shape}, "
                                 "larger than any FLAME regressor")
        rows, columns = shape
        what = f"a pickled {self.format} sparse matrix's"
        data = _plain_array(state["data"], f"{what} data").astype(np.float64).ravel()
        indices = _plain_array(state["indices"], f"{what} indices").astype(np.int64).ravel()
        pointers = _plain_array(state["indptr"], f"{what} indptr").astype(np.int64).ravel()
        major = columns if self.format == "csc" else rows
        minor = rows if self.format == "csc" else columns
        if (len(pointers) != major + 1 or len(indices) != len(data) or pointers[0] != 0
                or np.any(np.diff(pointers) < 0) or pointers[-1] > len(data)):
            raise FlameFileError(f"a pickled {self.format} sparse matrix is inconsistent with its shape {shape}")
        if len(indices) and (indices.min() < 0 or indices.max() >= minor):
            raise FlameFileError(f"a pickled {self.format} sparse matrix has indices outside its shape {shape}")
        dense = np.zeros((major, minor))
        major_of_entry = np.repeat(np.arange(major), np.diff(pointers))  # (nnz,)
        np.add.at(dense, (major_of_entry, indices[: pointers[-1]]), data[: pointers[-1]])
        return dense.T if self.format == "csc" else dense


class _CscMatrix(_SparseMatrix):
    format = "csc"


class _CsrMatrix(_SparseMatrix):
    format = "csr"


class _ChumpyArray:
    """Stand-in for a pickled chumpy object: keeps its state; a plain ``Ch`` wraps an array."""

    state: dict | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise FlameFileError("a pickled chumpy object has no state dict")
        self.state = state

    def to_array(self) -> np.ndarray:
        for key in ("x", "_x"):
            if key in (self.state or {}):
                return _plain_array(self.state[key], "a chumpy array's value")
        raise FlameFileError(
            "a chumpy expression in the file holds no plain array; load it with chumpy once and "
            "re-save it with numpy arrays"
        )


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What ``_codecs.encode`` does for pickles of bytes (protocol 2 from Python 3), nothing more."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise FlameFileError("refused _codecs.encode with anything but a latin1 string")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """What ``bytes()`` does for pickles of ``b""`` (protocol 0-2 from Python 3), nothing more."""
    return b""


def _reconstruct_stand_in(cls: type, base: type, state: object) -> object:
    """What ``copyreg._reconstructor`` does for protocol 0/1 pickles of chumpy and scipy objects
    (an empty instance, filled by the BUILD that follows), for our stand-ins only."""
    if not (isinstance(cls, type) and issubclass(cls, (_ChumpyArray, _SparseMatrix))) or base is not object:
        raise FlameFileError("refused copyreg._reconstructor for anything but a chumpy or scipy object")
    return cls.__new__(cls)


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): _PickledArray,
        ("numpy", "dtype"): _PickledDtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("chumpy.ch", "Ch"): _ChumpyArray,
    }
    for module in ("copy_reg", "copyreg"):  # Python 2 and 3 names
        allowed[(module, "_reconstructor")] = _reconstruct_stand_in
    for module in ("__builtin__", "builtins"):
        allowed[(module, "object")] = object  # _reconstructor's base; calling it makes an empty object
        allowed[(module, "bytes")] = _empty_bytes  # an empty array's data
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = _scalar
    for module in ("scipy.sparse.csc", "scipy.sparse._csc"):
        allowed[(module, "csc_matrix")] = _CscMatrix
    for module in ("scipy.sparse.csr", "scipy.sparse._csr"):
        allowed[(module, "csr_matrix")] = _CsrMatrix
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a FLAME file needs, each to ``object`` or a stand-in of ours; refuses
    every other one before it is called.

    Note the names arrive raw (Python 2 module names are not remapped for an overriding
    ``find_class``), so only the exact module paths NumPy, SciPy and chumpy pickled under count.
    chumpy's operator and reordering classes (``chumpy.ch_ops.*``, ``chumpy.reordering.*``) are
    admitted as inert stand-ins; they turn into arrays only when they wrap one.
    """

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> object:
        resolved = self._allowed.get((module, name))
        if resolved is not None:
            return resolved
        if module in ("chumpy.ch_ops", "chumpy.reordering") and name.isidentifier():
            return _ChumpyArray
        raise FlameFileError(
            f"refused to load the global '{module}.{name}' from the file: a FLAME model holds only "
            "numpy arrays, scipy sparse matrices and chumpy arrays; the file may be unsafe"
        )


def as_array(value: object) -> np.ndarray:
    """A loaded FLAME value (array, chumpy stand-in, sparse stand-in, numbers) as a plain ndarray."""
    if isinstance(value, _ChumpyArray):
        return value.to_array()
    if isinstance(value, _SparseMatrix):
        return value.to_dense()
    return _plain_array(value, "an array in the file")


def read_flame_pickle(path: Path) -> dict:
    """The raw dict in a FLAME pickle, through ``RestrictedUnpickler`` (latin1 for Python 2 files)."""
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(f"FLAME file not found: {path}")
    payload = path.read_bytes()
    try:
        content = RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except FlameFileError as error:
        raise FlameFileError(f"{path}: {error}") from None
    except Exception as error:  # noqa: BLE001  (any decoding failure means: not a FLAME pickle)
        raise FlameFileError(f"{path} is not a readable FLAME pickle ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict):
        raise FlameFileError(f"{path} holds a {type(content).__name__}, not the dict a FLAME model is")
    return content


# -- the model ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlameModel:
    """FLAME's arrays in MXR's layout: components first, metres, float64."""

    name: str
    template: np.ndarray  # (V, 3) metres, +X subject's left, +Y up, +Z out of the face
    faces: np.ndarray  # (F, 3) int32
    shape_basis: np.ndarray  # (S, V, 3) metres per unit identity coefficient
    expression_basis: np.ndarray  # (E, V, 3) metres per unit expression coefficient
    pose_basis: np.ndarray  # (36, V, 3) metres per unit of (R_j - I) entry, joints 1..4 row-major
    joint_regressor: np.ndarray  # (5, V) joint = regressor @ shaped vertices
    skinning_weights: np.ndarray  # (V, 5) rows sum to 1
    parents: np.ndarray  # (5,) int64, -1 for the root

    @property
    def vertex_count(self) -> int:
        return int(self.template.shape[0])


def load_flame(path: Path, name: str | None = None) -> FlameModel:
    """Read a FLAME 2020 / 2023 / 2023 Open pickle into a ``FlameModel``; ``FlameFileError`` if not."""
    path = Path(path)
    content = read_flame_pickle(path)
    missing = [key for key in REQUIRED_KEYS if key not in content]
    if missing:
        raise FlameFileError(f"{path} lacks the FLAME keys {missing}; is it a FLAME model file?")
    arrays = {}
    for key in REQUIRED_KEYS:
        try:
            arrays[key] = as_array(content[key])
        except FlameFileError as error:
            raise FlameFileError(f"{path}: '{key}': {error}") from None
    template = _checked(path, arrays, "v_template", ndim=2, tail=(3,)).astype(np.float64)
    count = template.shape[0]
    faces = _checked(path, arrays, "f", ndim=2, tail=(3,))
    if faces.size and (faces.min() < 0 or faces.max() >= count):
        raise FlameFileError(f"{path}: 'f' indexes vertices outside 0..{count - 1}")
    shapedirs = _checked(path, arrays, "shapedirs", ndim=3, head=(count, 3))
    if shapedirs.shape[2] <= EXPRESSION_COMPONENTS:
        raise FlameFileError(
            f"{path}: 'shapedirs' has {shapedirs.shape[2]} components; FLAME has identity components "
            f"followed by {EXPRESSION_COMPONENTS} expression components"
        )
    joints = len(JOINT_NAMES)
    posedirs = _checked(path, arrays, "posedirs", ndim=3, head=(count, 3), tail=((joints - 1) * 9,))
    regressor = _checked(path, arrays, "J_regressor", ndim=2, head=(joints, count))
    weights = _checked(path, arrays, "weights", ndim=2, head=(count, joints))
    kintree = _checked(path, arrays, "kintree_table", ndim=2, head=(2, joints))
    basis = np.moveaxis(np.asarray(shapedirs, dtype=np.float64), 2, 0)  # (S + E, V, 3)
    return FlameModel(
        name=name or path.stem,
        template=template,
        faces=faces.astype(np.int32),
        shape_basis=np.ascontiguousarray(basis[:-EXPRESSION_COMPONENTS]),
        expression_basis=np.ascontiguousarray(basis[-EXPRESSION_COMPONENTS:]),
        pose_basis=np.ascontiguousarray(np.moveaxis(np.asarray(posedirs, dtype=np.float64), 2, 0)),
        joint_regressor=regressor.astype(np.float64),
        skinning_weights=weights.astype(np.float64),
        parents=_parents(path, kintree),
    )


def _checked(
    path: Path, arrays: dict[str, np.ndarray], key: str, ndim: int,
    head: tuple[int, ...] = (), tail: tuple[int, ...] = (),
) -> np.ndarray:
    """The array under ``key`` if it is numeric with ``ndim`` axes that start with ``head`` and
    end with ``tail``; else a ``FlameFileError`` that names the key and both shapes."""
    array = arrays[key]
    shape = array.shape
    fits = (
        array.ndim == ndim
        and shape[: len(head)] == head
        and (not tail or shape[-len(tail):] == tail)
        and (np.issubdtype(array.dtype, np.number) or array.dtype == bool)
    )
    if not fits:
        wanted = ", ".join([*map(str, head), *["*"] * (ndim - len(head) - len(tail)), *map(str, tail)])
        raise FlameFileError(f"{path}: '{key}' has shape {shape} ({array.dtype}), expected ({wanted}) numbers")
    if not np.all(np.isfinite(array)):
        raise FlameFileError(f"{path}: '{key}' holds values that are not finite numbers (NaN or infinite)")
    return array


def _parents(path: Path, kintree: np.ndarray) -> np.ndarray:
    """Parent joint of each joint from the kintree table's first row; the root's entry (-1 or
    2**32 - 1, an unsigned -1) becomes -1. Every other joint's parent must come before it."""
    parents = kintree[0].astype(np.int64)
    parents[0] = -1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, len(parents))):
        raise FlameFileError(f"{path}: 'kintree_table' parents {kintree[0].tolist()} are not a tree rooted at joint 0")
    return parents


# -- evaluation ----------------------------------------------------------------------------------
def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) for axis-angle vectors (..., 3) (angle = norm, radians).

    R = I + a K + b K^2 with K the cross-product matrix of the axis-angle vector, a = sin(t)/t and
    b = (1 - cos t)/t^2; near t = 0 both use their Taylor series, so zero pose is exact and smooth.
    """
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    angle2 = np.sum(axis_angle**2, axis=-1)  # (...,)
    angle = np.sqrt(angle2)
    small = angle < 1e-4
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0 - angle2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - angle2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    x, y, z = axis_angle[..., 0], axis_angle[..., 1], axis_angle[..., 2]
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(axis_angle.shape + (3,))
    return np.eye(3) + a[..., None, None] * cross + b[..., None, None] * (cross @ cross)


def shaped_vertices(model: FlameModel, shape: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Template + identity + expression blendshapes: (..., S'), (..., E') -> (..., V, 3) metres.

    S' <= S and E' <= E: fewer coefficients use the leading components (PCA order)."""
    shape = np.asarray(shape, dtype=np.float64)
    expression = np.asarray(expression, dtype=np.float64)
    identity = np.tensordot(shape, model.shape_basis[: shape.shape[-1]], axes=([-1], [0]))
    motion = np.tensordot(expression, model.expression_basis[: expression.shape[-1]], axes=([-1], [0]))
    return model.template + identity + motion


def pose_features(rotations: np.ndarray) -> np.ndarray:
    """(R_j - I) of the non-root joints, flattened row-major: (..., 5, 3, 3) -> (..., 36).

    Zero at rest, so the correctives vanish there; the root is left out because rotating the
    whole head cannot change its shape."""
    return (rotations[..., 1:, :, :] - np.eye(3)).reshape(rotations.shape[:-3] + (-1,))


def joint_transforms(rotations: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skinning transforms (..., J, 3, 4) and posed joints (..., J, 3) from local rotations
    (..., J, 3, 3) about rest joints (..., J, 3), down the kinematic tree ``parents`` (J,).

    World transform of joint j: G_j = G_parent [R_j | J_j - J_parent]; the skinning transform
    takes a rest-pose point to its posed place: A_j x = G_j (x - J_j)."""
    world_rotation = [rotations[..., 0, :, :]]
    world_origin = [joints[..., 0, :]]
    for joint in range(1, len(parents)):
        parent = parents[joint]
        offset = joints[..., joint, :] - joints[..., parent, :]  # (..., 3)
        world_rotation.append(world_rotation[parent] @ rotations[..., joint, :, :])
        world_origin.append(world_origin[parent] + np.einsum("...ij,...j->...i", world_rotation[parent], offset))
    rotation = np.stack(world_rotation, axis=-3)  # (..., J, 3, 3)
    posed_joints = np.stack(world_origin, axis=-2)  # (..., J, 3)
    translation = posed_joints - np.einsum("...jik,...jk->...ji", rotation, joints)  # (..., J, 3)
    return np.concatenate([rotation, translation[..., None]], axis=-1), posed_joints


def flame_forward(
    model: FlameModel, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FLAME vertices (..., V, 3) and posed joints (..., 5, 3), metres.

    shape (..., S'), expression (..., E') coefficients; pose (..., 5, 3) axis-angle per joint in
    ``JOINT_NAMES`` order, each relative to its parent. Leading axes broadcast (frames, batches).
    Steps: blendshapes, joints regressed from the shaped mesh, pose correctives from (R - I),
    linear blend skinning.
    """
    rest = shaped_vertices(model, shape, expression)  # (..., V, 3)
    rotations = rodrigues(pose)  # (..., 5, 3, 3)
    batch = np.broadcast_shapes(rest.shape[:-2], rotations.shape[:-3])  # e.g. one identity, T poses
    rest = np.broadcast_to(rest, batch + rest.shape[-2:])
    rotations = np.broadcast_to(rotations, batch + rotations.shape[-3:])
    joints = np.einsum("jv,...vc->...jc", model.joint_regressor, rest)  # (..., 5, 3)
    corrective = np.tensordot(pose_features(rotations), model.pose_basis, axes=([-1], [0]))  # (..., V, 3)
    posed = rest + corrective
    transforms, posed_joints = joint_transforms(rotations, joints, model.parents)  # (..., 5, 3, 4)
    blended = np.einsum("vj,...jik->...vik", model.skinning_weights, transforms)  # (..., V, 3, 4)
    vertices = np.einsum("...vik,...vk->...vi", blended[..., :3], posed) + blended[..., 3]
    return vertices, posed_joints


def unskinned(weight: np.ndarray, world: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """Posed offsets (L, 3, n) metres, frames last -> rest-space offsets (L, 3, n) float32:
    B^-1 p per landmark and frame, B = sum_j w_lj G_j with skinning weights w (L, J) and world
    rotations G (n, J, 3, 3).

    Landmarks only resting joints carry (G = I in every frame: the root and the neck in a bake)
    have B = (sum_j w_lj) I, a division. The others are solved by Cramer's rule, x = (p_0 c_0 +
    p_1 c_1 + p_2 c_2) / det B with c_i the cross products of B's other two rows: a few array
    operations where a batched LAPACK solve pays its overhead per 3x3 system. In float32, the
    residual's own precision: B is near a rotation (det near 1), so the solve adds no more error
    than storing the result does (the detail layer's residual is stored in float32).
    """
    posed = posed.astype(np.float32)
    turning = ~np.all(world == np.eye(3), axis=(0, 2, 3))  # (J,) the joints rotated in some frame
    carried = np.flatnonzero(np.any(weight[:, turning] != 0, axis=1))  # (C,) the landmarks they move
    offsets = posed / weight.sum(axis=1).astype(np.float32)[:, None, None]  # (L, 3, n)
    if len(carried):
        world_rows = np.moveaxis(world, 0, -1).astype(np.float32).reshape(len(turning), -1)  # (J, 9 n)
        blend = weight[carried].astype(np.float32) @ world_rows  # (C, 9 n)
        first, second, third = np.moveaxis(blend.reshape(len(carried), 3, 3, -1), 1, 0)  # B's rows, (C, 3, n) each
        across = _cross(second, third), _cross(third, first), _cross(first, second)  # (C, 3, n) each
        determinant = np.sum(first * across[0], axis=1)  # (C, n)
        values = posed[carried]  # (C, 3, n)
        offsets[carried] = sum(values[:, axis, None] * across[axis] for axis in range(3)) / determinant[:, None]
    return offsets


def _cross(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cross products (C, 3, n) of vectors (C, 3, n) along axis 1: contiguous rows of frames,
    where ``np.cross`` would work on strided ones."""
    return np.stack([first[:, 1] * second[:, 2] - first[:, 2] * second[:, 1],
                     first[:, 2] * second[:, 0] - first[:, 0] * second[:, 2],
                     first[:, 0] * second[:, 1] - first[:, 1] * second[:, 0]], axis=1)


# -- as a HeadModel -------------------------------------------------------------------------------
def expression_names(count: int = EXPRESSION_COMPONENTS) -> tuple[str, ...]:
    return tuple(f"Exp{index:03d}" for index in range(count))


def identity_names(count: int) -> tuple[str, ...]:
    return tuple(f"Shape{index:03d}" for index in range(count))


def skinning_regions(model: FlameModel) -> dict[str, np.ndarray]:
    """Regions FLAME itself defines through its skinning: what each joint carries most.

    ``jaw`` (the jaw joint's share >= 0.5: chin, lower lip, lower teeth line), ``eyeballs`` (the
    two eye joints' share >= 0.5), ``neck`` (the global joint's share >= 0.5: the skin that stays
    when FLAME's neck joint turns the head) and ``head`` (every vertex). FLAME's file has no finer
    semantic labels; finer face regions (brows, nose, mouth) would come from the landmark
    embedding, not from guesses here.
    """
    weights = model.skinning_weights  # (V, 5)
    share = {name: weights[:, position] for position, name in enumerate(JOINT_NAMES)}
    eyes = share["left_eye"] + share["right_eye"]
    return {
        "jaw": np.flatnonzero(share["jaw"] >= REGION_WEIGHT_THRESHOLD).astype(np.int32),
        "eyeballs": np.flatnonzero(eyes >= REGION_WEIGHT_THRESHOLD).astype(np.int32),
        "neck": np.flatnonzero(share["global"] >= REGION_WEIGHT_THRESHOLD).astype(np.int32),
        "head": np.arange(model.vertex_count, dtype=np.int32),
    }


def to_head_model(model: FlameModel, landmarks: LandmarkEmbedding, name: str | None = None) -> HeadModel:
    """FLAME as MXR's head interface: the template, the 100 expression components ``Exp000..``,
    the identity components ``Shape000..`` and FLAME's rig (joints, skinning, correctives) in
    ``extras`` for the Blender rig builder:

    - ``joint_names`` (5,), ``parents`` (5,) int64, ``joint_regressor`` (5, V),
    - ``skinning_weights`` (V, 5), ``pose_basis`` (36, V, 3) (see ``pose_features``),
    - ``identity_names`` (S,).

    Bounds are ``FLAME_COEFFICIENT_BOUNDS``: FLAME coefficients are signed, in standard deviations.
    """
    return HeadModel(
        name=name or model.name,
        vertices=model.template.astype(np.float32),
        faces=model.faces.astype(np.int32),
        expression_basis=model.expression_basis.astype(np.float32),
        expression_names=expression_names(len(model.expression_basis)),
        regions=skinning_regions(model),
        landmarks=landmarks,
        coefficient_bounds=FLAME_COEFFICIENT_BOUNDS,
        identity_basis=model.shape_basis.astype(np.float32),
        extras={
            "joint_names": np.array(JOINT_NAMES),
            "parents": model.parents.astype(np.int64),
            "joint_regressor": model.joint_regressor.astype(np.float32),
            "skinning_weights": model.skinning_weights.astype(np.float32),
            "pose_basis": model.pose_basis.astype(np.float32),
            "identity_names": np.array(identity_names(len(model.shape_basis))),
        },
    )
