"""Progress as JSON lines on a stream: what the Blender job runner and batch users read.

Every line is one JSON object with an ``event`` key: ``progress`` (stage, frame, frames,
fraction, eta_s), ``warning`` (message), ``done`` (summary), ``error`` (message).
"""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Callable


class ProgressReporter:
    def __init__(self, stream: IO[str] | None = None, min_interval_s: float = 0.25) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._min_interval_s = min_interval_s
        self._stage: str | None = None
        self._stage_started = time.monotonic()
        self._last_emit = -float("inf")

    def emit(self, event: str, **fields: Any) -> None:
        self._stream.write(json.dumps({"event": event, **fields}) + "\n")
        self._stream.flush()

    def progress(self, stage: str, frame: int, frames: int) -> None:
        """Throttled: at most one line per ``min_interval_s``, plus a stage's first and last. The
        ETA is the stage's own: from the time it was first reported."""
        now = time.monotonic()
        first = stage != self._stage
        if first:
            self._stage, self._stage_started = stage, now
        elif now - self._last_emit < self._min_interval_s and frame < frames:
            return
        self._last_emit = now
        fraction = min(frame / frames, 1.0) if frames > 0 else 0.0
        elapsed = now - self._stage_started
        eta_s = elapsed * (1.0 - fraction) / fraction if fraction > 0 and not first else None
        self.emit("progress", stage=stage, frame=frame, frames=frames, fraction=round(fraction, 4),
                  eta_s=None if eta_s is None else round(eta_s, 2))

    def stage(self, stage: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback that reports ``stage``: what the engine's stages are given."""
        return lambda done, total: self.progress(stage, done, total)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)
