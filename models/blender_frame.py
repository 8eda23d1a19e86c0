"""Blender's axes and rotation conventions in numpy, so that a bake can be computed without Blender.

Heads (``HeadModel``, FLAME) have Y up and +Z out of the face; Blender has Z up and a face that
looks at its front view (-Y). Rotations become Blender's XYZ Euler angles (an object's
``rotation_euler``) or (w, x, y, z) quaternions (a pose bone's ``rotation_quaternion``), made
continuous from frame to frame so that F-curves interpolate the short way.
"""
from __future__ import annotations

import numpy as np

# Head axes -> Blender axes, for points and vectors: (x, y, z) -> (x, -z, y); for rotations,
# R_blender = AXES @ R_head @ AXES.T.
AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def head_to_blender(points: np.ndarray) -> np.ndarray:
    """(..., 3) head axes -> (..., 3) Blender axes; metres stay metres. Numpad 1 then shows the
    performer as the reference camera does."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


def orthonormalised(rotations: np.ndarray) -> np.ndarray:
    """The nearest rotations (..., 3, 3) float64 to nearly orthonormal matrices (stored float32)."""
    u, _, vt = np.linalg.svd(np.asarray(rotations, np.float64))
    return u @ vt


def continuous_eulers_xyz(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) -> Blender XYZ Euler angles (n, 3) radians, R = Rz Ry Rx.

    Every rotation has two XYZ Euler triples (and any of them plus multiples of 2 pi); each frame
    takes the one nearest the previous frame's, as Blender's ``to_euler(order, compatible)`` does,
    so a head turning past 180 degrees or through the pole does not make the curves jump.
    """
    matrices = np.asarray(rotations, np.float64)
    pitch = np.arcsin(np.clip(-matrices[:, 2, 0], -1.0, 1.0))  # (n,)
    roll = np.arctan2(matrices[:, 2, 1], matrices[:, 2, 2])
    yaw = np.arctan2(matrices[:, 1, 0], matrices[:, 0, 0])
    pole = np.abs(matrices[:, 2, 0]) > 1.0 - 1e-12  # gimbal lock: roll and yaw share one angle
    roll[pole] = np.arctan2(-matrices[pole, 1, 2], matrices[pole, 1, 1])
    yaw[pole] = 0.0
    first = np.stack([roll, pitch, yaw], axis=1)  # (n, 3)
    second = np.stack([roll + np.pi, np.pi - pitch, yaw + np.pi], axis=1)
    eulers = np.empty_like(first)
    previous = None
    for index in range(len(first)):
        candidates = np.stack([first[index], second[index]])  # (2, 3)
        if previous is None:
            candidates = (candidates + np.pi) % (2.0 * np.pi) - np.pi
        else:
            candidates = previous + (candidates - previous + np.pi) % (2.0 * np.pi) - np.pi
        choice = candidates[0] if previous is None else candidates[np.argmin(np.abs(candidates - previous).sum(axis=1))]
        eulers[index] = previous = choice
    return eulers


def continuous_quaternions(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) -> unit quaternions (n, 4) (w, x, y, z), each frame's sign that
    of the previous frame (q and -q are the same rotation; the curves must not flip)."""
    m = np.asarray(rotations, np.float64)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # Four equivalent formulas; each frame uses the one whose divisor is largest (Shepperd's method).
    candidates = np.stack([
        np.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], axis=1),
        np.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                  m[:, 0, 2] + m[:, 2, 0]], axis=1),
        np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                  m[:, 1, 2] + m[:, 2, 1]], axis=1),
        np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                  1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], axis=1),
    ])  # (4, n, 4): candidate k is 4 q_k q
    pick = np.argmax(np.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]]), axis=0)  # (n,)
    quaternions = candidates[pick, np.arange(len(m))]
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    quaternions *= np.where(quaternions[:, :1] < 0, -1.0, 1.0)  # w >= 0 for the first frame's sake
    if len(quaternions) > 1:
        flips = np.cumprod(np.where(np.sum(quaternions[1:] * quaternions[:-1], axis=1) < 0, -1.0, 1.0))
        quaternions[1:] *= flips[:, None]
    return quaternions
