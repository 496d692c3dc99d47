"""Window-manager properties of the sidebar (UI state only)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty


def register_extra() -> None:
    # On the WindowManager on purpose: pure UI state, not saved in .blend files.
    bpy.types.WindowManager.pixie_show_all_keys = BoolProperty(
        name="All Keys", description="List all 200 Shape and 50 Exp keys", default=False
    )


def unregister_extra() -> None:
    del bpy.types.WindowManager.pixie_show_all_keys


CLASSES = ()
