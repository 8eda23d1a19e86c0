"""The extension zips build with Blender's tool, one a platform, each carrying its platform's
engine wheels; the linux-x64 zip, installed into a bare Blender Python, reconstructs and bakes.

"Bare" means bpy and numpy only, as in Blender itself: ``.venv-blender50`` (bpy 5.0) and
``.venv-blender42`` (bpy 4.2), both made by scripts/setup. Installing needs
``BLENDER_USER_RESOURCES`` set before bpy is imported, so each install runs in a fresh
interpreter with a temporary user folder, and nothing of the checkout on its path.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BARE_BLENDER_PYTHONS = {"5.0": REPO / ".venv-blender50" / "bin" / "python",
                        "4.2": REPO / ".venv-blender42" / "bin" / "python"}
CLIP = REPO / ".cache" / "data" / "video" / "single_face.mp4"  # 72 frames, neutral to smile

# What every zip must carry, one wheel each, at these versions. The engine's own packages are the
# versions requirements.txt pins for the test suite (OpenCV as the headless build of the same release).
PINNED_WHEELS = {
    "mediapipe": "0.10.21", "opencv_python_headless": "4.11.0.86", "onnxruntime": "1.32.0", "protobuf": "4.25.9",
    "absl_py": "2.5.1", "attrs": "26.1.0", "flatbuffers": "25.12.19", "packaging": "26.4",
    "matplotlib": "3.11.2", "contourpy": "1.3.3", "cycler": "0.12.1", "fonttools": "4.68.0", "kiwisolver": "1.5.1",
    "pillow": "13.0.0", "pyparsing": "3.3.3", "python_dateutil": "4.0.0", "tzdata": "2026.6",
}
# A wheel's platform tag (each of its dotted parts) that installs on the zip's platform.
PLATFORM_TAGS = {
    "linux-x64": r"manylinux(2014|_2_\d+)_x86_64",
    "windows-x64": r"win_amd64",
    "macos-arm64": r"macosx_\d+_\d+_(arm64|universal2)",
}
ZIP_SIZE_LIMIT = 200 * 1024 * 1024  # ~130 MB each today: far more means something stray was swept in


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> dict[str, Path]:
    """The zips scripts/build_extension.py builds, by platform (``linux-x64``: its path)."""
    output = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(output)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    paths = [Path(line) for line in built.stdout.splitlines()]
    return {path.stem.rpartition("-")[2].replace("_", "-"): path for path in paths}  # mxr-0.1.0-linux_x64.zip


def test_requirements_pin_what_the_zips_carry():
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for name in ("mediapipe", "onnxruntime", "protobuf"):
        assert PINNED_WHEELS[name] == pins[name]
    assert PINNED_WHEELS["opencv_python_headless"] == pins["opencv-contrib-python"]


def test_one_zip_a_platform_each_with_its_own_pinned_wheels(zips):
    assert set(zips) == set(PLATFORM_TAGS)
    for platform, zip_path in zips.items():
        size = zip_path.stat().st_size
        print(f"{zip_path.name}: {size / 1e6:.1f} MB")
        assert size < ZIP_SIZE_LIMIT, (zip_path.name, size)
        with zipfile.ZipFile(zip_path) as archive:
            names = set(archive.namelist())
            manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        generated = manifest["build"]["generated"]
        assert generated["platforms"] == [platform]
        wheels = sorted(name for name in names if name.endswith(".whl"))
        assert sorted(path.removeprefix("./") for path in generated["wheels"]) == wheels
        found = {}
        for wheel in wheels:
            distribution, version, *_, python_tag, abi_tag, platform_tag = Path(wheel).stem.split("-")
            found[distribution] = version
            assert platform_tag == "any" or all(re.fullmatch(PLATFORM_TAGS[platform], tag)
                                                for tag in platform_tag.split(".")), (platform, wheel)
            assert (python_tag, abi_tag) in {("cp311", "cp311"), ("py3", "none"), ("py2.py3", "none")} \
                or (abi_tag == "abi3" and int(python_tag.removeprefix("cp3")) <= 11), wheel  # Blender's Python 3.11
        assert len(found) == len(wheels) and found == PINNED_WHEELS, platform  # one each; no numpy: Blender's
        assert {"__init__.py", "mxr_addon/operators.py", "ops/__main__.py", "models/data/open_head.npz",
                "models/network/weights/mxr_micro.onnx", "models/network/weights/mxr_micro.json"} <= names
        assert not any(name.startswith(("tests/", "scripts/", ".venv", ".cache/", "dist/")) for name in names)


INSTALL_RECONSTRUCT_AND_BAKE = textwrap.dedent("""
    import importlib.util
    import os
    import sys

    def files_under(folder):
        # Every file but Python's bytecode caches, which Python (not MXR) writes as it imports.
        return sorted(os.path.join(root, name) for root, folders, names in os.walk(folder)
                      for name in names if "__pycache__" not in root)

    def check(condition, *what):
        if not condition:
            print("CHECK FAILED:", *what, flush=True)
            os._exit(1)

    user = os.environ["BLENDER_USER_RESOURCES"]
    zip_path, clip = sys.argv[1:3]
    check(all(importlib.util.find_spec(name) is None for name in ("mediapipe", "cv2", "onnxruntime", "mxr")),
          "this Python must start without the engine's packages and without MXR")
    import bpy

    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    import bl_ext.user_default.mxr as installed
    extension = os.path.dirname(installed.__file__)
    check(extension.startswith(user), installed.__file__)
    check(importlib.util.find_spec("mediapipe").origin.startswith(user), "mediapipe comes from the zip's wheels")
    prefs = bpy.context.preferences.addons["bl_ext.user_default.mxr"].preferences
    check(prefs.engine_python == "", "the engine Python is an optional override")
    installed_files = files_under(extension)

    prefs.engine_python = sys.executable  # this interpreter, without the extension's packages on its path
    try:
        bpy.ops.mxr.reconstruct_video(filepath=clip)
        check(False, "an override without mediapipe must be refused")
    except RuntimeError as error:
        check("this interpreter lacks mediapipe" in str(error), error)
    prefs.engine_python = ""

    # A script's call (as in background mode): execute() runs the engine and bakes before returning.
    check(bpy.ops.mxr.reconstruct_video(filepath=clip, match_take=True) == {"FINISHED"}, "reconstruct")
    rig = bpy.context.view_layer.objects.active
    check(rig["mxr_owned"] and rig["mxr_source"] == clip, rig)
    check(tuple(rig.data.shape_keys.animation_data.action.frame_range) == (1, 72), "72 frames baked")
    smile = []
    for frame in (1, 72):
        bpy.context.scene.frame_set(frame)
        blocks = rig.data.shape_keys.key_blocks
        smile.append(blocks["mouthSmileLeft"].value + blocks["mouthSmileRight"].value)
    check(smile[1] > smile[0] + 0.1, "the clip ends in a smile", smile)

    takes = os.path.join(user, "datafiles", "mxr_takes")
    check(any(name.endswith(".mxr.npz") for name in os.listdir(takes)), "the take is in Blender's user data")
    cache = bpy.utils.extension_path_user("bl_ext.user_default.mxr", path="frontend_cache")
    check(os.listdir(cache), "the engine's cache is in the extension's user folder")
    check(files_under(extension) == installed_files, "nothing written into the extension's own folder")
    print("INSTALLED-RECONSTRUCTED-BAKED", bpy.app.version_string, flush=True)
    os._exit(0)  # bpy 4.2 crashes at interpreter exit once add-on callbacks are registered
