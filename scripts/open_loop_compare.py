"""Two runs of the injected-footage check, event by event: is a change of the engine more than noise?

    .venv/bin/python scripts/open_loop_inject.py --split dev --plantings 5 --json before.json
    (change the engine)
    .venv/bin/python scripts/open_loop_inject.py --split dev --plantings 5 --json after.json
    .venv/bin/python scripts/open_loop_compare.py before.json after.json

Why: a planted event's share swings by 0.1-0.3 with any change of the pose or the tracker, so the
split's medians moved by 0.1-0.2 between engines whose per-event differences were about 0 (2026-12-05,
docs/OPEN_LOOP.md): two medians side by side say little. The same clips plant the same events (same seeds, same frames),
so the shares can be compared event by event: the median of the per-event differences, with its
90 % bootstrap interval, per kind of event (micro, macro) and share (the take, the micro layer
made for the planted events). An interval that holds 0 is no finding. Events are paired by split,
clip, action, kind and onset frame; an event one run lacks is left out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from open_loop import print_table  # noqa: E402
from open_loop_inject import bootstrap_interval  # noqa: E402

# The shares compared per kind of event: (label, the event row's key).
SHARES = {"micro": (("take", "total"), ("micro layer, planted events", "micro layer, planted events")),
          "macro": (("take", "total"),)}


def event_shares(report: dict) -> dict[tuple, dict]:
    """(split, clip, action, kind, onset) -> the event's row, from ``open_loop_inject.py --json``."""
    return {(split, clip, row["action"], row["kind"], row["onset"]): row
            for split, clips in report["clips"].items() for clip, scores in clips.items() for row in scores["events"]}


def paired_differences(before: dict[tuple, dict], after: dict[tuple, dict], kind: str, key: str) -> np.ndarray:
    """(n,) after less before, for the events of ``kind`` both runs have with a finite ``key``."""
    differences = []
    for event, row in before.items():
        other = after.get(event)
        if event[3] != kind or other is None or row.get(key) is None or other.get(key) is None:
            continue
        if np.isfinite(row[key]) and np.isfinite(other[key]):
            differences.append(other[key] - row[key])
    return np.array(differences, np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="open_loop_inject.py --json of the first run")
    parser.add_argument("after", type=Path, help="... of the second")
    args = parser.parse_args(argv)
    before, after = (event_shares(json.loads(path.read_text())) for path in (args.before, args.after))
    rows = {}
    for kind, shares in SHARES.items():
        for label, key in shares:
            differences = paired_differences(before, after, kind, key)
            if len(differences) < 2:
                continue
            low, high = bootstrap_interval(differences)
            rows[f"{kind}, {label}"] = {"events": str(len(differences)),
                                        "median difference": f"{np.median(differences):+.3f}",
                                        "90 % interval": f"{low:+.3f} to {high:+.3f}",
                                        "more / fewer": f"{int(np.sum(differences > 0))} / {int(np.sum(differences < 0))}"}
    if not rows:
        print("no events in common: were both runs made on the same clips, splits and plantings?", file=sys.stderr)
        return 1
    print_table(f"{args.after.name} less {args.before.name}, event by event", rows, "share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
