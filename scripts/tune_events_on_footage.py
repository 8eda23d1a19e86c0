"""Tune the micro-event detectors on what the front-end measures on real footage (issue 20, item 2).

    .venv/bin/python scripts/tune_events_on_footage.py      # ~20 min the first time (rendering), ~6 after
    ... --quick --out /tmp/events                           # a smoke run (does not make a usable detector)

Why: the shipped detectors (``scripts/train_events.py``) learned micro events from synthetic
coefficient tracks only. On the track the engine computes from real footage with micro-expressions
planted in it (``scripts/open_loop_inject.py``) they were nearly blind: on the dev clips' planted
events, through the engine's decoding, F1 0.10 with a precision of 0.08 (229 detections for 151
events), and it was the filters after them that kept the false events few.

How: tracks from real footage. Each dev clip (``open_loop.SPLITS["dev"]``; the held-out clips are
never read) gets draws of planted events (``open_loop_inject.injected_clip``, the draws from
``FIRST_PLANTING`` on: the check's own draws are 0-4), and each copy goes through the engine's
front-end and into the frame the networks read (``reconstruct.in_trained_frame``,
``features.take_inputs``): the detector's input exactly as the engine makes it, with the planted
micro events as its labels (macro events and the performer's own motion unlabelled). Both detectors,
the first and its speech member, start from their synthetic weights and are trained further on
batches half of these tracks and half synthetic ones of their own kind (talking in 0 and 0.2 of
them); then the two decoding thresholds (the pair's, and the speech member's confirmation) are
chosen by F1 through the engine's decoding (``runner.events``) on other draws of the same clips.

Writes both detectors' ONNX files over the ones it started from (or into ``--out``), their
thresholds and a ``tuned_on_footage`` entry in mxr_micro.json, and, when it writes the shipped
weights, a section of EVENT_DETECTOR.md. It refuses weights that are already tuned: the whole
chain is ``train_events.py``, ``train_events.py --add-speech-member``, then this. The synthetic
pair it starts from is in git (commit b979f54), so tuning again takes minutes, not the chain's
hour and a half (on 2026-12-05 this gave the shipped detectors again, byte for byte):

    mkdir -p /tmp/synthetic && for f in mxr_events.onnx mxr_events_speech.onnx mxr_micro.json; do
        git show b979f54:models/network/weights/$f > /tmp/synthetic/$f; done
    cp models/network/weights/mxr_micro.onnx /tmp/synthetic/
    .venv/bin/python scripts/tune_events_on_footage.py --model /tmp/synthetic/mxr_micro.onnx --out models/network/weights
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_loop_inject  # noqa: E402  (the planted clips)
import train_events  # noqa: E402  (tracks, batches, scores; sets the BLAS threads first)
from open_loop import SPLITS  # noqa: E402

from mxr.models.network.evaluation import decoding_thresholds  # noqa: E402
from mxr.models.network.features import EVENT_REGIONS, resample_track, take_inputs  # noqa: E402
from mxr.models.network.runner import WEIGHTS_DIR, NetworkRunner  # noqa: E402
from mxr.models.network.torch_model import EventDetector, EventDetectorConfig, export_event_onnx  # noqa: E402
from mxr.ops.injection import PlantedEvent  # noqa: E402
from mxr.ops.progress import ProgressReporter  # noqa: E402
from mxr.ops.reconstruct import in_trained_frame, reconstruct  # noqa: E402
from mxr.ops.take import MicroEvent, load_take  # noqa: E402

FIRST_PLANTING = 100  # open_loop_inject's own draws are 0, 1, ...: these are other events on the same clips
EXCERPT_S = 40.0  # of each clip, as open_loop_inject.py reads them
SYNTHETIC_SEED = 7000  # + 2 for the speech member's (its share of talking, 0.2, x 10)
THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.85)
CONFIRM_GRID = (0.3, 0.45, 0.6)
CARD = Path(__file__).resolve().parents[1] / "models" / "network" / "EVENT_DETECTOR.md"
CARD_MARK = "## Tuned on real footage"


@dataclass(frozen=True)
class Draws:
    """How many draws of planted events each dev clip gives, to train on and to choose thresholds on."""

    train: dict[str, int]
    validation: dict[str, int]


SHIPPED = Draws(train={"WolfgangLanger_Pexels.mp4": 40, "single_face.mp4": 80},  # ~8 micro events a draw / 1
                validation={"WolfgangLanger_Pexels.mp4": 16, "single_face.mp4": 40})
QUICK = Draws(train={"single_face.mp4": 2}, validation={"single_face.mp4": 1})


def footage_tracks(name: str, plantings: range, quiet: ProgressReporter) -> list[train_events.Track]:
    """The detector's tracks of the clip ``name``'s copies with planted events (draws ``plantings``)."""
    source, original, take = open_loop_inject.original_take(name, EXCERPT_S, quiet=quiet)
    regions = open_loop_inject.action_regions(take.neutral_mm.astype(np.float64))
    tracks = []
    for planting in plantings:
        video, truth_path = open_loop_inject.injected_clip(source, original, take, zlib.crc32(name.encode()) + planting)
        copy_path = video.with_name(video.stem + ".landmarks.take.npz")
        # only the copy's landmarks are read (in the networks' frame), as the check's copies are made
        reconstruct(video, copy_path, open_loop_inject.copy_settings(take, use_network=False, skin_track=False), quiet)
        trained = in_trained_frame(load_take(copy_path))
        copy_path.unlink()
        inputs = take_inputs(trained)
        seconds = inputs.seconds - inputs.seconds[0]  # the planted events' clock starts at the first frame
        rate_hz = EventDetectorConfig.rate_hz
        samples = resample_track(inputs.coefficients, inputs.seconds, rate_hz).astype(np.float32)
        labels = np.zeros((len(samples), len(EVENT_REGIONS)), np.float32)
        with np.load(truth_path) as data:
            planted = [PlantedEvent(**event) for event in json.loads(str(data["events"]))]
        events = []
        for event in planted:
            if event.kind != "micro":
                continue
            region = regions[event.action]
            labels[max(int(np.ceil(event.onset_s * rate_hz)), 0):int(np.floor(event.offset_s * rate_hz)) + 1,
                   EVENT_REGIONS.index(region)] = 1.0
            onset, apex, offset = event.frames(seconds)
            events.append(MicroEvent(onset, apex, offset, region, float(event.peak_mm), 1.0))
        tracks.append(train_events.Track(inputs.coefficients.astype(np.float32), trained.neutral_mm, samples, labels,
                                         float(trained.fps), events))
        print(f"[tune] {name} draw {planting}: {len(events)} micro events", flush=True)
    return tracks


def draws_tracks(counts: dict[str, int], first: dict[str, int], quiet: ProgressReporter) -> list[train_events.Track]:
    return [track for name, count in counts.items()
            for track in footage_tracks(name, range(first[name], first[name] + count), quiet)]


def load_detector(path: Path) -> EventDetector:
    """An exported detector's weights back in torch (the ONNX initialisers carry the parameter names)."""
    model = EventDetector()
    weights = {tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy())
               for tensor in onnx.load(str(path)).graph.initializer}
    model.load_state_dict(weights)
    return model


