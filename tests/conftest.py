"""Shared fixtures: a registered MXR add-on, an empty Blender file, synthetic heads and takes,
and the scripts under scripts/ loaded as modules.

bpy is imported lazily inside the fixtures, so test modules that never use Blender do not pay
for it.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import pytest

from mxr.models.correspondence import LANDMARK_COUNT, LandmarkEmbedding
from mxr.models.head_model import HeadModel
from mxr.ops.take import Take, unobserved_front_end


@pytest.fixture(scope="session", autouse=True)
def private_frontend_cache(tmp_path_factory):
    """Engine runs in tests (and their subprocesses) cache into a fresh folder, not ~/.cache."""
    import os

    previous = os.environ.get("MXR_CACHE_DIR")
    os.environ["MXR_CACHE_DIR"] = str(tmp_path_factory.mktemp("frontend_cache"))
    yield
    if previous is None:
        del os.environ["MXR_CACHE_DIR"]
    else:
        os.environ["MXR_CACHE_DIR"] = previous


@pytest.fixture
def load_script(monkeypatch) -> Callable[[str], ModuleType]:
    """``load_script("train_events")``: scripts/train_events.py as a module, registered in
    sys.modules for the test (its dataclasses look their module up there)."""
    scripts = Path(__file__).resolve().parents[1] / "scripts"

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_script", scripts / f"{name}.py")
        script = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, script)
        spec.loader.exec_module(script)
        return script

    return load


@pytest.fixture(scope="module")
def mxr_addon():
    """MXR's classes registered in bpy for the module (``import mxr; mxr.register()``)."""
    import bpy  # noqa: F401  (load Blender before registering MXR)
    import mxr

    mxr.register()
    yield
    mxr.unregister()


@pytest.fixture
def empty_blend(mxr_addon):
    """Factory settings with an empty scene at 30 frames/s (the synthetic takes' rate, so that take
    frame k plays on scene frame ``frame_start + k``); returns ``bpy.context.scene``."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.0
    yield bpy.context.scene
    bpy.ops.wm.read_factory_settings(use_empty=True)


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Head rotation (3, 3), canonical -> camera: yaw about y, then pitch about x, then roll about z."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    yaw = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    roll = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return yaw @ pitch @ roll


def synthetic_head(name: str = "synthetic_head", expressions: int = 6, grid: int = 12, seed: int = 0) -> HeadModel:
    """A small curved quad sheet (face-sized, metres) with smooth random expression shapes."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-0.08, 0.08, grid), np.linspace(-0.1, 0.1, grid))
    depth = 0.05 - 4.0 * (u**2 + 0.5 * v**2)  # bulges towards +Z like a face
    vertices = np.stack([u, v + 1.6, depth], axis=-1).reshape(-1, 3).astype(np.float32)
    index = np.arange(grid * grid).reshape(grid, grid)
    faces = np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1).reshape(-1, 4)
    triangles = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    centres = rng.uniform(-0.08, 0.08, (expressions, 2))
    falloff = np.exp(-((u.ravel()[None] - centres[:, :1]) ** 2 + (v.ravel()[None] - centres[:, 1:]) ** 2) / 0.002)
    basis = (falloff[..., None] * rng.normal(0.0, 0.004, (expressions, 1, 3))).astype(np.float32)  # (K, V, 3) m
    barycentric = rng.dirichlet(np.ones(3), LANDMARK_COUNT).astype(np.float32)
    embedding = LandmarkEmbedding(triangles[rng.integers(0, len(triangles), LANDMARK_COUNT)].astype(np.int32), barycentric)
    half = grid * grid // 2
    return HeadModel(
        name=name, vertices=vertices, faces=faces.astype(np.int32), expression_basis=basis,
        expression_names=tuple(f"shape_{k}" for k in range(expressions)),
        regions={"upper": np.arange(half, dtype=np.int32), "lower": np.arange(half, grid * grid, dtype=np.int32)},
        landmarks=embedding,
    )


def synthetic_take(head: HeadModel, frames: int = 24, invalid: tuple[int, ...] = (3, 4, 10), seed: int = 1,
                   source_path: str = "/nonexistent/performer.mp4", fps: float = 30.0) -> Take:
    """A valid take whose deformation is ``head``'s basis at random coefficients (mm, canonical).

    Frames in ``invalid`` have no face: NaN per-frame values and ``valid`` False.
    """
    rng = np.random.default_rng(seed)
    neutral_mm = head.landmark_positions().astype(np.float64) * 1000.0  # (478, 3)
    coefficients = rng.uniform(0.0, 0.6, (frames, len(head.expression_names)))  # (T, K)
    deformation_mm = np.tensordot(coefficients, head.landmark_basis(), axes=1) * 1000.0  # (T, 478, 3)
    valid = np.ones(frames, dtype=bool)
    valid[list(invalid)] = False
    angles = rng.uniform(-0.2, 0.2, frames)
    rotation = np.zeros((frames, 3, 3), dtype=np.float32)  # yaw about the canonical Y (up) axis
    rotation[:, 0, 0] = rotation[:, 2, 2] = np.cos(angles)
    rotation[:, 0, 2], rotation[:, 2, 0] = np.sin(angles), -np.sin(angles)
    rotation[:, 1, 1] = 1.0

    return take_from_deformation(neutral_mm, 0.7 * deformation_mm, 0.3 * deformation_mm, rotation, valid,
                                 rng.normal(300.0, 50.0, (frames, LANDMARK_COUNT, 3)), source_path, fps)


def take_from_deformation(neutral_mm: np.ndarray, macro_mm: np.ndarray, micro_mm: np.ndarray,
                          head_rotation: np.ndarray, valid: np.ndarray, landmarks_px: np.ndarray,
                          source_path: str, fps: float) -> Take:
    """A valid take around known layers (T, 478, 3) mm; NaN on frames where ``valid`` is False,
    no detail, no front-end observations."""
    frames = len(valid)

    def per_frame(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float32)
        values[~valid] = np.nan
        return values

    return Take(
        source_path=source_path, source_sha256="0" * 64, fps=fps, frame_size=(640, 480),
        timestamps_s=np.arange(frames) / fps, valid=valid,
        landmarks_px=per_frame(landmarks_px),
        head_rotation=per_frame(head_rotation), head_translation_px=per_frame(np.full((frames, 3), 320.0)),
        head_scale_px_per_mm=per_frame(np.full(frames, 2.0)), neutral_mm=neutral_mm.astype(np.float32),
        macro_mm=per_frame(macro_mm), micro_mm=per_frame(micro_mm),
        detail_mm=per_frame(np.zeros_like(macro_mm)), **unobserved_front_end(frames),
    )


@pytest.fixture(scope="session")
def face_like_flame(tmp_path_factory):
    """A face-like FLAME-format file (the open head at FLAME's 5023 vertices) with its automatic
    landmark registration next to it, where the FLAME import looks: made once per session, as
    the render-and-detect registration takes seconds (needs bpy and MediaPipe: engine tests)."""
    from flame_fixtures import face_like_flame_arrays, write_flame_pickle
    from mxr.models.flame_embedding import default_registration_path
    from mxr.models.open_head import open_head_path
    from mxr.scripts.flame_correspondence import main

    if not open_head_path().is_file():
        from mxr.scripts.build_head_asset import build_open_head

        build_open_head()
    path = write_flame_pickle(tmp_path_factory.mktemp("face_like_flame") / "generic_model.pkl", face_like_flame_arrays(), "2020")
    assert main([str(path), str(default_registration_path(path))]) == 0
    return path
