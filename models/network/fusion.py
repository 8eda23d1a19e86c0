"""Landmarks + optical flow -> one denoised deformation track, in expression-coefficient space.

The two observations are complementary and neither is good alone (measured on the synthetic
takes, `scripts/evaluate.py`): the baseline's landmarks are drift-free but jitter by ~0.3 mm a
frame, about the size of a micro-expression; the flow steps are ~8x more precise but only 2-D
(the camera's depth axis is unobserved) and drift when summed. This module solves, over the
whole take, for expression coefficients c_t (K per frame, the open head's ARKit-style units
carried into the take's canonical frame) that explain both:

    sum_t |gain * B c_t - landmarks_t|^2 / sigma_L^2
  + sum_t sum_n m_tn |Pi_t B_n (c_t - c_{t-1}) - flow_tn|^2 / sigma_F^2
  + ridge * |c_t|^2

with B (478 * 3, K) the basis, Pi_t = R_t^T diag(1, 1, 0) R_t the part of a canonical motion the
camera sees (R_t the head rotation), m_tn the flow's consistency mask and gain the fraction of
the skin's motion the landmarks show (``noise_model.json``). The normal equations are block
tridiagonal in t (K x K blocks), solved exactly by block elimination in chunks of frames. The
basis also fills in what the flow cannot see: a unit's depth motion follows from its image-plane
motion.

The result is the network's ``fused_mm`` input: B c_t (T, 478, 3) mm. What the basis cannot
express (detail) stays in the landmarks, which the network also reads.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ...ops.take import LANDMARK_COUNT, Take
from ..similarity import fit_similarities

# Per-axis noise, canonical mm. Landmarks: the noise model's jitter (~0.2-0.3 px per axis at the
# reference face width of 185 px, ~0.75 mm/px) plus the shared and global parts. Flow: the spread
# of the canonical flow steps against the truth on held-out synthetic takes (0.04-0.05 mm per axis
# a frame; most of it the flow error growing with the crop's stabilisation jitter).
LANDMARK_SIGMA_MM = 0.3
FLOW_SIGMA_MM = 0.045
RIDGE = 1e-3  # per unit coefficient squared: keeps unobserved units at zero
CHUNK_FRAMES = 256  # frames solved at once: ~50 MB of work arrays a chunk, whatever the take's length
OVERLAP_FRAMES = 32  # chunks overlap and are blended across this many frames (the solution's memory
# of a frame's flow fades within ~sqrt(sigma_L / sigma_F) ~ 3 frames, so 32 hides the seams)


@lru_cache(maxsize=1)
def expression_gain() -> float:
    """The fraction of the skin's expression motion the landmarks show, from ``noise_model.json``
    (assumed there, not measured: the real clips have no ground truth)."""
    data = json.loads((Path(__file__).resolve().parent / "noise_model.json").read_text())
    return float(data["expression_gain"]["value"])


@lru_cache(maxsize=1)
def _open_head_basis() -> tuple[np.ndarray, np.ndarray]:
    """The open head's neutral landmarks (478, 3) mm and landmark basis (K, 478, 3) mm per unit."""
    from ..open_head import load_open_head

    head = load_open_head()
    return head.landmark_positions().astype(np.float64) * 1000.0, head.landmark_basis().astype(np.float64) * 1000.0


def basis_in_take_frame(neutral_mm: np.ndarray) -> np.ndarray:
    """The open head's expression basis carried onto a take's neutral (478, 3) mm by the
    similarity between the two neutrals: (K, 478, 3) mm per unit coefficient."""
    reference, basis = _open_head_basis()
    alignment = fit_similarities(reference, np.asarray(neutral_mm, np.float64)[None])
    return basis @ (alignment.scale[0] * alignment.rotation[0]).T


