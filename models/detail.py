"""The detail layer: what a head's basis cannot express, as a few per-take detail shapes.

Retargeting fits a head's parameters by regularised least squares; the part of the take's
deformation they cannot reproduce (wrinkles, a lip shape no blendshape has, the ridge's bias)
is the **residual** at the 478 landmarks. It becomes vertex offsets in three steps:

1. residual per frame at the landmarks, in the head's metres and axes (the same alignment as
   ``retarget``), minus what the fitted rig produces there;
2. compression over time first (``compress``): the principal components of the (T_valid, L*3)
   landmark residual keep the few that hold the requested share of its energy. Compressing
   before spreading is cheaper (L*3 = 1404 columns, not V*3) and gives the same shapes, because
   the spread is linear;
3. the spread (``DetailSpread``): each component, a field on the landmarks, becomes a smooth
   field on the vertices by compactly supported radial basis functions (Wendland C2,
   positive definite in 3-D), fitted so that the field seen at the landmarks through the head's
   embedding reproduces the residual (Tikhonov-regularised, as MediaPipe's landmarks sit a
   millimetre apart on the lids and lips and would make a plain interpolation oscillate).
   Compact support is what keeps the back of the head still: a vertex farther than the radius
   from every landmark gets exactly zero, and the field fades smoothly (C2) towards that edge.
   Two dense matrices per head, the kernel (V', L) and the fit (L, L), built once per bake in
   milliseconds; applying them is two matrix products per take (their (V', L) product is never
   formed: it would cost more than all a take's applications).

Why RBFs and not a Laplacian solve: the landmarks are barycentric points, not vertices, and the
RBF fit needs no mesh connectivity (FLAME and the open head alike, quads or not) and no sparse
solver (numpy only). Its limit: distances are Euclidean, so a lip's field leaks a little into
the other lip across a closed mouth (the regularisation keeps it small).

The irises (landmarks 468..477) carry gaze, not skin: they are no detail sources, and eyeballs
and the neck are not movable where a head says which vertices they are.

Units: metres in the head's own axes (HeadModel's, FLAME's), offsets from the rest mesh.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..ops.canonical import SKIN_LANDMARKS
from .correspondence import LandmarkEmbedding
from .head_model import HeadModel
from .retarget import AXIS_WEIGHTS, UnitSolve, displacement_on, frame_chunks, neutral_to_head, seen_landmark_basis

FACE_SOURCES = SKIN_LANDMARKS  # the landmarks whose residual becomes detail (the irises' does not)
STILL_REGIONS = ("neck", "eyeballs")  # HeadModel regions the detail never moves
RADIUS_FRACTION = 0.15  # support radius, as a fraction of the rest landmarks' bounding-box diagonal
SMOOTHING = 1e-3  # Tikhonov weight, relative to the fit matrix' mean squared column norm


def wendland(distance: np.ndarray, radius: float) -> np.ndarray:
    """Wendland's C2 function (1 - d/R)^4 (4 d/R + 1), zero from R on: 1 at d = 0."""
    ratio = np.clip(distance / radius, 0.0, 1.0)
    falling = (1.0 - ratio) ** 2  # squared twice: numpy's general power is several times slower
    return falling * falling * (4.0 * ratio + 1.0)


