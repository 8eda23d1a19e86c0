"""Download the wheels blender_manifest.toml lists into ./wheels (idempotent, setup time only).

The manifest names each wheel by its full file name (package, version, Python, ABI and platform
tags), so it is the pinned list: each missing file is fetched from the package registry with pip,
unmodified and without dependencies, asking for exactly that file's tags, and its name is checked.
Files already there are not fetched again, so a later run needs no network.

    .venv/bin/python scripts/fetch_wheels.py
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name: ``{distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl``."""

    file_name: str
    distribution: str
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str

    @classmethod
    def parse(cls, file_name: str) -> "WheelName":
        parts = file_name.removesuffix(".whl").split("-")
        if not file_name.endswith(".whl") or len(parts) not in (5, 6):
            raise ValueError(f"not a wheel file name: {file_name}")
        return cls(file_name, parts[0], parts[1], *parts[-3:])


def manifest_wheels(manifest_path: Path = REPO / "blender_manifest.toml") -> list[Path]:
    """The wheel files the manifest lists, as paths under the repository."""
    manifest = tomllib.loads(manifest_path.read_text())
    return [REPO / relative for relative in manifest.get("wheels", [])]


def pip_download_command(wheel: WheelName, destination: Path) -> list[str]:
    """pip asked for this one file: its pin, and only its own tags (a platform tag may hold several,
    joined by dots, e.g. ``manylinux_2_17_x86_64.manylinux2014_x86_64``)."""
    platforms = [argument for tag in wheel.platform_tag.split(".") for argument in ("--platform", tag)]
    abis = [argument for tag in wheel.abi_tag.split(".") for argument in ("--abi", tag)]
    return [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
            *platforms, *abis, "--dest", str(destination), f"{wheel.distribution}=={wheel.version}"]


def fetch(target: Path) -> None:
    """Download ``target`` (a wheel path the manifest lists) unless it is already there."""
    if target.is_file():
        return
    wheel = WheelName.parse(target.name)
    with tempfile.TemporaryDirectory() as staging:
        download = subprocess.run(pip_download_command(wheel, Path(staging)), capture_output=True, text=True)
        fetched = Path(staging) / target.name
        if download.returncode != 0 or not fetched.is_file():
            found = sorted(path.name for path in Path(staging).iterdir())
            sys.exit(f"fetch_wheels: could not download {target.name} (pip got {found or 'nothing'}):\n"
                     f"{download.stderr[-1500:]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(fetched, target)
    print(f"fetch_wheels: {target.name}", file=sys.stderr)


def main() -> None:
    for target in manifest_wheels():
        fetch(target)


if __name__ == "__main__":
    main()