def tune(model: EventDetector, footage: list[train_events.Track], synthetic: list[train_events.Track], steps: int,
         learning_rate: float, rng: np.random.Generator) -> dict:
    """Train further at a constant rate on batches of 16 windows, half from the footage, half synthetic."""
    def batches() -> tuple[torch.Tensor, torch.Tensor]:
        parts = [train_events.sample_batch(footage, 8, model.config.window, rng),
                 train_events.sample_batch(synthetic, 8, model.config.window, rng)]
        return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])

    return {**train_events.fit(model, batches, steps, learning_rate, 3.0, one_cycle=False, tag="tune"),
            "lr": learning_rate}


def choose_thresholds(model_path: Path, validation: list[train_events.Track]) -> tuple[float, float, dict]:
    """The pair's and the confirmation's high thresholds of the best F1 through the engine's decoding."""
    runner = NetworkRunner(model_path, providers=["CPUExecutionProvider"])
    best = None
    for high in THRESHOLD_GRID:
        for confirm in CONFIRM_GRID:
            runner.event_thresholds, runner.confirming_thresholds = decoding_thresholds(high), decoding_thresholds(confirm)
            scores = train_events.summary(train_events.detection_scores(runner, validation, None))
            if best is None or scores["f1"] > best[2]["f1"]:
                best = (high, confirm, scores)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=WEIGHTS_DIR / "mxr_micro.onnx",
                        help="the mesh network whose detectors are tuned (its folder is read)")
    parser.add_argument("--out", type=Path, default=None, help="write into this folder instead (a copy of the model's)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--synthetic", type=int, default=600, help="synthetic tracks of each kind mixed in")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few draws and steps")
    args = parser.parse_args(argv)
    draws, steps, synthetic_count = (QUICK, 10, 8) if args.quick else (SHIPPED, args.steps, args.synthetic)
    if not set(draws.train) | set(draws.validation) <= set(SPLITS["dev"]):  # held-out footage is never read
        raise SystemExit("only the dev split's clips may be tuned on")
    folder = args.model.parent
    metadata_path = args.model.with_suffix(".json")
    metadata = json.loads(metadata_path.read_text())
    entry = metadata.get("event_detector")
    if not entry or "speech_member" not in entry:
        print("the model has no detector pair to tune: run scripts/train_events.py and --add-speech-member first",
              file=sys.stderr)
        return 2
    if "tuned_on_footage" in entry:
        print("these detectors are tuned on footage already: start from scripts/train_events.py's", file=sys.stderr)
        return 2
    out = args.out or folder
    if out != folder:
        out.mkdir(parents=True, exist_ok=True)
        for path in folder.iterdir():
            if path.is_file():
                shutil.copy(path, out / path.name)
    quiet = ProgressReporter(stream=sys.stderr, min_interval_s=60.0)  # stdout says what is being done
    started = time.monotonic()
    footage = draws_tracks(draws.train, {name: FIRST_PLANTING for name in draws.train}, quiet)
    validation = draws_tracks(draws.validation, {name: FIRST_PLANTING + draws.train.get(name, 0)
                                                 for name in draws.validation}, quiet)
    before = choose_thresholds(args.model, validation)  # the detectors it starts from, at their best thresholds
    torch.manual_seed(0)
    training = {}
    for file, speech in ((entry["file"], 0.0), (entry["speech_member"]["file"], 0.2)):
        rng = np.random.default_rng(1)
        synthetic = train_events.make_tracks(SYNTHETIC_SEED + int(round(speech * 10)), synthetic_count,
                                             EventDetectorConfig.rate_hz, speech, 1 if args.quick else 2,
                                             None if args.quick else train_events.CACHE_DIR)
        model = load_detector(folder / file)
        training[file] = tune(model, footage, synthetic, steps, args.lr, rng)
        export_event_onnx(model, out / file)
    high, confirm, scores = choose_thresholds(out / args.model.name, validation)
    entry = json.loads((out / metadata_path.name).read_text())["event_detector"]
    entry["event_thresholds"] = decoding_thresholds(high)
    entry["speech_member"]["confirm_thresholds"] = decoding_thresholds(confirm)
    entry["tuned_on_footage"] = {
        "clips": sorted(draws.train), "first_planting": FIRST_PLANTING, "train_draws": draws.train,
        "validation_draws": draws.validation, "train_events": sum(len(track.events) for track in footage),
        "validation_events": sum(len(track.events) for track in validation), "synthetic_tracks": synthetic_count,
        "training": training, "validation_before": before[2], "validation": scores,
        "seconds": round(time.monotonic() - started, 1),
        "command": ".venv/bin/python scripts/tune_events_on_footage.py" + (" --quick" if args.quick else "")}
    metadata = json.loads((out / metadata_path.name).read_text())
    metadata["event_detector"] = entry
    (out / metadata_path.name).write_text(json.dumps(metadata, indent=1) + "\n")
    print(f"[tune] validation F1 {before[2]['f1']:.3f} -> {scores['f1']:.3f} (pair {high}, confirmation {confirm})")
    if out.resolve() == WEIGHTS_DIR.resolve() and not args.quick:
        write_card_section(entry["tuned_on_footage"], high, confirm)
    return 0


