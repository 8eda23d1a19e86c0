"""Write-then-rename: a file either has its old content or its complete new content, never half.

Temporary files sit beside their target as ``<name>.<pid>-<random>.partial``: the process id lets
a later run tell a crashed writer's leftovers (``sweep_stale_partials``) from a live one's.
"""
from __future__ import annotations

import glob
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

STALE_PARTIAL_S = 24 * 3600  # a partial file this old is a leftover, whoever wrote it


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same file through hard or symbolic links where both
    exist, else the same resolved path (an output not written yet)."""
    first, second = Path(first), Path(second)
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def _creation_mode() -> int:
    """The permissions ``open()`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temporary_beside(path: Path) -> Path:
    handle, temporary = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}-", suffix=".partial", dir=path.parent)
    os.close(handle)
    return Path(temporary)


@contextmanager
def replacing(path: Path) -> Iterator[IO[bytes]]:
    """A binary stream whose content replaces ``path`` in one rename when the block ends without
    an error (or an interrupt); otherwise the temporary file is removed and ``path`` is untouched.
    The file gets ordinary permissions, not the 0600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    try:
        with open(temporary, "wb") as stream:
            yield stream
        os.chmod(temporary, _creation_mode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def replacing_together(paths: list[Path]) -> Iterator[list[Path]]:
    """Staging paths for ``paths`` (same folders): write each output to its staging path in the
    block; when it ends without an error all are renamed onto their targets, otherwise all are
    removed and every target keeps its old content. One run's outputs land together."""
    targets = [Path(path) for path in paths]
    staged: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.append(_temporary_beside(target))
        yield staged
        for temporary, target in zip(staged, targets):
            os.replace(temporary, target)
    finally:
        for temporary in staged:
            temporary.unlink(missing_ok=True)


def sweep_stale_partials(path: Path) -> list[Path]:
    """Remove the partial files a crashed (or killed) writer of ``path`` left beside it: those whose
    process is gone, or older than ``STALE_PARTIAL_S``. Returns what was removed."""
    path = Path(path)
    removed = []
    for leftover in path.parent.glob(glob.escape(path.name) + ".*.partial"):
        owner = leftover.name[len(path.name) + 1:].split("-", 1)[0]
        try:
            stale = (time.time() - leftover.stat().st_mtime > STALE_PARTIAL_S
                     or not (owner.isdigit() and _process_alive(int(owner))))
            if stale:
                leftover.unlink()
                removed.append(leftover)
        except OSError:
            continue
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process
    return True