@dataclass(frozen=True)
class DetailSpread:
    """Landmark residuals -> smooth vertex offsets, for one head (a linear map, precomputed)."""

    vertex_count: int
    sources: np.ndarray  # (L',) landmark indices the residual is read at
    vertices: np.ndarray  # (V',) vertex indices that can move (within reach of a source)
    kernel: np.ndarray  # (V', L') offset of each moving vertex per unit weight at each source's centre
    fit: np.ndarray  # (L', L') the centres' weights per unit residual at each source

    @classmethod
    def build(
        cls,
        rest: np.ndarray,
        embedding: LandmarkEmbedding,
        movable: np.ndarray | None = None,
        radius: float | None = None,
        smoothing: float = SMOOTHING,
        sources: np.ndarray = FACE_SOURCES,
    ) -> "DetailSpread":
        """For a head at rest (V, 3) metres with its landmark embedding.

        ``movable`` (V,) bool: vertices the detail may move (default all). ``radius`` metres:
        the RBF support (default ``RADIUS_FRACTION`` of the rest landmarks' extent, so heads of
        any size get the same smoothness relative to the face).
        """
        rest = np.asarray(rest, dtype=np.float64)
        centres = embedding.locate(rest)[sources]  # (L', 3) metres
        if radius is None:
            radius = RADIUS_FRACTION * float(np.linalg.norm(np.ptp(centres, axis=0)))
        allowed = np.ones(len(rest), dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
        kernel = wendland(distances(rest, centres), radius) * allowed[:, None]  # (V, L')
        # The field at the landmarks is what the mesh shows there: the embedding of the vertex field.
        seen = embedding.locate(kernel.T[..., None])[..., 0][:, sources].T  # (L', L') landmark <- centre
        strength = smoothing * float(np.mean(np.sum(seen**2, axis=0)))
        gram = seen.T @ seen + strength * np.eye(len(centres))  # (L', L')
        reach = np.flatnonzero(kernel.any(axis=1))
        return cls(len(rest), np.asarray(sources), reach, kernel[reach], np.linalg.solve(gram, seen.T))

    def apply(self, residual: np.ndarray) -> np.ndarray:
        """Residual at the sources (..., L', 3) metres -> vertex offsets (..., V, 3) metres."""
        offsets = np.zeros(residual.shape[:-2] + (self.vertex_count, 3))
        offsets[..., self.vertices, :] = self.kernel @ (self.fit @ residual)  # matrix products (BLAS) per leading index
        return offsets


def distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distances (P, C) between points (P, 3) and centres (C, 3), as |p|^2 + |c|^2 - 2 p.c:
    one matrix product instead of a (P, C, 3) difference. Its rounding, about 1e-9 of the
    head's size near zero distance, is lost on the Wendland kernel, flat there."""
    squared = np.sum(points**2, axis=1)[:, None] + np.sum(centres**2, axis=1) - 2.0 * points @ centres.T
    return np.sqrt(np.clip(squared, 0.0, None))


def movable_vertices(vertex_count: int, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(V,) bool: every vertex outside the ``STILL_REGIONS`` (neck, eyeballs) a head has.

    For a ``HeadModel`` pass its ``regions``; for FLAME, ``flame.skinning_regions(model)``.
    """
    movable = np.ones(vertex_count, dtype=bool)
    for region in STILL_REGIONS:
        movable[regions.get(region, np.zeros(0, dtype=np.int64))] = False
    return movable


@dataclass(frozen=True)
class DetailLayer:
    """Per-take detail: shapes and their per-frame weights."""

    shapes: np.ndarray  # (N, V, 3) metres, head axes: offsets from the rest mesh at weight 1
    weights: np.ndarray  # (T, N), in [-1, 1]; NaN rows on frames without a face


def compress(
    residual: np.ndarray, energy: float = 0.99, max_shapes: int = 8, floor_m: float = 1e-5,
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual (T, L, 3) metres, NaN rows allowed -> components (N, L', 3) metres, weights (T, N).
    ``landmarks``: the L' of the L landmarks to read (all by default).

    Uncentred principal components: a shape key has no mean offset (weight 0 must be the rest
    shape), so the components explain the residual's second moment, the mean included. Keeps the
    fewest components whose share of that energy reaches ``energy``, at most ``max_shapes``, and
    drops any that moves no landmark by ``floor_m`` in any frame (invisible, not worth a key). Each
    component is scaled so its weights span [-1, 1] with the largest magnitude positive. Read
    ``CHUNK_FRAMES`` frames at a time through the (3 L', 3 L') second-moment matrix, so memory
    does not grow with the clip; in the residual's own precision (float32 for a bake's: a
    component then turns by about 1e-7 rad, below what float32 keys hold), summed in float64.
    Only its ``max_shapes`` leading eigenvectors are needed (``leading_eigenpairs``), the energy
    share being a fraction of its trace.
    """
    frames = len(residual)
    columns = np.arange(residual.shape[1]) if landmarks is None else np.asarray(landmarks)
    width = 3 * len(columns)
    if len(columns) and np.array_equal(columns, np.arange(columns[0], columns[0] + len(columns))):
        columns = slice(int(columns[0]), int(columns[0]) + len(columns))  # a view, not a copy, per chunk
    precision = np.result_type(residual.dtype, np.float32)

    def rows(part: slice) -> tuple[np.ndarray, np.ndarray]:
        """The chunk (n, 3 L') with its rows without a face zeroed, and which those are (n,)."""
        chunk = np.array(residual[part][:, columns], precision).reshape(part.stop - part.start, -1)  # (n, 3 L')
        valid = np.all(np.isfinite(chunk), axis=1)
        chunk[~valid] = 0.0
        return chunk, valid

    second_moment = np.zeros((width, width))
    for part in frame_chunks(frames):
        chunk, _ = rows(part)
        second_moment += chunk.T @ chunk  # one operand: BLAS's symmetric product
    total = float(np.trace(second_moment))
    if total <= 0.0:
        return np.zeros((0, width // 3, 3)), np.full((frames, 0), np.nan)
    variances, directions = leading_eigenpairs(second_moment, min(max_shapes, width))
    share = np.cumsum(variances) / total
    count = min(int(np.searchsorted(share, energy - 1e-12)) + 1, len(variances))
    directions = directions[:, :count]  # (3 L', N)
    scores = np.empty((frames, count))  # (T, N) metres-weighted per frame
    for part in frame_chunks(frames):
        chunk, valid = rows(part)
        scores[part] = np.where(valid[:, None], chunk @ directions, np.nan)
    peak = scores[np.nanargmax(np.abs(scores), axis=0), np.arange(count)]  # (N,) signed
    components = (directions.T * peak[:, None]).reshape(count, -1, 3)  # (N, L', 3) at weight 1
    keep = np.abs(components).max(axis=(1, 2)) >= floor_m  # the most any landmark moves
    return components[keep], (scores / np.where(peak == 0.0, 1.0, peak))[:, keep]


def leading_eigenpairs(matrix: np.ndarray, count: int, tolerance: float = 1e-13,
                       rounds: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (count,), descending and clipped at 0, and their
    eigenvectors (D, count) of a symmetric positive semi-definite matrix (D, D).

    Subspace iteration on ``count`` + 16 vectors with Rayleigh-Ritz, until every wanted Ritz pair
    has a residual ||M u - t u|| within ``tolerance`` of the largest eigenvalue: a few products
    with (D, count + 16) blocks (a bake's residual: ten), where the full decomposition of a bake's
    1404-wide second moment costs several times more. Small matrices, and spectra too flat to
    converge in ``rounds``, get the full ``eigh``.
    """
    size = len(matrix)
    if count + 16 < size // 2:
        basis = matrix @ np.random.default_rng(0).normal(size=(size, count + 16))  # (D, b)
        for _ in range(rounds):
            basis, _ = np.linalg.qr(basis)
            product = matrix @ basis  # (D, b)
            ritz, rotation = np.linalg.eigh(basis.T @ product)  # ascending
            ritz, rotation = ritz[::-1][:count], rotation[:, ::-1][:, :count]
            vectors = basis @ rotation  # (D, count)
            error = np.linalg.norm(product @ rotation - vectors * ritz, axis=0)  # (count,)
            if error.max() <= tolerance * max(ritz[0], np.finfo(float).tiny):
                return np.clip(ritz, 0.0, None), vectors
            basis = product
    variances, directions = np.linalg.eigh(matrix)  # ascending
    return np.clip(variances[::-1][:count], 0.0, None), directions[:, ::-1][:, :count]


def detail_layer(spread: DetailSpread, residual: np.ndarray, energy: float = 0.99, max_shapes: int = 8) -> DetailLayer:
    """Residual at all 478 landmarks (T, 478, 3) metres -> the take's detail shapes and weights."""
    components, weights = compress(residual, energy, max_shapes, landmarks=spread.sources)
    return DetailLayer(spread.apply(components), weights)


def head_residual(head: HeadModel, deformation_mm: np.ndarray, neutral_mm: np.ndarray, solve: UnitSolve,
                  on_chunk: Callable[[int, int], None] | None = None) -> np.ndarray:
    """What the units of ``solve`` leave unexplained of the take's deformation (T, 478, 3) mm
    (sliced like ``solve_units`` reads it; ``on_chunk`` as there): (T, 478, 3) float32 metres in head axes, NaN rows
    where there is no face. The rigid motion solved with the units is not detail, landmarks (and
    axes: depth) the solve did not read carry none, and a unit counts as far as MediaPipe shows it
    (``retarget.seen_landmark_basis``): a closed eye's lids are not pushed back open by the part
    of the blink the tracker never shows."""
    alignment = neutral_to_head(head, neutral_mm)
    seen_basis = seen_landmark_basis(head)  # (K, 478, 3) as the tracker sees the units
    read = solve.landmark_weights[:, None] * AXIS_WEIGHTS  # (478, 3)
    residual = np.empty((len(deformation_mm),) + seen_basis.shape[1:], np.float32)
    for frames in frame_chunks(len(residual)):
        target = displacement_on(alignment, deformation_mm[frames])  # (n, 478, 3) metres
        expressed = np.tensordot(solve.coefficients[frames], seen_basis, axes=1)
        residual[frames] = (target - solve.rigid_m(frames) - expressed) * read
        if on_chunk is not None:
            on_chunk(frames.stop, len(residual))
    return residual
