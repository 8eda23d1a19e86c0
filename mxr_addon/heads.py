"""Which ``HeadModel`` a rig was built from, by name; FLAME models by file.

Rigs store only the head's name (``rig["mxr_head"]``); baking needs the full model (basis and
landmark embedding). Heads loaded in this session (the built-in head, a test's synthetic head)
are remembered here by name. FLAME rigs store their file's path instead (the model is the
user's and never copied into the .blend), and ``flame_model`` reads it once per session.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..models.flame import FlameModel, load_flame
from ..models.head_model import HeadModel
from ..ops.errors import MxrError

_known: dict[str, HeadModel] = {}
_flame: dict[tuple[str, int], FlameModel] = {}


def remember(head: HeadModel) -> HeadModel:
    _known[head.name] = head
    return head


def builtin_head() -> HeadModel:
    """The open head shipped with the extension (models/data/open_head.npz), read once a session
    (a panel's poll asks for it on every redraw)."""
    try:
        return remember(_read_builtin_head())
    except FileNotFoundError as error:
        raise MxrError(f"the built-in head asset is missing ({error}); reinstall MXR") from error


@lru_cache(maxsize=1)
def _read_builtin_head() -> HeadModel:
    from ..models.open_head import load_open_head  # import late: the asset is read on first use

    return load_open_head()


def head_named(name: str) -> HeadModel:
    """The head called ``name``: one seen in this session, else the built-in head."""
    if name in _known:
        return _known[name]
    head = builtin_head()
    if head.name != name:
        raise MxrError(f"head '{name}' is not loaded in this session; load it again, or import the built-in head")
    return head


def flame_model(path: Path) -> FlameModel:
    """The FLAME model in ``path`` (``FlameFileError`` if missing or not one), read once per
    session and file version (path and modification time)."""
    path = Path(path).resolve()
    stamp = path.stat().st_mtime_ns if path.is_file() else -1
    if (str(path), stamp) not in _flame:
        _flame[(str(path), stamp)] = load_flame(path)
    return _flame[(str(path), stamp)]