def write_card_section(tuned: dict, high: float, confirm: float) -> None:
    """EVENT_DETECTOR.md's section on the tuning, replacing an older one."""
    text = CARD.read_text()
    text = text.split(CARD_MARK)[0].rstrip() + "\n\n"
    before, after = tuned["validation_before"], tuned["validation"]
    text += (f"{CARD_MARK}\n"
             f"- `scripts/tune_events_on_footage.py` ({tuned['seconds'] / 60:.0f} min): both detectors trained "
             f"{tuned['training'][next(iter(tuned['training']))]['steps']} steps further on batches half real "
             f"(the dev clips {', '.join(tuned['clips'])} with micro-expressions planted, {tuned['train_events']} "
             f"events, through the engine's own front-end) and half synthetic ({tuned['synthetic_tracks']} tracks "
             f"of each kind); thresholds chosen on other draws ({tuned['validation_events']} events): pair high "
             f"{high}, confirmation high {confirm}.\n"
             f"- Those draws, through the engine's decoding: F1 {before['f1']:.2f} -> {after['f1']:.2f}, precision "
             f"{before['precision']:.2f} -> {after['precision']:.2f}, recall {before['recall']:.2f} -> "
             f"{after['recall']:.2f}. The held-out clips' figures: docs/OPEN_LOOP.md (`open_loop_inject.py`).\n")
    CARD.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
