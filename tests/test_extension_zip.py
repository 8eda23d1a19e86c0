"""The extension zip builds with Blender's tool, installs into bpy, and its operators run.

Installing needs ``BLENDER_USER_RESOURCES`` set before bpy is imported, so the install runs in
a fresh interpreter (this venv's Python) with a temporary user folder.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

INSTALL_AND_RUN = textwrap.dedent("""
    import os
    import sys
    import bpy
    zip_path = sys.argv[1]
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    import bl_ext.user_default.mxr as installed
    assert installed.__file__.startswith(os.environ["BLENDER_USER_RESOURCES"]), installed.__file__
    assert bpy.ops.mxr.import_head() == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    assert rig["mxr_owned"] and len(rig.data.shape_keys.key_blocks) == 53, rig
    prefs = bpy.context.preferences.addons["bl_ext.user_default.mxr"].preferences
    assert prefs.engine_python == ""
    # Relative imports only: the installed copy never falls back to the checkout's ``mxr``.
    assert "bl_ext.user_default.mxr.mxr_addon.rig" in sys.modules and "mxr.mxr_addon" not in sys.modules
    print("INSTALLED-OK", installed.__file__)
""")


def test_zip_builds_installs_and_runs(tmp_path):
    built = subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    zip_path = Path(built.stdout.strip().splitlines()[-1])
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert {"blender_manifest.toml", "__init__.py", "mxr_addon/operators.py", "models/data/open_head.npz"} <= names
    assert not any(name.startswith(("tests/", "scripts/", ".venv/", ".cache/")) for name in names)

    environment = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user_resources"))
    script = tmp_path / "install_and_run.py"
    script.write_text(INSTALL_AND_RUN)
    ran = subprocess.run([sys.executable, str(script), str(zip_path)], env=environment, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "INSTALLED-OK" in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]
