"""Train the micro-event detector, export it to ONNX and hang it on the mesh network's metadata.

    .venv/bin/python scripts/train_events.py            # the shipped detector (~35 min, 2 CPU cores)
    .venv/bin/python scripts/train_events.py --quick    # a smoke run (does not make a usable detector)
    ... --track-cache .cache/event_tracks                # keep the generated sequences for the next run

The detector (``torch_model.EventDetector``) reads the take-wide fused expression-coefficient
track (``fusion.py``), resampled to a fixed 100 Hz so that every clip has the same time scale,
and scores per face region "a micro-expression is under way". It is trained on synthetic
sequences (``synthetic.py``, the measured noise model, 24-200 fps). The event detector gets its
own, much larger data set than the mesh network: detection is about seeing a short bump in a
noisy track, and on 200 sequences it learned those by heart (train F1 0.88, validation 0.12);
on 1400 it reached 0.45, on 3000 0.62, on 6000 0.79 and on 12000 0.84 (validation F1). The track is
small (K numbers a sample), so thousands of sequences cost minutes, generated on all cores; the
generation (~0.13 s a sequence on two cores, fusion included; the shipped run's took ~0.25 s, before
the BLAS thread setting below) is most of the run, training 14000 steps ~6 min.

Then the decoding thresholds (``events.extract_events``) are chosen on validation sequences of
their own seed, through the real runner path (``NetworkRunner.detector_logits``); a detector
that stays under ``MIN_EVENT_F1`` there is written with ``events_enabled: false``, and the engine
reports no events with it. Writes mxr_events.onnx, the ``event_detector`` entry of the mesh
network's metadata (mxr_micro.json) and EVENT_DETECTOR.md. Held-out figures: scripts/evaluate.py.

``--add-speech-member`` trains a second detector the same way (with ``--speech-probability``,
0.2 for the shipped one) and joins it to the attached one as its speech member
(``runner.NetworkRunner``): the event logits become the mean of the two, and an event stands
only where the speech member's own events confirm it. The two thresholds of that pair
(``ENSEMBLE_HIGH``, ``CONFIRM_HIGH``) are constants, not an F1 choice: see there.
"""
from __future__ import annotations

import os

# One generating process per core: numpy's BLAS would also start a thread per core in each
# (4 threads on 2 cores), which made the generation ~40 % slower here. Set before numpy loads.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch

from mxr.models.network.evaluation import (MIN_EVENT_F1, EventScores, choose_event_thresholds, decoding_thresholds,
                                           event_scores)
from mxr.models.network.events import extract_events
from mxr.models.network.features import EVENT_REGIONS, region_membership, resample_track, take_inputs
from mxr.models.network.fusion import basis_in_take_frame
from mxr.models.network.runner import DEFAULT_MODEL, NetworkRunner, metadata_path
from mxr.models.network.synthetic import SyntheticConfig, generate_sequence
from mxr.models.network.torch_model import EventDetector, EventDetectorConfig, export_event_onnx, parameter_count
from mxr.models.open_head import load_open_head
from mxr.ops.take import MicroEvent

VERSION = "mxr-events-2"
DETECTOR_FILE = "mxr_events.onnx"
ENSEMBLE_VERSION = "mxr-events-3"  # mxr-events-2 with a speech member
SPEECH_MEMBER_FILE = "mxr_events_speech.onnx"
# The pair's thresholds ("high"; "low" follows), chosen on the micro layer and on talking takes rather
# than on F1: on the validation takes of scripts/diagnose_micro_layer.py (seeds 8300-8302, 320 takes)
# plus 40 talking ones (seed 8303), the mean logits at 0.85 with confirmation at 0.6 gave a micro
# layer better than mxr-events-2's on five of its six halves (0.483 / 0.452x at 200 fps against 0.490
# / 0.482x) and cut the detections on the talking takes from 131 to 76 (41 of 82 events found,
# against 45). Confirmation at 0.8 cut them to 54 but lost silent events; the mean alone kept 141.
# scripts/choose_event_pair.py reproduces the comparison.
ENSEMBLE_HIGH = 0.85
CONFIRM_HIGH = 0.6
REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "models" / "network" / "EVENT_DETECTOR.md"
THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # "high"; "low" follows (evaluation.LOW_SHARE)


