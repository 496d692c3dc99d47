"""PIXIE Body Reconstruction: Blender extension that builds rigged, expressive SMPL-X avatars.

This file only registers and unregisters; ``bpy`` is imported lazily so that the bpy-free
``pixie_blender.io`` package imports in plain Python (tests, backend tools).
"""

from __future__ import annotations


def register() -> None:
    from . import registration

    registration.register()


def unregister() -> None:
    from . import registration

    registration.unregister()
