"""File ▸ Import ▸ PIXIE Result."""

from __future__ import annotations

import bpy


def menu_import(self, context):
    self.layout.operator("pixie.import_result", text="PIXIE Result (.pixie.npz)")


def register_extra() -> None:
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister_extra() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)


CLASSES = ()
