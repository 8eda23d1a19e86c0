"""What an ``.npz`` file declares, read from its arrays' headers without loading them: a small
compressed file can declare arrays of many GB, so sizes are checked before anything is allocated."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def declared_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, dtype) of every array in the ``.npz`` at ``path``, from the headers alone.
    ValueError (or zipfile.BadZipFile, OSError) if a member is not an npy array."""
    declared = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(member)
            declared[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    return declared
