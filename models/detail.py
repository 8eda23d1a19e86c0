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
   One dense (V', L) matrix per head, built once per bake in milliseconds; applying it is one
   matrix product per take.

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
from .flame import joint_transforms, rodrigues
from .head_model import HeadModel
from .retarget import (AXIS_WEIGHTS, FlameLandmarks, UnitSolve, displacement_on, flame_rest_alignment, frame_chunks,
                       neutral_to_head, seen_landmark_basis)

FACE_SOURCES = SKIN_LANDMARKS  # the landmarks whose residual becomes detail (the irises' does not)
STILL_REGIONS = ("neck", "eyeballs")  # HeadModel regions the detail never moves
RADIUS_FRACTION = 0.15  # support radius, as a fraction of the rest landmarks' bounding-box diagonal
SMOOTHING = 1e-3  # Tikhonov weight, relative to the fit matrix' mean squared column norm


def wendland(distance: np.ndarray, radius: float) -> np.ndarray:
    """Wendland's C2 function (1 - d/R)^4 (4 d/R + 1), zero from R on: 1 at d = 0."""
    ratio = np.clip(distance / radius, 0.0, 1.0)
    return (1.0 - ratio) ** 4 * (4.0 * ratio + 1.0)


@dataclass(frozen=True)
class DetailSpread:
    """Landmark residuals -> smooth vertex offsets, for one head (a linear map, precomputed)."""

    vertex_count: int
    sources: np.ndarray  # (L',) landmark indices the residual is read at
    vertices: np.ndarray  # (V',) vertex indices that can move (within reach of a source)
    matrix: np.ndarray  # (V', L') offset of each moving vertex per unit residual at each source

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
        gaps = np.linalg.norm(rest[:, None, :] - centres[None, :, :], axis=2)  # (V, L') metres
        kernel = wendland(gaps, radius) * allowed[:, None]  # (V, L')
        # The field at the landmarks is what the mesh shows there: the embedding of the vertex field.
        seen = embedding.locate(kernel.T[..., None])[..., 0][:, sources].T  # (L', L') landmark <- centre
        strength = smoothing * float(np.mean(np.sum(seen**2, axis=0)))
        gram = seen.T @ seen + strength * np.eye(len(centres))  # (L', L')
        reach = np.flatnonzero(kernel.any(axis=1))
        matrix = kernel[reach] @ np.linalg.solve(gram, seen.T)  # (V', L'): centre weights from residuals
        return cls(len(rest), np.asarray(sources), reach, matrix)

    def apply(self, residual: np.ndarray) -> np.ndarray:
        """Residual at the sources (..., L', 3) metres -> vertex offsets (..., V, 3) metres."""
        offsets = np.zeros(residual.shape[:-2] + (self.vertex_count, 3))
        offsets[..., self.vertices, :] = np.einsum("vl,...lc->...vc", self.matrix, residual)
        return offsets


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
    does not grow with the clip.
    """
    frames = len(residual)
    columns = np.arange(residual.shape[1]) if landmarks is None else np.asarray(landmarks)

    def rows(part: slice) -> tuple[np.ndarray, np.ndarray]:
        chunk = np.asarray(residual[part][:, columns], np.float64).reshape(part.stop - part.start, -1)  # (n, 3 L')
        return chunk, np.all(np.isfinite(chunk), axis=1)

    second_moment = np.zeros((3 * len(columns),) * 2)
    for part in frame_chunks(frames):
        chunk, valid = rows(part)
        second_moment += chunk[valid].T @ chunk[valid]
    variances, directions = np.linalg.eigh(second_moment)  # ascending
    variances, directions = np.clip(variances[::-1], 0.0, None), directions[:, ::-1]
    if variances[0] <= 0.0:
        return np.zeros((0, len(columns), 3)), np.full((frames, 0), np.nan)
    share = np.cumsum(variances) / float(np.sum(variances))
    count = min(int(np.searchsorted(share, energy - 1e-12)) + 1, max_shapes)
    scores = np.full((frames, count), np.nan)  # (T, N) metres-weighted per frame
    for part in frame_chunks(frames):
        chunk, valid = rows(part)
        scores[part][valid] = chunk[valid] @ directions[:, :count]
    peak = scores[np.nanargmax(np.abs(scores), axis=0), np.arange(count)]  # (N,) signed
    components = (directions[:, :count].T * peak[:, None]).reshape(count, len(columns), 3)  # (N, L', 3) at weight 1
    keep = np.abs(components).max(axis=(1, 2)) >= floor_m  # the most any landmark moves
    return components[keep], (scores / np.where(peak == 0.0, 1.0, peak))[:, keep]


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


def flame_residual(
    rig: FlameLandmarks, deformation_mm: np.ndarray, neutral_mm: np.ndarray, expression: np.ndarray, pose: np.ndarray,
    on_chunk: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """What FLAME at expression (T, E) and pose (T, 5, 3) leaves unexplained of the take's
    deformation (T, 478, 3) mm (sliced like ``solve_units`` reads it), brought back to **rest
    space** (T, 478, 3) float32 metres, NaN rows where there is no face or no solve.

    Shape keys act before skinning, so a rest-space offset d at a landmark shows posed as
    (sum_j w_j G_j) d, with w the landmark's skinning weights and G_j the joints' global
    rotations: the residual is unrotated by that blend (the jaw's rotation, mostly).
    """
    rest = rig.locate(np.zeros(rig.expression.shape[0]), np.zeros((len(rig.parents), 3)))  # (L, 3)
    alignment = flame_rest_alignment(rig, neutral_mm)
    residual = np.full((len(deformation_mm),) + rest.shape, np.nan, np.float32)
    for frames in frame_chunks(len(residual)):
        target = rest + displacement_on(alignment, deformation_mm[frames])  # (n, L, 3)
        valid = np.all(np.isfinite(target), axis=(1, 2)) & np.all(np.isfinite(expression[frames]), axis=1)
        if not valid.any():
            continue
        frame_pose = pose[frames][valid]
        posed = target[valid] - rig.locate(expression[frames][valid], frame_pose)  # (n, L, 3)
        rotations = rodrigues(frame_pose)  # (n, J, 3, 3)
        joints = np.broadcast_to(rig.joints_rest, rotations.shape[:-2] + (3,))
        transforms, _ = joint_transforms(rotations, joints, rig.parents)  # (n, J, 3, 4)
        blend = np.einsum("lj,njab->nlab", rig.weight, transforms[..., :3])  # (n, L, 3, 3)
        residual[frames][valid] = np.linalg.solve(blend, posed[..., None])[..., 0]
        if on_chunk is not None:
            on_chunk(frames.stop, len(residual))
    return residual
    posed = target[valid] - rig.locate(expression[valid], pose[valid])  # (n, L, 3)
    rotations = rodrigues(pose[valid])  # (n, J, 3, 3)
    joints = np.broadcast_to(rig.joints_rest, rotations.shape[:-2] + (3,))
    transforms, _ = joint_transforms(rotations, joints, rig.parents)  # (n, J, 3, 4)
    blend = np.einsum("lj,njab->nlab", rig.weight, transforms[..., :3])  # (n, L, 3, 3)
    residual[valid] = np.linalg.solve(blend, posed[..., None])[..., 0]
    return residual
