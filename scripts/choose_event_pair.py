"""How the event detector's pair thresholds were chosen (``train_events.ENSEMBLE_HIGH``, ``CONFIRM_HIGH``).

    .venv/bin/python scripts/choose_event_pair.py [--clips 120 120 80 40] [--model ...]

Decodes the engine's path (``runner.decode_reconstruction``) on validation takes, not the
evaluation's test seeds: ``diagnose_micro_layer.py``'s three sets (seeds 8300-8302) and talking
takes of seed 8303 (24-60 fps, every take with speech-like motion). The network runs once per
take; each candidate only changes the runner's thresholds. A candidate is (mean high,
confirmation high), "low" following each (``evaluation.decoding_thresholds``); the confirmation
``none`` decodes the mean alone. Printed per set: the micro layer's error over the zero layer's on
the tuned clips / the rest (``diagnose_micro_layer.TUNED_CLIPS``) and event F1 (found of truths,
detections); on the talking takes the detections are the figure to watch. ~8 min for the
default clips on two cores. Needs a model whose detector has a speech member.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from diagnose_micro_layer import SETS, TUNED_CLIPS, Breakdown, add_take
from mxr.models.network.evaluation import EventScores, decoding_thresholds, event_scores, truth_from_synthetic
from mxr.models.network.runner import DEFAULT_MODEL, NetworkRunner, decode_reconstruction
from mxr.models.network.synthetic import SyntheticConfig, generate_dataset
from mxr.models.open_head import load_open_head

TALKING = ("talking 24-60 fps", 8303, (24.0, 60.0))
TALKING_TUNED = 20
CANDIDATES = ((0.85, None), (0.85, 0.5), (0.85, 0.6), (0.85, 0.8), (0.8, 0.6), (0.9, 0.6))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--clips", type=int, nargs=4, default=(120, 120, 80, 40),
                        help="takes per set (200, 24-30, 24-200 fps, talking), the tuned ones included")
    args = parser.parse_args(argv)
    runner = NetworkRunner(args.model, providers=["CPUExecutionProvider"])
    if runner.confirming_thresholds is None:
        parser.error(f"{args.model}'s event detector has no speech member")
    head = load_open_head()
    for (name, seed, fps_range), count, tuned in zip(SETS + (TALKING,), args.clips, TUNED_CLIPS + (TALKING_TUNED,)):
        talking = 1.0 if name == TALKING[0] else 0.0  # the share of takes with speech-like motion
        config = replace(SyntheticConfig(), fps_range=fps_range, duration_range_s=(4.0, 6.0), speech_probability=talking)
        parts = {candidate: (Breakdown(), Breakdown()) for candidate in CANDIDATES}
        scores = {candidate: EventScores() for candidate in CANDIDATES}
        for index, sequence in enumerate(generate_dataset(head, config, count, seed)):
            result, truth = runner.run(sequence.take), truth_from_synthetic(sequence)
            for candidate in CANDIDATES:
                mean_high, confirm_high = candidate
                runner.event_thresholds = decoding_thresholds(mean_high)
                runner.confirming_thresholds = decoding_thresholds(confirm_high) if confirm_high else None
                take = decode_reconstruction(sequence.take, result, runner)
                add_take(parts[candidate][index >= tuned], take, truth)
                scores[candidate].merge(event_scores(take.events, truth.events))
        for candidate in CANDIDATES:
            ratios = [part.error_mm / part.signal_mm if part.signal_mm else float("nan") for part in parts[candidate]]
            found = scores[candidate]
            print(f"{name:18s} mean {candidate[0]:.2f} confirm {candidate[1] or 'none':>4}: micro layer "
                  f"{ratios[0]:.3f} / {ratios[1]:.3f}x  F1 {found.f1:.2f} ({found.matched} of {found.truths} found, "
                  f"{found.detections} detections)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
