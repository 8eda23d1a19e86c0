"""Register MediaPipe's 478 landmarks on a user's FLAME model (render and detect), once per file.

    .venv/bin/python scripts/flame_correspondence.py FLAME.pkl [OUTPUT.npz] [--embedding FILE.npz]

The same method as the built-in head (``scripts/build_head_asset.py``, whose helpers this
reuses): the neutral FLAME template is rendered frontally with an orthographic Workbench camera
at a few framings, MediaPipe FaceMesh finds the landmarks, they are averaged in the image plane
and cast along the camera ray onto the front-most triangle (irises onto the eyeballs, eyelid
landmarks onto the lids). The result (triangle indices and barycentric weights, no FLAME data)
goes to OUTPUT.npz, by default ``<FLAME file stem>_mxr_landmarks.npz`` next to the FLAME file.
With ``--embedding`` the supplied FLAME landmark embedding's points are checked against it: the
report gives their distance from the registered ones. ``models.flame_embedding.load_flame_head``
combines the two (supplied points win).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxr.models.correspondence import LANDMARK_COUNT, LandmarkEmbedding
from mxr.models.flame import FlameModel, load_flame
from mxr.models.flame_embedding import (
    combine_embeddings,
    default_registration_path,
    read_supplied_embedding,
    registration_geometry,
    save_landmark_embedding,
)
from mxr.ops.errors import MxrError


@dataclass(frozen=True)
class Registration:
    embedding: LandmarkEmbedding
    direct_hits: np.ndarray  # (478,) bool: the ray hit the landmark's surface (else it snapped)
    detections: int  # framings MediaPipe found the face in


def register_landmarks(model: FlameModel) -> Registration:
    """Render-and-detect registration of the 478 landmarks on the model's neutral template."""
    from mxr.scripts.build_head_asset import (
        NoFaceFound,
        average_in_image_plane,
        detect_in_framings,
        embed_on_skin_and_eyeballs,
    )

    geometry = registration_geometry(model)
    with tempfile.TemporaryDirectory(prefix="mxr_flame_") as workdir:
        landmark_sets, projections, _ = detect_in_framings(geometry, Path(workdir))
    if not landmark_sets:
        raise NoFaceFound("MediaPipe found no face on any render of the FLAME template")
    average = average_in_image_plane(landmark_sets, projections).mean(axis=0)  # (478, 3) metres
    reference = projections[0]
    embedding, hits = embed_on_skin_and_eyeballs(geometry, reference.project(average)[:, :2], reference)
    return Registration(embedding, hits, len(landmark_sets))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flame", type=Path, help="the FLAME model pickle (your own copy)")
    parser.add_argument("output", type=Path, nargs="?", help="where to write the registration (.npz)")
    parser.add_argument("--embedding", type=Path, help="FLAME's mediapipe_landmark_embedding.npz, to compare")
    arguments = parser.parse_args(argv)
    output = arguments.output or default_registration_path(arguments.flame)
    try:
        model = load_flame(arguments.flame)
        supplied = None if arguments.embedding is None else read_supplied_embedding(arguments.embedding, model.faces)
        registration = register_landmarks(model)
    except (MxrError, RuntimeError) as error:
        print(f"flame_correspondence: error: {error}", file=sys.stderr)
        return 1
    save_landmark_embedding(output, registration.embedding, model.vertex_count, registration.direct_hits)
    print(
        f"{model.name}: {int(registration.direct_hits.sum())}/{LANDMARK_COUNT} landmarks hit directly "
        f"(face found in {registration.detections} renders) -> {output}"
    )
    if supplied is not None:
        combined = combine_embeddings(registration.embedding, supplied).locate(model.template)
        registered = registration.embedding.locate(model.template)
        gap_mm = np.linalg.norm(combined - registered, axis=1)[supplied.landmark_indices] * 1000.0
        print(f"supplied embedding: {len(gap_mm)} points, {np.median(gap_mm):.1f} mm median / "
              f"{gap_mm.max():.1f} mm max from the registered ones; they take precedence")
    return 0


if __name__ == "__main__":
    sys.exit(main())