@dataclass
class Track:
    """One synthetic sequence as the detector sees it, with its truth."""

    coefficients: np.ndarray  # (T, K) float32 per frame, the fused track
    neutral_mm: np.ndarray  # (478, 3) the take's neutral: with the basis, the track's motion
    samples: np.ndarray  # (n, K) float32 the same at the detector's rate
    labels: np.ndarray  # (n, R) float32, 1 inside an event of region r
    fps: float
    events: list[MicroEvent]


def make_track(job: tuple[int, int, float, float]) -> Track:
    """Sequence (seed, index) of the default synthetic configuration, with talking in a share
    ``speech_probability`` of the sequences -> its ``Track``."""
    seed, index, rate_hz, speech_probability = job
    config = SyntheticConfig(speech_probability=speech_probability)
    sequence = generate_sequence(_head(), config, np.random.default_rng([seed, index]))
    inputs = take_inputs(sequence.take)
    coefficients = inputs.coefficients
    samples = resample_track(coefficients, inputs.seconds, rate_hz).astype(np.float32)
    labels = np.zeros((len(samples), len(EVENT_REGIONS)), np.float32)
    for event in sequence.truth_events:  # frames -> samples, inclusive
        first = int(np.ceil(event.onset_frame / sequence.take.fps * rate_hz))
        last = int(np.floor(event.offset_frame / sequence.take.fps * rate_hz))
        labels[max(first, 0):last + 1, EVENT_REGIONS.index(event.region)] = 1.0
    return Track(coefficients, sequence.take.neutral_mm, samples, labels, sequence.take.fps,
                 list(sequence.truth_events))


@lru_cache(maxsize=1)
def _head():
    """The open head, loaded once per worker process."""
    return load_open_head()


CACHE_DIR = REPO / ".cache" / "event_tracks"
CACHE_CHUNK = 500  # sequences a cache file
# What a track is made from: a change to any of these makes a new cache folder.
GENERATOR_SOURCES = ("models/network/synthetic.py", "models/network/fusion.py", "models/network/features.py",
                     "models/network/noise_model.json", "models/data/open_head.npz")


def generator_fingerprint(rate_hz: float, speech_probability: float) -> str:
    """A short hash of the code and data that generate a track, the detector's rate and the share
    of talking sequences."""
    digest = hashlib.sha256(f"{rate_hz:g} {speech_probability:g}".encode())
    for name in GENERATOR_SOURCES:
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()[:16]


def save_tracks(path: Path, tracks: list[Track]) -> None:
    """Tracks -> one .npz (ragged arrays joined along time, lengths kept), written whole or not at all."""
    events = [[[e.onset_frame, e.apex_frame, e.offset_frame, EVENT_REGIONS.index(e.region), e.peak_mm, e.confidence]
               for e in t.events] for t in tracks]
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as stream:
        np.savez(stream, coefficients=np.concatenate([t.coefficients for t in tracks]),
                 frames=np.array([len(t.coefficients) for t in tracks]),
                 neutral_mm=np.stack([t.neutral_mm for t in tracks]),
                 samples=np.concatenate([t.samples for t in tracks]),
                 labels=np.concatenate([t.labels for t in tracks]),
                 sample_counts=np.array([len(t.samples) for t in tracks]),
                 fps=np.array([t.fps for t in tracks]),
                 events=np.array([row for rows in events for row in rows], np.float64).reshape(-1, 6),
                 event_counts=np.array([len(rows) for rows in events]))
    partial.replace(path)


