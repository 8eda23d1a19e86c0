#!/usr/bin/env python
"""Build the Blender extension zip (dist/mxr-<version>.zip) with Blender's own extension tool.

The tool ships in the bpy wheel (bl_pkg/cli/blender_ext.py) and runs under plain Python, so
the manifest is validated and the zip built exactly as Blender would, without Blender:

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


def build(output_dir: Path) -> Path:
    if not (REPO / HEAD_ASSET).is_file():
        sys.exit(f"error: {HEAD_ASSET} is missing; run ./scripts/setup to build the open head first")
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    zip_path = output_dir.resolve() / f"{manifest['id']}-{manifest['version']}.zip"
    output_dir.mkdir(parents=True, exist_ok=True)
    tool = [sys.executable, str(extension_tool())]
    for step in (["validate", str(REPO)],
                 ["build", "--source-dir", str(REPO), "--output-filepath", str(zip_path)]):
        completed = subprocess.run(tool + step, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"error: blender_ext {step[0]} failed:\n{completed.stdout}{completed.stderr}")
    with zipfile.ZipFile(zip_path) as archive:
        if HEAD_ASSET not in archive.namelist():
            sys.exit(f"error: {zip_path} lacks {HEAD_ASSET}; check [build] paths_exclude_pattern")
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    print(build(parser.parse_args().output_dir))


if __name__ == "__main__":
    main()
