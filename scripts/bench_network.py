"""Inference speed of the micro-expression network: frames/s on batched windows.

    .venv/bin/python scripts/bench_network.py [--model models/network/weights/mxr_micro.onnx]
                                              [--batches 1 8 32 64] [--repeats 5] [--json out.json]

For each batch size (windows per call, each window ``window`` frames from the model's metadata):
onnxruntime CPU, onnxruntime CUDA when this onnxruntime has it, and torch eager (CPU, the same
weights' architecture with fresh parameters: speed does not depend on the values) as a reference
in the same run. Best of ``--repeats`` after a warm-up call; the machine may be shared, so the
best run is the one least disturbed. Also the whole runner on a synthetic take (features +
windows + blending + events), which is what a user waits for.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime

from mxr.models.network.runner import BATCH_WINDOWS, CPU, CUDA, DEFAULT_MODEL, NetworkRunner, apply_network
from mxr.models.network.torch_model import INPUT_NAMES, example_inputs


def best_rate(call, frames: int, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return frames / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime / torch threads (0: all cores)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    providers = [CPU] + ([CUDA] if CUDA in onnxruntime.get_available_providers() else [])
    runners = {name: NetworkRunner(args.model, providers=[name], threads=args.threads) for name in providers}
    window = runners[CPU].window
    torch_model = None
    if not args.no_torch:
        import torch

        from mxr.models.network.torch_model import MicroNet, NetworkConfig

        torch.set_num_threads(args.threads or os.cpu_count())
        config = NetworkConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in runners[CPU].metadata.get("network", {}).items()})
        torch_model = MicroNet(config).eval()

    results = {"model": str(args.model), "window": window, "cpu_count": os.cpu_count(), "rows": []}
    print(f"window {window} frames, {os.cpu_count()} CPU cores; frames/s, best of {args.repeats}")
    print(f"{'batch':>6} " + " ".join(f"{name.replace('ExecutionProvider', ''):>10}" for name in providers)
          + ("  torch-eager" if torch_model is not None else ""))
    for batch in args.batches:
        inputs = example_inputs(batch, window)
        feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs)}
        row = {"batch": batch}
        for name, runner in runners.items():
            runner.batch_size = batch
            row[name] = best_rate(lambda: runner.run_windows(feeds), batch * window, args.repeats)
        if torch_model is not None:
            import torch

            with torch.no_grad():
                row["torch_eager"] = best_rate(lambda: torch_model(*inputs), batch * window, args.repeats)
        results["rows"].append(row)
        print(f"{batch:>6} " + " ".join(f"{row[name]:>10.0f}" for name in providers)
              + (f"  {row['torch_eager']:>11.0f}" if "torch_eager" in row else ""))

    from mxr.models.network.synthetic import SyntheticConfig, generate_sequence
    from mxr.models.open_head import load_open_head

    take = generate_sequence(load_open_head(), SyntheticConfig(fps_range=(200.0, 200.0), duration_range_s=(5.0, 5.0)),
                             np.random.default_rng(0)).take
    for name, runner in runners.items():
        runner.batch_size = BATCH_WINDOWS  # the engine's own
        rate = best_rate(lambda: apply_network(take, runner), take.frame_count, args.repeats)
        results[f"apply_network_{name}"] = rate
        print(f"apply_network on a {take.frame_count}-frame take ({name}): {rate:.0f} frames/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
