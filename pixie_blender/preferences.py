"""Add-on preferences: backend interpreter and data folder, import defaults, joints-follow-shape,
cache, and the "Set up model files" section (``ui.data_setup.draw_preferences``)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

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

PLACEMENT_ITEMS = (
    (
        "PHOTO",
        "As in Photo",
        "Every person stands where the photo shows them, seen through one perspective camera "
        "(focal length: the image diagonal unless given)",
    ),
    (
        "IN_PLACE",
        "In Place",
        "Avatars side by side at the cursor, each with its own orthographic photo camera (exact overlay)",
    ),
)


class PIXIE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend_python: StringProperty(
        name="Backend Python",
        subtype="FILE_PATH",
        description="Python interpreter of the environment where pixie-backend is installed "
        "(for example .../venv/bin/python or ...\\venv\\Scripts\\python.exe)",
    )
    data_dir: StringProperty(
        name="Model Data Folder",
        subtype="DIR_PATH",
        description="Folder with the licensed PIXIE and SMPL-X files (empty: the backend's default, "
        "$PIXIE_DATA_DIR or the per-user data folder)",
    )

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
        description="Default for the import operator: add a camera with the photo as background",
    )
    default_placement: EnumProperty(
        name="Placement",
        items=PLACEMENT_ITEMS,
        default="PHOTO",
        description="Default for the import operator: where the avatars of one photo stand",
    )
    use_template_cache: BoolProperty(
        name="Template Cache",
        default=True,
        description="Keep a built avatar template per model package in the cache for fast imports",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column(heading="Backend")
        col.prop(self, "backend_python")
        col.prop(self, "data_dir")
        col = layout.column(heading="Import")
        col.prop(self, "default_pose_correctives")
        col.prop(self, "default_add_camera")
        col.prop(self, "default_placement")
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
        from .ui import data_setup

        data_setup.draw_preferences(layout.box(), context)


def get_preferences(context=None):
    """The preferences, or None when the add-on was registered without being enabled (tests)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


CLASSES = (PIXIE_AP_preferences,)