def fuse_take(take: Take, flow_mm: np.ndarray, flow_mask: np.ndarray, basis_mm: np.ndarray,
              on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``fuse`` of the take's macro layer (its baseline displacement; frames without a face carry
    no landmark term) with its head rotations. flow_mm (T, 478, 3), flow_mask (T, 478) bool,
    basis_mm (K, 478, 3) the units in the take's frame (``basis_in_take_frame``) -> the
    coefficients (T, K) float64 (the open head's units)."""
    rotation = np.nan_to_num(np.asarray(take.head_rotation, np.float64))
    return fuse(take.macro_mm, flow_mm, flow_mask, np.asarray(take.valid, bool), rotation, basis_mm,
                expression_gain(), on_progress=on_progress)


def fuse(landmarks_mm: np.ndarray, flow_mm: np.ndarray, flow_mask: np.ndarray, valid: np.ndarray,
         rotation: np.ndarray, basis_mm: np.ndarray, gain: float,
         landmark_sigma_mm: float = LANDMARK_SIGMA_MM, flow_sigma_mm: float = FLOW_SIGMA_MM,
         chunk: int = CHUNK_FRAMES, overlap: int = OVERLAP_FRAMES,
         on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The least-squares coefficient track (see the module docstring).

    landmarks_mm, flow_mm (T, 478, 3) mm (landmarks: NaN or anything without a face; flow: the step
    t-1 -> t, frame 0 unused), flow_mask (T, 478) bool, valid (T,) bool, rotation (T, 3, 3)
    canonical -> camera, basis_mm (K, 478, 3)
    -> coefficients (T, K). Chunks of ``chunk`` frames overlapping by ``overlap`` keep memory
    bounded; their tracks are blended linearly across the overlap. ``on_progress(done, total)``:
    frames fused so far."""
    count = len(valid)
    if count <= chunk:  # read by frames ([:]): the engine's are on disk (ops/spill.py)
        track = _fuse_chunk(landmarks_mm[:], flow_mm[:], flow_mask[:], valid, rotation, basis_mm, gain,
                            landmark_sigma_mm, flow_sigma_mm)
        if on_progress is not None:
            on_progress(count, count)
        return track
    result = np.zeros((count, basis_mm.shape[0]))
    start, blended_until = 0, 0
    while True:
        stop = min(start + chunk, count)
        part = slice(start, stop)
        track = _fuse_chunk(landmarks_mm[part], flow_mm[part], flow_mask[part], valid[part], rotation[part],
                            basis_mm, gain, landmark_sigma_mm, flow_sigma_mm)
        ramp = np.clip((np.arange(start, stop) - start + 1) / (blended_until - start + 1), 0.0, 1.0)[:, None]
        result[part] = ramp * track + (1.0 - ramp) * result[part]
        if on_progress is not None:
            on_progress(stop, count)
        if stop == count:
            return result
        blended_until = stop
        start = stop - overlap


def _fuse_chunk(landmarks_mm: np.ndarray, flow_mm: np.ndarray, flow_mask: np.ndarray, valid: np.ndarray,
                rotation: np.ndarray, basis_mm: np.ndarray, gain: float, landmark_sigma_mm: float,
                flow_sigma_mm: float) -> np.ndarray:
    units = basis_mm.shape[0]
    frames = len(valid)
    flat = basis_mm.reshape(units, -1).T  # (1434, K)
    landmark_weight = np.asarray(valid, np.float64)[:, None, None] * gain**2 / landmark_sigma_mm**2
    diagonal = landmark_weight * (flat.T @ flat)[None] + RIDGE * np.eye(units)[None]  # (T, K, K)
    seen = np.where(np.asarray(valid, bool)[:, None], np.nan_to_num(landmarks_mm.reshape(frames, -1)), 0.0)  # (T, 1434)
    right = (gain / landmark_sigma_mm**2) * np.asarray(valid, np.float64)[:, None] * (
        seen.astype(np.float64) @ flat)  # (T, K)
    coupling, flow_right = flow_normal_equations(flow_mm, flow_mask, rotation, basis_mm, flow_sigma_mm)
    # Step t couples c_t and c_{t-1}: +G_t on both diagonals, -G_t off the diagonal.
    diagonal += coupling
    diagonal[:-1] += coupling[1:]
    right += flow_right
    right[:-1] -= flow_right[1:]
    return solve_block_tridiagonal(diagonal, -coupling[1:], right)


def flow_normal_equations(flow_mm: np.ndarray, flow_mask: np.ndarray, rotation: np.ndarray, basis_mm: np.ndarray,
                          flow_sigma_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step t: G_t = sum_n m_tn B_n^T Pi_t B_n / sigma^2 (T, K, K) and
    g_t = sum_n m_tn B_n^T Pi_t flow_tn / sigma^2 (T, K); zero at t = 0.

    Pi_t = I - v v^T with v = R_t[2] (the camera's depth axis in canonical coordinates) is a
    projector, so B_n^T Pi B_n = B_n^T B_n - u_n u_n^T with u_n = B_n^T v: two (T, 478) x
    (478, K^2)-sized products instead of a (1434 x K) matrix product per frame."""
    units = basis_mm.shape[0]
    per_landmark = np.ascontiguousarray(basis_mm.transpose(1, 2, 0), np.float64)  # (478, 3, K)
    outer = (per_landmark.transpose(0, 2, 1) @ per_landmark).reshape(LANDMARK_COUNT, -1)  # (478, K^2)
    mask = np.asarray(flow_mask, np.float64)
    mask[0] = 0.0
    depth_axis = rotation[:, 2, :]  # (T, 3)
    along = np.tensordot(depth_axis, per_landmark, axes=([1], [1]))  # (T, 478, K) = u_n per frame
    weighted = along * mask[..., None]
    coupling = (mask @ outer).reshape(-1, units, units) - weighted.transpose(0, 2, 1) @ along
    flow = flow_mm.astype(np.float64) * mask[..., None]  # the flow's own depth component is zero already
    seen = flow - np.einsum("tni,ti->tn", flow, depth_axis)[..., None] * depth_axis[:, None, :]  # Pi_t flow
    right = seen.reshape(len(seen), -1) @ per_landmark.reshape(-1, units)  # (T, K)
    return coupling / flow_sigma_mm**2, right / flow_sigma_mm**2


def solve_block_tridiagonal(diagonal: np.ndarray, lower: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Solve the symmetric block-tridiagonal system with diagonal blocks (T, K, K), sub-diagonal
    blocks lower[t] = A[t+1, t] (T-1, K, K) (the super-diagonal is their transpose) and right-hand
    sides (T, K), by block elimination (the block Thomas algorithm). -> (T, K)."""
    count = len(diagonal)
    eliminated = np.empty_like(diagonal)  # inverse of the eliminated diagonal block
    carried = np.empty_like(right)
    eliminated[0] = np.linalg.inv(diagonal[0])
    carried[0] = eliminated[0] @ right[0]
    for t in range(1, count):
        block = lower[t - 1]
        pivot = diagonal[t] - block @ eliminated[t - 1] @ block.T
        eliminated[t] = np.linalg.inv(pivot)
        carried[t] = eliminated[t] @ (right[t] - block @ carried[t - 1])
    solution = np.empty_like(right)
    solution[-1] = carried[-1]
    for t in range(count - 2, -1, -1):
        solution[t] = carried[t] - eliminated[t] @ lower[t].T @ solution[t + 1]
    return solution
