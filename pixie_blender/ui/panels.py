"""Sidebar (View3D ▸ N ▸ PIXIE) and the drag-and-drop file handler."""

from __future__ import annotations

import bpy

from ..preferences import get_preferences


def _parts(context):
    from ..scene.avatar import avatar_parts

    return avatar_parts(context.active_object)


class PIXIE_PT_main(bpy.types.Panel):
    bl_idname = "PIXIE_PT_main"
    bl_label = "PIXIE"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PIXIE"

    def draw(self, context):
        layout = self.layout
        row = layout.row(align=True)
        row.operator("pixie.import_result", icon="IMPORT", text="Import Result")
        row.operator("pixie.import_sequence", icon="SEQUENCE", text="Image Sequence")
        parts = _parts(context)
        if parts is None:
            layout.label(text="Select a PIXIE avatar", icon="INFO")
            return
        arm, _body = parts
        box = layout.box()
        col = box.column(align=True)
        col.label(text=arm.name, icon="ARMATURE_DATA")
        col.label(text=f"Source: {arm.get('pixie_source_name', '?')}")
        n = int(arm.get("pixie_num_persons", 1))
        if n > 1:
            col.label(text=f"Person {int(arm.get('pixie_person_index', 0)) + 1} of {n}")
        if arm.get("pixie_synthetic"):
            col.label(text="Synthetic: not a reconstruction", icon="ERROR")
        for part in ("head", "left_hand", "right_hand"):
            w = arm.get(f"pixie_moderator_{part}")
            if w is not None and len(w) == 2:
                col.label(text=f"{part.replace('_', ' ').title()}: part confidence {w[1]:.2f}")
        col.label(text=f"Pose correctives: {str(arm.get('pixie_pose_correctives', '?')).lower()}")
        if arm.get("pixie_track_id") is not None:
            col.label(text=f"Track {arm['pixie_track_id']}: {arm.get('pixie_num_keyed_frames', 0)} keyed frames")
            col.label(text=f"Smoothing {float(arm.get('pixie_smoothing', 0.0)):.2f} (re-import to change)")
        layout.operator("pixie.export_fbx", icon="EXPORT")


class PIXIE_PT_rig(bpy.types.Panel):
    bl_label = "Rig"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PIXIE"
    bl_parent_id = "PIXIE_PT_main"

    @classmethod
    def poll(cls, context):
        return _parts(context) is not None

    def draw(self, context):
        from ..scene import joint_follow

        layout = self.layout
        arm, body = _parts(context)
        col = layout.column(align=True)
        row = col.row(align=True)
        row.operator("pixie.update_joints", icon="BONE_DATA")
        prefs = get_preferences(context)
        if prefs is not None:
            row.prop(prefs, "auto_update_joints", text="", icon="AUTO")
        if joint_follow.is_avatar_rig(arm) and joint_follow.is_stale(arm, body):
            col.label(text="Joints do not match the shape keys", icon="ERROR")
        col.operator("pixie.bake_pose_correctives", icon="SHAPEKEY_DATA")
        col.operator("pixie.use_photo_camera", icon="CAMERA_DATA")


class PIXIE_PT_shape(bpy.types.Panel):
    bl_label = "Shape and Expression"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PIXIE"
    bl_parent_id = "PIXIE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return _parts(context) is not None

    def draw(self, context):
        layout = self.layout
        _arm, body = _parts(context)
        wm = context.window_manager
        show_all = bool(getattr(wm, "pixie_show_all_keys", False))
        layout.prop(wm, "pixie_show_all_keys")
        kbs = body.data.shape_keys.key_blocks
        for prefix, label in (("Exp", "Expression"), ("Shape", "Body shape")):
            layout.label(text=label)
            col = layout.column(align=True)
            shown = 0
            for kb in kbs:
                if kb.name.startswith(prefix) and kb.name[len(prefix) :].isdigit():
                    col.prop(kb, "value", text=kb.name, slider=True)
                    shown += 1
                    if shown >= 10 and not show_all:
                        break


class PIXIE_FH_result(bpy.types.FileHandler):
    """Drop .pixie.npz files into the 3D viewport to import them."""

    bl_idname = "PIXIE_FH_result"
    bl_label = "PIXIE result"
    bl_import_operator = "pixie.import_result"
    # Blender 4.2 compares only the last extension, so ".pixie.npz" would never match there
    bl_file_extensions = ".npz"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


CLASSES = (PIXIE_PT_main, PIXIE_PT_rig, PIXIE_PT_shape, PIXIE_FH_result)
