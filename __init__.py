# SPDX-License-Identifier: GPL-3.0-or-later
"""MXR: micro-expression reconstruction from reference video, baked as shape-key animation.

This folder is both the Blender extension (id ``mxr``) and the ``mxr`` Python package used by the
engine process, scripts and tests. Importing it must not import ``bpy``: only ``register`` does.
"""

__version__ = "0.1.0"


def register() -> None:
    from .mxr_addon import register as register_addon

    register_addon()


def unregister() -> None:
    from .mxr_addon import unregister as unregister_addon

    unregister_addon()