""")


@pytest.mark.parametrize("blender", sorted(BARE_BLENDER_PYTHONS))
def test_installed_zip_alone_reconstructs_and_bakes(zips, tmp_path, blender):
    """Install from Disk -> Reconstruct Video -> baked animation, from a Blender Python without the
    engine's packages: the zip's wheels, the engine in a child of Blender's interpreter, the bake."""
    python = BARE_BLENDER_PYTHONS[blender]
    assert python.is_file(), f"{python} is missing: run ./scripts/setup"
    assert CLIP.is_file(), f"{CLIP} is missing: run ./scripts/setup"
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHONPATH", "MXR_CACHE_DIR", "MPLCONFIGDIR")}
    environment["BLENDER_USER_RESOURCES"] = str(tmp_path / "user_resources")
    home = tmp_path / "home"  # whatever else writes to the user's home lands here
    environment["HOME"] = str(home)
    script = tmp_path / "install_reconstruct_and_bake.py"
    script.write_text(INSTALL_RECONSTRUCT_AND_BAKE)
    ran = subprocess.run([str(python), str(script), str(zips["linux-x64"]), str(CLIP)], env=environment,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and "INSTALLED-RECONSTRUCTED-BAKED" in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert f"INSTALLED-RECONSTRUCTED-BAKED {blender}" in ran.stdout
    # Only what others keep there (onnxruntime its device id, Blender a thumbnail folder): MXR's cache and
    # matplotlib's are in Blender's user folder (see the script), its take too.
    written = {path.relative_to(home).parts[:2] for path in home.rglob("*") if path.is_file() or not any(path.iterdir())}
    assert written <= {(".cache", "Microsoft"), (".cache", "thumbnails")}, written
