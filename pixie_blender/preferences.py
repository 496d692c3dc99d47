"""Add-on preferences: import defaults, joints-follow-shape, cache; hosts the optional
"Set up model files" section (``ui.data_setup.draw_preferences``) when that module exists."""

from __future__ import annotations

import importlib

import bpy
from bpy.props import BoolProperty, EnumProperty

ADDON_PACKAGE = __package__

CORRECTIVE_ITEMS = (
    (
        "BAKED",
        "Baked",
        "One 'PoseCorrectives' key holding the correctives of the imported pose "
        "(exact, cheap; re-bake after re-posing)",
    ),
    ("LIVE", "Live", "486 'Pose###' keys driven by the bone rotations (follow any pose; slower playback)"),
    ("NONE", "None", "No pose correctives"),
)


class PIXIE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    auto_update_joints: BoolProperty(
        name="Joints Follow Shape Keys",
        description="Move the rest bones when Shape/Exp key values change (debounced)",
        default=True,
    )
    default_pose_correctives: EnumProperty(
        name="Pose Correctives",
        items=CORRECTIVE_ITEMS,
        default="BAKED",
        description="Default for the import operator",
    )
    default_add_camera: BoolProperty(
        name="Photo Camera",
        default=True,
        description="Default for the import operator: add an orthographic camera over the photo",
    )
    use_template_cache: BoolProperty(
        name="Template Cache",
        default=True,
        description="Keep a built avatar template per model package in the cache for fast imports",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column(heading="Import")
        col.prop(self, "default_pose_correctives")
        col.prop(self, "default_add_camera")
        col = layout.column(heading="Rig")
        col.prop(self, "auto_update_joints")
        box = layout.box()
        box.label(text="Cache", icon="FILE_CACHE")
        from .scene import template_cache

        cache = template_cache.default_cache_dir()
        box.prop(self, "use_template_cache")
        row = box.row()
        row.label(text=f"{cache}  ({template_cache.cache_size(cache) / 1e6:.0f} MB)")
        row.operator("pixie.clear_cache", text="Clear", icon="TRASH")
        data_setup = optional_module("ui.data_setup")
        if data_setup is not None and hasattr(data_setup, "draw_preferences"):
            data_setup.draw_preferences(layout.box(), context)


def optional_module(name: str):
    """``pixie_blender.<name>`` if that module exists, else None (other import errors propagate)."""
    full = f"{ADDON_PACKAGE}.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name == full:
            return None
        raise


def get_preferences(context=None):
    """The preferences, or None when the add-on was registered without being enabled (tests)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


CLASSES = (PIXIE_AP_preferences,)
