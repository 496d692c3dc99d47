"""``pixie.export_fbx``: one click, the selected avatar (rig + body) to FBX with its animation and
shape-key animation."""

from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper

#: The FBX settings: the rig and its body only, no leaf bones, every frame baked unsimplified,
#: shape keys kept (modifiers are not applied, or Blender drops the shape keys).
FBX_SETTINGS = {
    "use_selection": True,
    "object_types": {"ARMATURE", "MESH"},
    "use_mesh_modifiers": False,
    "add_leaf_bones": False,
    "bake_anim": True,
    "bake_anim_use_all_bones": True,
    "bake_anim_use_nla_strips": False,
    "bake_anim_use_all_actions": False,
    "bake_anim_force_startend_keying": True,
    "bake_anim_simplify_factor": 0.0,
    "mesh_smooth_type": "FACE",
    "use_armature_deform_only": False,
    "path_mode": "COPY",
    "embed_textures": False,
}


def export_fbx(context, arm: bpy.types.Object, filepath: str) -> None:
    """Export the avatar ``arm`` (its armature and body mesh) to ``filepath``."""
    from ..scene.avatar import avatar_parts

    parts = avatar_parts(arm)
    if parts is None:
        raise ValueError("the active object is not a PIXIE avatar")
    arm, body = parts
    view_layer = context.view_layer
    selected = [o for o in view_layer.objects if o.select_get(view_layer=view_layer)]
    active = view_layer.objects.active
    for o in selected:
        o.select_set(False, view_layer=view_layer)
    try:
        for o in (arm, body):
            o.select_set(True, view_layer=view_layer)
        view_layer.objects.active = arm
        with context.temp_override(active_object=arm, object=arm, selected_objects=[arm, body]):
            res = bpy.ops.export_scene.fbx(filepath=filepath, **FBX_SETTINGS)
        if res != {"FINISHED"}:
            raise RuntimeError(f"the FBX exporter returned {sorted(res)}")
    finally:
        for o in (arm, body):
            o.select_set(False, view_layer=view_layer)
        for o in selected:
            o.select_set(True, view_layer=view_layer)
        view_layer.objects.active = active


class PIXIE_OT_export_fbx(bpy.types.Operator, ExportHelper):
    """Export the selected PIXIE avatar (rig, body, shape keys) with its animation to FBX"""

    bl_idname = "pixie.export_fbx"
    bl_label = "Export Avatar FBX"
    bl_options = {"REGISTER"}

    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        from ..scene.avatar import avatar_parts

        return context.mode == "OBJECT" and avatar_parts(context.active_object) is not None

    def invoke(self, context, event):
        if not self.filepath:
            from ..scene.avatar import avatar_parts

            arm, _ = avatar_parts(context.active_object)
            blend = bpy.data.filepath
            folder = os.path.dirname(blend) if blend else os.path.expanduser("~")
            self.filepath = os.path.join(folder, f"{bpy.path.clean_name(arm.name)}.fbx")
        return super().invoke(context, event)

    def execute(self, context):
        try:
            export_fbx(context, context.active_object, self.filepath)
        except (ValueError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"FBX export failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {os.path.basename(self.filepath)}")
        return {"FINISHED"}


CLASSES = (PIXIE_OT_export_fbx,)
