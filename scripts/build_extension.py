#!/usr/bin/env python
"""Build the Blender extension zips (dist/mxr-<version>-<platform>.zip) with Blender's own extension tool.

The tool ships in the bpy wheel (bl_pkg/cli/blender_ext.py) and runs under plain Python, so
the manifest is validated and the zips built exactly as Blender would, without Blender. One zip a
platform the manifest declares (``--split-platforms``), each with that platform's engine wheels
(downloaded into ./wheels by scripts/fetch_wheels.py at setup), so installing it is all a user
does. Prints each zip's path:

    .venv/bin/python scripts/build_extension.py [--output-dir dist]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAD_ASSET = "models/data/open_head.npz"


def extension_tool() -> Path:
    """blender_ext.py inside the installed bpy wheel (any Blender version folder)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")  # locate the wheel without importing Blender
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the bpy package is not installed in this Python (run ./scripts/setup)")
    package = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(package.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"error: Blender's extension tool was not found under {package}")
    return found[-1]


def check_inputs(manifest: dict) -> None:
    """Everything the zips carry that setup makes rather than git: the open head and the wheels."""
    if not (REPO / HEAD_ASSET).is_file():
        sys.exit(f"error: {HEAD_ASSET} is missing; run ./scripts/setup to build the open head first")
    missing = [wheel for wheel in manifest.get("wheels", []) if not (REPO / wheel).is_file()]
    if missing:
        sys.exit(f"error: {len(missing)} wheels the manifest lists are missing (first: {missing[0]}); "
                 "run ./scripts/setup (scripts/fetch_wheels.py downloads them)")


def build(output_dir: Path) -> list[Path]:
    """Validate the manifest and build one zip a platform; returns the zips' paths."""
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    check_inputs(manifest)
    stem = f"{manifest['id']}-{manifest['version']}"
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    tool = [sys.executable, str(extension_tool())]
    for step in (["validate", str(REPO)],
                 ["build", "--split-platforms", "--source-dir", str(REPO),
                  "--output-filepath", str(output_dir / f"{stem}.zip")]):
        completed = subprocess.run(tool + step, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"error: blender_ext {step[0]} failed:\n{completed.stdout}{completed.stderr}")
    zip_paths = [output_dir / f"{stem}-{platform.replace('-', '_')}.zip" for platform in manifest["platforms"]]
    for zip_path in zip_paths:
        with zipfile.ZipFile(zip_path) as archive:
            if HEAD_ASSET not in archive.namelist():
                sys.exit(f"error: {zip_path} lacks {HEAD_ASSET}; check [build] paths_exclude_pattern")
    return zip_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    for zip_path in build(parser.parse_args().output_dir):
        print(zip_path)


if __name__ == "__main__":
    main()