def load_tracks(path: Path) -> list[Track]:
    """``save_tracks``' file -> the tracks. Each array is read once (every ``data[name]`` reads the
    file again) and the ragged ones split into views of it."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}

    def split(name: str, counts: str) -> list[np.ndarray]:
        return np.split(arrays[name], np.cumsum(arrays[counts])[:-1])

    coefficients, events = split("coefficients", "frames"), split("events", "event_counts")
    samples, labels = split("samples", "sample_counts"), split("labels", "sample_counts")
    return [Track(coefficients[i], arrays["neutral_mm"][i], samples[i], labels[i], float(fps),
                  [MicroEvent(int(e[0]), int(e[1]), int(e[2]), EVENT_REGIONS[int(e[3])], float(e[4]), float(e[5]))
                   for e in events[i]])
            for i, fps in enumerate(arrays["fps"])]


def make_tracks(seed: int, count: int, rate_hz: float, speech_probability: float, workers: int,
                cache_dir: Path | None = None) -> list[Track]:
    """``count`` tracks of ``seed``, generated on ``workers`` processes; progress every chunk.

    With ``cache_dir``, each chunk of ``CACHE_CHUNK`` sequences is kept there under the generator's
    fingerprint and read back on the next run: a track depends only on (seed, index), so a cached
    run trains on exactly what a fresh one would generate."""
    folder = cache_dir / generator_fingerprint(rate_hz, speech_probability) if cache_dir is not None else None
    started = time.monotonic()
    tracks: list[Track] = []
    with multiprocessing.get_context("fork").Pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for first in range(0, count, CACHE_CHUNK):
            last = min(first + CACHE_CHUNK, count)
            path = folder / f"seed{seed}_{first:06d}_{last:06d}.npz" if folder is not None else None
            if path is not None and path.is_file():
                tracks.extend(load_tracks(path))
                continue
            jobs = [(seed, index, rate_hz, speech_probability) for index in range(first, last)]
            chunk = list(pool.imap(make_track, jobs, chunksize=8) if pool is not None else map(make_track, jobs))
            if path is not None:
                folder.mkdir(parents=True, exist_ok=True)
                save_tracks(path, chunk)
            tracks.extend(chunk)
            if last < count:
                elapsed = time.monotonic() - started
                print(f"[events] {last}/{count} sequences (seed {seed}) {elapsed:.0f}s, "
                      f"~{elapsed / last * (count - last) / 60:.0f} min to go", flush=True)
    return tracks


def sample_batch(tracks: list[Track], batch: int, window: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows, a track drawn by its length; short tracks are padded with their last sample
    (and no event), as the runner pads them. -> (B, K, W), (B, R, W)."""
    lengths = np.array([len(t.samples) for t in tracks], np.float64)
    inputs, targets = [], []
    for pick in rng.choice(len(tracks), size=batch, p=lengths / lengths.sum()):
        track = tracks[pick]
        start = int(rng.integers(0, max(len(track.samples) - window, 0) + 1))
        samples = np.minimum(start + np.arange(window), len(track.samples) - 1)
        inside = (start + np.arange(window)) < len(track.samples)
        inputs.append(track.samples[samples].T)
        targets.append((track.labels[samples] * inside[:, None]).T)
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))


def train(model: EventDetector, tracks: list[Track], steps: int, batch: int, learning_rate: float,
          positive_weight: float, rng: np.random.Generator) -> dict:
    return fit(model, lambda: sample_batch(tracks, batch, model.config.window, rng), steps, learning_rate,
               positive_weight)


