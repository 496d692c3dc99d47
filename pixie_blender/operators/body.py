"""Avatar tools: update joints from the shape, re-bake pose correctives, use the photo camera."""

from __future__ import annotations

import bpy


def _active_avatar(context):
    from ..scene.avatar import avatar_parts

    return avatar_parts(context.active_object)


def _selected_rigs(context):
    from ..scene.avatar import avatar_parts

    rigs = []
    for ob in list(context.selected_objects) + [context.active_object]:
        parts = avatar_parts(ob)
        if parts is not None and parts[0] not in rigs:
            rigs.append(parts[0])
    return rigs


class PIXIE_OT_update_joints(bpy.types.Operator):
    """Move the rest bones of the selected PIXIE avatars to the joints of their current shape keys"""

    bl_idname = "pixie.update_joints"
    bl_label = "Update Joints"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_avatar(context) is not None

    def execute(self, context):
        from ..scene import joint_follow

        rigs = [r for r in _selected_rigs(context) if joint_follow.is_avatar_rig(r)]
        if not rigs:
            self.report({"ERROR"}, "No PIXIE avatar with a joint regressor selected")
            return {"CANCELLED"}
        n = joint_follow.update_joints(context, rigs)
        if n == 0:
            self.report({"ERROR"}, "The avatar's armature must be visible in this view layer")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Updated the joints of {n} avatar{'s' if n != 1 else ''}")
        return {"FINISHED"}


class PIXIE_OT_bake_pose_correctives(bpy.types.Operator):
    """Recompute the 'PoseCorrectives' shape key for the current pose (needs the model package
    next to the result file or in the add-on cache)"""

    bl_idname = "pixie.bake_pose_correctives"
    bl_label = "Bake Pose Correctives"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_avatar(context) is not None

    def execute(self, context):
        from ..io.schema import PixieFormatError
        from ..scene import correctives, template_cache

        arm, body = _active_avatar(context)
        try:
            package = correctives.locate_package(arm, [template_cache.default_cache_dir()])
            peak = correctives.bake(arm, body, package)
        except PixieFormatError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        arm["pixie_pose_correctives"] = "BAKED"
        self.report({"INFO"}, f"Pose correctives baked (largest offset {peak * 1000:.1f} mm)")
        return {"FINISHED"}


class PIXIE_OT_use_photo_camera(bpy.types.Operator):
    """Make the avatar's photo camera the scene camera, with the photo's resolution"""

    bl_idname = "pixie.use_photo_camera"
    bl_label = "Use Photo Camera"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        from ..scene.avatar import avatar_camera

        parts = _active_avatar(context)
        return parts is not None and avatar_camera(parts[0]) is not None

    def execute(self, context):
        from ..scene import camera
        from ..scene.avatar import avatar_camera

        arm, _body = _active_avatar(context)
        camera.use_camera(context.scene, avatar_camera(arm))
        return {"FINISHED"}


CLASSES = (PIXIE_OT_update_joints, PIXIE_OT_bake_pose_correctives, PIXIE_OT_use_photo_camera)
