"""Where MXR's reference camera must be, frame by frame, for the baked head to sit over the
performer's face in the video behind it.

Why: an animator judges a bake by comparing it with the footage. The take records where the face
was in each frame (``head_translation_px``: the canonical origin's image position, and
``head_scale_px_per_mm``), and the bake turns the rig as the head turned. Seen through an
orthographic camera, the turned rig is the take's weak-perspective view of the face, up to a
shift and a scale, and those are what the camera takes from the take: each frame it moves
so the rig's copy of the canonical origin lands where the video shows it, and its
``ortho_scale`` makes one video pixel as many metres as one performer millimetre is on the head.

The video is drawn fitted into the camera frame (aspect kept, centred); the camera frame's
aspect is the scene's render resolution, which is left as the user set it.

Units: video px (x right, y down, source px), metres, Blender world axes (the camera looks along
+Y: image right is +X, image up is +Z).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.take import Take
from .blender_frame import AXES, orthonormalised


@dataclass(frozen=True)
class ReferenceView:
    """The reference camera at the take's frames that have a face and a pose."""

    frames: np.ndarray  # (n,) take frames
    centre_m: np.ndarray  # (n, 2) world X and Z of the camera, metres
    ortho_scale_m: np.ndarray  # (n,) the camera's orthographic scale, metres


def fitted_metres_per_px(ortho_scale_m: float | np.ndarray, video_size: tuple[int, int],
                         frame_aspect: float) -> np.ndarray:
    """Metres per video px when the video is fitted into an orthographic camera frame of
    ``ortho_scale_m`` (Blender's automatic sensor fit: the scale spans the frame's longer side)
    whose width / height is ``frame_aspect``."""
    width_px, height_px = video_size
    frame_width, frame_height = (1.0, 1.0 / frame_aspect) if frame_aspect >= 1.0 else (frame_aspect, 1.0)
    return np.asarray(ortho_scale_m, np.float64) * min(frame_width / width_px, frame_height / height_px)


def reference_view(take: Take, metres_per_mm: float, origin_local_m: np.ndarray, rig_location_m: np.ndarray,
                   rig_scale: float, frame_aspect: float, rotation_keyed: bool = True) -> ReferenceView:
    """The camera track for ``take`` baked onto a rig at ``rig_location_m`` (3,) world metres,
    scaled ``rig_scale``, turned per frame by the take's head rotation (``rotation_keyed``; else
    not turned). ``metres_per_mm``: the head's metres per performer mm, and ``origin_local_m``
    (3,): the performer's canonical origin in the rig's object space (both from the bake's
    alignment, ``retarget.neutral_to_head``)."""
    rotation_ok = np.all(np.isfinite(take.head_rotation), axis=(1, 2))
    placed = np.all(np.isfinite(take.head_translation_px[:, :2]), axis=1) & (take.head_scale_px_per_mm > 0)
    frames = np.flatnonzero(np.asarray(take.valid, bool) & rotation_ok & placed)
    origin = rig_scale * np.asarray(origin_local_m, np.float64)  # (3,)
    if rotation_keyed:
        turned = AXES @ orthonormalised(take.head_rotation[frames]) @ AXES.T  # (n, 3, 3) world
        origin_m = rig_location_m + turned @ origin  # (n, 3)
    else:
        origin_m = np.broadcast_to(rig_location_m + origin, (len(frames), 3))
    image_px = np.stack([take.head_translation_px[frames, 0], -take.head_translation_px[frames, 1]], axis=1)
    metres_per_px = metres_per_mm * rig_scale / take.head_scale_px_per_mm[frames].astype(np.float64)  # (n,)
    ortho_scale = metres_per_px / fitted_metres_per_px(1.0, take.frame_size, frame_aspect)
    from_centre = image_px - np.asarray(take.frame_size, np.float64) / 2.0  # (n, 2) px, y down
    centre = np.stack([origin_m[:, 0] - from_centre[:, 0] * metres_per_px,
                       origin_m[:, 2] + from_centre[:, 1] * metres_per_px], axis=1)
    return ReferenceView(frames, centre, ortho_scale)
