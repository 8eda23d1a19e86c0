"""Run the reconstruction engine as a child process and follow its JSON-lines progress.

No bpy here: Blender's operator polls a ``EngineJob`` from a modal timer, scripts and tests use
``run()``. The engine (``python -m mxr.ops reconstruct VIDEO --out TAKE``) prints one JSON object
per line on stdout::

    {"event": "progress", "stage": str, "fraction": float, "eta_s": float | null, ...}
    {"event": "done", "take": path, ...}
    {"event": "warning", "message": str}
    {"event": "error", "message": str}          (then exits with code 2)

It writes the take atomically, so terminating it leaves any earlier take intact.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import site
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..ops.errors import MxrError

# The folder holding the package folder, which is named "mxr" both in the installed extension and
# in the venv's link to the checkout. Not resolved: resolving would follow that link to the checkout.
PACKAGE_PARENT = Path(os.path.abspath(__file__)).parent.parent.parent
ENGINE_MODULES = ("mediapipe", "cv2", "onnxruntime")  # what the engine imports beyond numpy
_STDERR_TAIL = 2000  # characters of the engine's stderr quoted when it fails without a message
_CHECK_TIMEOUT_S = 60.0  # importing the engine's packages takes ~2 s; a cold disk, more
_SETTING = "MXR preferences > Engine Python"
_OVERRIDE_HINT = (f"{_SETTING}; leave it empty to run the engine with Blender's own Python and the packages "
                  "the extension carries")


def resolve_engine_python(configured: str) -> str:
    """The interpreter for the engine: ``configured`` once it has shown it can import the engine's
    packages, else this one (in Blender, Blender's own Python with the extension's wheels)."""
    if not configured:
        engine_package_folders()  # raises, naming the package, where this Python lacks one
        return sys.executable
    if not Path(configured).is_file():
        raise MxrError(f"engine Python not found: {configured} ({_OVERRIDE_HINT})")
    check_engine_python(configured)
    return configured


def engine_package_folders() -> list[str]:
    """The folders, beyond this interpreter's own site-packages, it imports the engine's packages from.

    In Blender these hold the extension's wheels: Blender extracts them into
    ``<user extensions>/.local/lib/python3.11/site-packages`` and adds that folder to its own
    ``sys.path`` (addon_utils), which a fresh start of the same interpreter would not do, so the
    engine process gets them on its PYTHONPATH. Empty in a venv that has the packages itself.
    """
    own = {os.path.normcase(os.path.abspath(folder)) for folder in site.getsitepackages()}
    folders: list[str] = []
    for module in ENGINE_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise MxrError(
                f"Blender's Python lacks {module}: install the MXR zip built for this platform (it carries the "
                f"engine's packages), or set {_SETTING} to a Python that has them")
        folder = os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))  # .../<folder>/<module>/__init__.py
        if os.path.normcase(folder) not in own and folder not in folders:
            folders.append(folder)
    return folders


def check_engine_python(python: str) -> None:
    """MxrError unless ``python`` imports the engine's packages. Asked in a child process with a time
    limit, so a wrong pick (not a Python, another version, no MediaPipe) gets a sentence, not a traceback."""
    probe = [python, "-c", "import " + ", ".join(ENGINE_MODULES)]
    try:
        completed = subprocess.run(probe, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                   timeout=_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MxrError(f"this interpreter did not import {', '.join(ENGINE_MODULES)} within "
                       f"{_CHECK_TIMEOUT_S:.0f} s: {python} ({_OVERRIDE_HINT})") from None
    except OSError as error:
        raise MxrError(f"this interpreter cannot be run ({error.strerror}): {python} ({_OVERRIDE_HINT})") from None
    if completed.returncode != 0:
        missing = re.search(r"No module named '([^']+)'", completed.stderr)
        last_line = (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"])[-1]
        reason = f"lacks {missing.group(1)}" if missing else f"cannot import the engine's packages ({last_line})"
        raise MxrError(f"this interpreter {reason}: {python} ({_OVERRIDE_HINT})")


@dataclass
class Progress:
    stage: str
    fraction: float  # 0..1
    eta_s: float | None


class EngineJob:
    """One engine run. ``poll()`` drains the events read so far; ``result()`` after it exits."""

    def __init__(self, python: str, video: Path, take_path: Path, package_parent: Path = PACKAGE_PARENT,
                 options: tuple[str, ...] = (), environment: dict[str, str] | None = None):
        """``options``: more engine arguments, e.g. ``("--baseline",)``; ``environment``: variables set
        for the engine process (where it keeps its caches)."""
        self.command = [python, "-m", "mxr.ops", "reconstruct", str(video), "--out", str(take_path), *options]
        self.package_parent = Path(package_parent)
        self.environment = dict(environment or {})
        self.progress = Progress("starting", 0.0, None)
        self.take: Path | None = None
        self.summary: dict = {}  # the engine's "done" event: frames, seconds, model_version, provider, ...
        self.error: str | None = None
        self.warnings: list[str] = []
        self._events: queue.Queue[dict] = queue.Queue()
        self._stderr: list[str] = []
        self._process: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []

    def _process_environment(self) -> dict[str, str]:
        """The engine's environment: the ``mxr`` package first on its path; started with this very
        interpreter, also the folders this process finds the engine's packages in, and no user
        site-packages (Blender ignores them too, and a stray numpy there would shadow Blender's).
        Never writes bytecode: the package may be an installed extension, whose folder is not MXR's to write."""
        environment = {**os.environ, **self.environment, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        paths = [str(self.package_parent)]
        if self.command[0] == sys.executable:
            paths += engine_package_folders()
            environment["PYTHONNOUSERSITE"] = "1"
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, environment.get("PYTHONPATH", "")]))
        return environment

    def start(self) -> "EngineJob":
        environment = self._process_environment()
        try:
            self._process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                text=True, env=environment,
            )
        except OSError as error:
            raise MxrError(f"could not start the engine ({self.command[0]}): {error}") from error
        self._threads = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _read_events(self) -> None:
        for line in self._process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # the engine's libraries may print plain text; only JSON lines are events
            if isinstance(event, dict):
                self._events.put(event)

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr.append(line)

    def poll(self) -> bool:
        """Apply the events received so far; True while the engine is still running."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            kind = event.get("event")
            if kind == "progress":
                eta = event.get("eta_s")
                self.progress = Progress(str(event.get("stage", "")), float(event.get("fraction", 0.0)),
                                         None if eta is None else float(eta))
            elif kind == "done":
                self.take = Path(event["take"])
                self.summary = event
            elif kind == "warning":
                self.warnings.append(str(event.get("message", "")))
            elif kind == "error":
                self.error = str(event.get("message", "unknown engine error"))
        if self._process.poll() is None:
            return True
        for thread in self._threads:  # the pipes are closed: the readers finish promptly
            thread.join()
        if not self._events.empty():
            return self.poll()
        return False

    def result(self) -> Path:
        """The take written by a finished run, or MxrError saying why there is none."""
        code = self._process.returncode
        if self.error:
            raise MxrError(f"engine: {self.error}")
        if code != 0 or self.take is None:
            tail = "".join(self._stderr)[-_STDERR_TAIL:].strip()
            raise MxrError(f"the engine stopped (exit code {code}) without a take" + (f":\n{tail}" if tail else ""))
        return self.take

    def neutral_note(self) -> str:
        """Which frames the finished run read the neutral from, and what it took out of them (the
        engine's "done" event), for the user to check and, if wrong, name the frames instead."""
        first, last = self.summary.get("neutral_frames", (None, None))
        if first is None:
            return ""
        how = {"found": "found", "frames": "as named", "first_seconds": "the clip's opening"}.get(
            self.summary.get("neutral_method"), "found")
        note = f"the neutral face is frames {first}-{last} ({how})"
        held = self.summary.get("neutral_held") or {}
        if held:
            note += ", less the " + ", ".join(f"{name} {amount:.2f}" for name, amount in held.items()) + " they held"
        if self.summary.get("neutral_hand"):
            note += "; a hand covers the face there"
        return note

    def cancel(self) -> None:
        """Stop the engine; it writes takes atomically, so nothing half-written remains."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def run(self, on_progress=None, interval_s: float = 0.1) -> Path:
        """Start (if needed), block until the engine exits, and return the take path."""
        if self._process is None:
            self.start()
        try:
            while self.poll():
                if on_progress is not None:
                    on_progress(self.progress)
                try:
                    self._process.wait(timeout=interval_s)
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:
            self.cancel()
            raise
        return self.result()