def fit(model: EventDetector, batches: Callable[[], tuple[torch.Tensor, torch.Tensor]], steps: int,
        learning_rate: float, positive_weight: float, one_cycle: bool = True, tag: str = "events") -> dict:
    """``steps`` of AdamW on the weighted BCE of ``batches()`` ((B, K, W) inputs, (B, R, W) targets),
    the rate on a one-cycle schedule or constant (training further from weights that already work)."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = (torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
                if one_cycle else None)
    weight = torch.tensor(positive_weight)
    model.train()
    started, running = time.monotonic(), None
    for step in range(steps):
        inputs, targets = batches()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(inputs), targets, pos_weight=weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 500 == 0 or step == steps - 1:
            print(f"[{tag}] step {step + 1}/{steps} {time.monotonic() - started:.0f}s loss={running:.4f}", flush=True)
    return {"steps": steps, "seconds": round(time.monotonic() - started, 1), "final_loss": round(running, 5)}


def detection_scores(runner: NetworkRunner, tracks: list[Track], high: float | None) -> EventScores:
    """The detector's events on the tracks against their truth: at ``high`` (and its low), or,
    None, as the engine decodes them (the runner's thresholds and speech member)."""
    membership = region_membership(tuple(runner.regions))
    scores = EventScores()
    for track in tracks:
        logits, confirming = runner.detector_logits(track.coefficients, np.arange(len(track.coefficients)) / track.fps)
        motion = np.tensordot(track.coefficients, basis_in_take_frame(track.neutral_mm), axes=1)  # (T, 478, 3)
        if high is None:
            detected = runner.events(logits, confirming, motion, track.fps)
        else:
            detected = extract_events(logits, motion, track.fps, runner.regions, membership,
                                      **decoding_thresholds(high))
        scores.merge(event_scores(detected, track.events))
    return scores


def summary(scores: EventScores) -> dict:
    """Counts, F1 / precision / recall (0 where undefined) and median |timing errors| (frames;
    None without a match), JSON-ready."""
    def median(errors: list[int]) -> float | None:
        return float(np.median(np.abs(errors))) if errors else None

    return {"f1": round(float(np.nan_to_num(scores.f1)), 4), "precision": round(float(np.nan_to_num(scores.precision)), 4),
            "recall": round(float(np.nan_to_num(scores.recall)), 4), "truths": scores.truths,
            "detections": scores.detections, "onset_error_frames_median": median(scores.onset_errors),
            "apex_error_frames_median": median(scores.apex_errors)}


def write_card(path: Path, entry: dict) -> None:
    validation, training = entry["validation"], entry["training"]
    config = entry["config"]
    member = entry.get("speech_member")
    own_thresholds = validation.get("event_thresholds", entry["event_thresholds"])
    lines = [
        "# MXR micro-event detector (`mxr_events.onnx`)",
        "",
        "Generated by `scripts/train_events.py`; the numbers are from the run that produced the committed weights. "
        "Held-out figures, through the engine's own path, are in `EVALUATION.md` (`scripts/evaluate.py`).",
        "",
        "## What it is",
        f"- Version `{entry['version']}`, {entry['parameters']} parameters, ONNX; input `coefficients` (B, K={config['units']}, W), "
        f"output `event_logits` (B, R={len(config['regions'])}, W) for {', '.join(config['regions'])}.",
        f"- Reads the take-wide fused expression-coefficient track (`fusion.py`: landmarks and optical flow solved "
        f"together) resampled to {config['rate_hz']:g} Hz, windows of {config['window']} samples "
        f"(stride {entry['stride']}, tapered blending), each window's mean taken off; dilated temporal "
        f"convolutions {list(config['dilations'])} (kernel 3). The runner brings the logits back to the video's frames "
        "and `events.extract_events` turns them into onset / apex / offset per region.",
        "",
        "## Data and training",
        f"- {training['sequences']} synthetic sequences (seed {training['seed']}, the default `SyntheticConfig`: "
        "24-200 fps, AU-like micro events of 0.15-0.5 s and 0.2-1.5 mm on macro expressions, blinks and head motion, "
        "landmark and flow noise from `noise_model.json`), "
        f"{training['steps']} steps of {training['batch']} windows, BCE with positive weight {training['positive_weight']}; "
        f"{training['seconds'] / 60:.1f} min for data and training on this machine's CPU.",
        f"- Decoding thresholds: high {own_thresholds['high']} / low {own_thresholds['low']}, "
        f"the best of {list(THRESHOLD_GRID)} on {validation['sequences']} validation sequences (seed {validation['seed']}).",
        *(_speech_member_lines(entry) if member else []),
        "",
        "## Validation (the threshold choice's own sequences" + (", the first detector alone)" if member else ")"),
        "| F1 | precision | recall | truth events | detections | onset / apex median \\|error\\|, frames |",
        "|---|---|---|---|---|---|",
        f"| {validation['f1']:.3f} | {validation['precision']:.3f} | {validation['recall']:.3f} | {validation['truths']} "
        f"| {validation['detections']} | {validation['onset_error_frames_median']} / "
        f"{validation['apex_error_frames_median']} |",
        "",
        ("Events are reported." if entry["events_enabled"] else
         f"Under F1 {MIN_EVENT_F1}: **this detector is shipped switched off** (`events_enabled: false`); the engine "
         "reports no events with it."),
        f"Export parity, max |torch - onnxruntime| on the logits: {entry['parity_max_abs']:.1e}.",
        "",
        "## Reproduce",
        f"```\n{entry['training']['command']}\n```",
        *([f"The thresholds were then chosen again with `{entry['calibration_command']}` (same weights)."]
          if "calibration_command" in entry else []),
        *([f"Then the speech member:\n```\n{member['training']['command']}\n```"] if member else []),
        "",
        "## Limits",
        "- Trained on synthetic faces only; whether real micro-expressions show the same way in the fused track is "
        "not measured (there is no labelled real footage here).",
        "- Onset and offset come from the region's score over time. At 60 fps and more, onset, apex and offset are "
        "then refined by fitting the micro-expression time course to the region's reconstructed motion "
        "(`event_profile.fit_event_timing`); below, the apex is where that motion stands out most from the "
        "event's own baseline (the line from its onset to its offset).",
        "- Events are one per time span (overlapping detections in different regions keep the most confident).",
        "- A stretch in which the region moves more than `events.MAX_EVENT_PEAK_MM` (2.5 mm) is dropped before that: "
        "no micro-expression moves so far (lips talking through an event can lift it past that).",
        *(["- With a speech member, an event the member does not see is dropped even when the first detector is "
           "sure of it: the price of not taking syllables for micro-expressions (held-out figures in EVALUATION.md)."]
          if member else []),
    ]
    path.write_text("\n".join(lines) + "\n")


def _speech_member_lines(entry: dict) -> list[str]:
    """The card's section on a speech member (``--add-speech-member``)."""
    member = entry["speech_member"]
    training, validation = member["training"], member["validation"]
    return [
        "",
        f"## Speech member (`{member['file']}`, version `{entry['version']}`)",
        f"- A second detector of the same architecture ({member['parameters']} parameters), trained the same way on "
        f"{training['sequences']} sequences of which a share of {training['speech_probability']} has a stretch of "
        f"speech-like jaw and lip motion (3-6 syllables a second; seed {training['seed']}, "
        f"{training['seconds'] / 60:.1f} min). Export parity {member['parity_max_abs']:.1e}.",
        f"- The engine's event logits are the mean of the two detectors'; events are decoded from them at high "
        f"{entry['event_thresholds']['high']} / low {entry['event_thresholds']['low']}, and an event stands only where "
        f"one of the speech member's own events (high {member['confirm_thresholds']['high']} / low "
        f"{member['confirm_thresholds']['low']}) of the same region overlaps it, so that syllables are not taken "
        "for micro-expressions. Both thresholds are constants (`train_events.ENSEMBLE_HIGH`, `CONFIRM_HIGH`), "
        "chosen on the micro layer and on talking validation takes; the comment there says how.",
        "",
        "| the pair, on the member's validation sequences | F1 | precision | recall | truth events | detections |",
        "|---|---|---|---|---|---|",
        f"| {validation['sequences']} sequences, seed {validation['seed']}, speech share "
        f"{training['speech_probability']} | {validation['f1']:.3f} | {validation['precision']:.3f} | "
        f"{validation['recall']:.3f} | {validation['truths']} | {validation['detections']} |",
    ]


def train_and_export(args: argparse.Namespace, config: EventDetectorConfig, rng: np.random.Generator,
                     folder: Path, file: str = DETECTOR_FILE) -> tuple[dict, list[Track]]:
    """Generate the data, train, export next to the mesh network, check parity: the detector's
    metadata entry (thresholds not chosen yet) and the validation tracks."""
    print(f"generating {args.sequences} + {args.validation_sequences} sequences on {args.workers} workers", flush=True)
    tracks = make_tracks(args.seed, args.sequences, config.rate_hz, args.speech_probability, args.workers,
                         args.track_cache)
    validation = make_tracks(args.seed + 1, args.validation_sequences, config.rate_hz, args.speech_probability,
                             args.workers, args.track_cache)
    model = EventDetector(config)
    trained = train(model, tracks, args.steps, args.batch, args.lr, args.positive_weight, rng)
    detector_path = folder / file
    export_event_onnx(model, detector_path)
    inputs, _ = sample_batch(tracks, 4, config.window, rng)
    with torch.no_grad():
        expected = model(inputs).numpy()
    actual = onnxruntime.InferenceSession(str(detector_path), providers=["CPUExecutionProvider"]).run(
        None, {"coefficients": inputs.numpy()})[0]
    entry = {
        "file": file, "version": VERSION, "rate_hz": config.rate_hz, "window": config.window,
        "stride": config.window * 3 // 4, "parameters": parameter_count(model),
        "config": {**config.as_dict(), "regions": list(config.regions), "dilations": list(config.dilations)},
        "parity_max_abs": float(np.abs(actual - expected).max()),
        "event_thresholds": {"high": 0.5, "low": 0.3}, "events_enabled": True,
        "training": {"seed": args.seed, "sequences": args.sequences, "speech_probability": args.speech_probability,
                     "batch": args.batch, "lr": args.lr,
                     "positive_weight": args.positive_weight, **trained},
    }
    return entry, validation


def add_speech_member(args: argparse.Namespace, config: EventDetectorConfig, rng: np.random.Generator,
                      metadata: dict, meta_file: Path, command: str, started: float) -> int:
    """Train the speech member, join it to the attached detector at the pair's thresholds, and
    score the pair on the member's validation takes."""
    entry = metadata["event_detector"]
    member, validation = train_and_export(args, config, rng, meta_file.parent, SPEECH_MEMBER_FILE)
    for key in ("rate_hz", "window", "stride", "config"):
        if member[key] != entry[key]:
            raise SystemExit(f"the speech member's {key} ({member[key]}) differs from the attached detector's "
                             f"({entry[key]}): train both with the same settings")
    member["training"]["seconds"] = round(time.monotonic() - started, 1)
    member["training"]["command"] = command
    entry["speech_member"] = {key: member[key] for key in ("file", "parameters", "parity_max_abs", "training")}
    entry["speech_member"]["confirm_thresholds"] = decoding_thresholds(CONFIRM_HIGH)
    entry["validation"].setdefault("event_thresholds", entry["event_thresholds"])  # its own, F1-chosen
    entry["version"] = ENSEMBLE_VERSION
    entry["event_thresholds"] = decoding_thresholds(ENSEMBLE_HIGH)
    meta_file.write_text(json.dumps(metadata, indent=1))
    pair = summary(detection_scores(NetworkRunner(args.model, providers=["CPUExecutionProvider"]), validation, None))
    entry["speech_member"]["validation"] = {"sequences": args.validation_sequences, "seed": args.seed + 1, **pair}
    entry["events_enabled"] = entry["events_enabled"] and pair["f1"] >= MIN_EVENT_F1
    meta_file.write_text(json.dumps(metadata, indent=1))
    card = args.card or (CARD if args.model == DEFAULT_MODEL else None)
    if card is not None:
        write_card(card, entry)
    print(json.dumps(entry["speech_member"]["validation"]), flush=True)
    print(f"wrote {meta_file.parent / SPEECH_MEMBER_FILE} and its metadata in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the mesh network it joins")
    parser.add_argument("--seed", type=int, default=3000)
    parser.add_argument("--sequences", type=int, default=12000)
    parser.add_argument("--validation-sequences", type=int, default=200)
    parser.add_argument("--steps", type=int, default=14000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=EventDetectorConfig.channels, help="the detector's width")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--positive-weight", type=float, default=3.0)
    parser.add_argument("--speech-probability", type=float, default=0.0,
                        help="share of the sequences (training and validation) with talking in them; 0.2 and 0.5 "
                             "were tried: better on talking clips, worse micro layer (see the README)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--track-cache", type=Path, default=None, metavar="DIR",
                        help=f"keep the generated sequences in DIR and reuse them (e.g. {CACHE_DIR.relative_to(REPO)}; "
                             "~0.2 MB a sequence)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (does not make a usable detector)")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="keep the attached detector's weights; redo the threshold choice and the card")
    parser.add_argument("--add-speech-member", action="store_true",
                        help=f"train a second detector (use --speech-probability) and join it to the attached one "
                             f"as its speech member ({SPEECH_MEMBER_FILE}, version {ENSEMBLE_VERSION})")
    parser.add_argument("--card", type=Path, default=None, help=f"default: {CARD} for the default --model")
    args = parser.parse_args(argv)
    if args.quick:
        args.sequences, args.validation_sequences, args.steps = 6, 3, 5
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    config = EventDetectorConfig(channels=args.channels)

    meta_file = metadata_path(args.model)
    metadata = json.loads(meta_file.read_text())
    command = ".venv/bin/python scripts/train_events.py " + " ".join(argv if argv is not None else sys.argv[1:])
    attached = metadata.get("event_detector")
    if (args.calibrate_only or args.add_speech_member) and attached is None:
        parser.error(f"{meta_file} names no event detector to calibrate or to join")
    if attached is not None and "speech_member" in attached and (args.calibrate_only or args.add_speech_member):
        parser.error("the attached detector already has a speech member: its thresholds are constants "
                     "(ENSEMBLE_HIGH, CONFIRM_HIGH); train a single detector first")
    if args.add_speech_member:
        return add_speech_member(args, config, rng, metadata, meta_file, command.strip(), started)
    if args.calibrate_only:
        print(f"generating {args.validation_sequences} validation sequences on {args.workers} workers", flush=True)
        validation = make_tracks(args.seed + 1, args.validation_sequences, config.rate_hz, args.speech_probability,
                                 args.workers, args.track_cache)
        entry = metadata["event_detector"]
        entry["calibration_command"] = command.strip()
    else:
        entry, validation = train_and_export(args, config, rng, meta_file.parent)
        entry["training"]["seconds"] = round(time.monotonic() - started, 1)
        entry["training"]["command"] = command.strip()
        entry.pop("calibration_command", None)
        metadata["event_detector"] = entry
        meta_file.write_text(json.dumps(metadata, indent=1))

    runner = NetworkRunner(args.model, providers=["CPUExecutionProvider"])

    def score_at(high: float) -> EventScores:
        scores = detection_scores(runner, validation, high)
        print(f"  threshold {high}: {summary(scores)}", flush=True)
        return scores

    best_high, best_scores = choose_event_thresholds(score_at, THRESHOLD_GRID)
    best = summary(best_scores)
    entry["event_thresholds"] = decoding_thresholds(best_high)
    entry["events_enabled"] = best["f1"] >= MIN_EVENT_F1
    entry["validation"] = {"sequences": args.validation_sequences, "seed": args.seed + 1, **best}
    meta_file.write_text(json.dumps(metadata, indent=1))
    card = args.card or (CARD if args.model == DEFAULT_MODEL else None)
    if card is not None:
        write_card(card, entry)
    print(json.dumps(entry["validation"]), flush=True)
    print(f"wrote {meta_file.parent / entry['file']} and its metadata in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
