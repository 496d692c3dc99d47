"""Sidebar (View3D ▸ N ▸ PIXIE): Reconstruct from Image with its progress, the backend and
model-file status and the main options; Import Result; the selected avatar's tools. And the
drag-and-drop file handler for results (the one for photos is in ``operators/reconstruct.py``)."""

from __future__ import annotations

import textwrap

import bpy

from ..preferences import get_preferences


def _parts(context):
    from ..scene.avatar import avatar_parts

    return avatar_parts(context.active_object)


def backend_status(context) -> tuple[str, str, str]:
    """(state, one line, icon) of the backend for the sidebar: "missing" (not installed), "remote",
    "stopped", "starting", "ready" (on device X), "busy" or "failed"."""
    from ..operators import backend as backend_ops
    from ..operators import import_sequence as seq
    from ..operators import reconstruct as rec

    prefs = backend_ops.addon_preferences(context)
    task = rec.STATE.task or seq.STATE.task
    if task is not None and task.progress.state not in ("connecting", "starting"):
        device = f" on {task.progress.device.upper()}" if task.progress.device else ""
        return "busy", f"Busy{device}", "SORTTIME"
    if prefs is not None and prefs.remote_enabled:
        return "remote", f"Remote backend: {prefs.remote_url}", "URL"
    sup = backend_ops.STATE.supervisor
    proc = sup.process if sup is not None else None
    if proc is not None:
        proc.poll()
        if proc.error is not None:
            return "failed", str(proc.error), "ERROR"
        if proc.alive and proc.handshake is not None:
            return "ready", f"Ready on {proc.handshake.device.upper() or 'CPU'}", "CHECKMARK"
        if proc.alive:
            return "starting", "Starting…", "SORTTIME"
    if backend_ops.effective_backend(context)[2] == "none":
        return "missing", "Not installed", "ERROR"
    return "stopped", "Stopped (starts on the first reconstruction)", "PAUSE"


def model_status(context) -> tuple[str, str] | None:
    """(icon, line) about the model files, from the last check (None: not checked yet)."""
    from ..operators import data_setup

    status = data_setup.STATE.status
    if status is None:
        return None
    if status.complete:
        return ("CHECKMARK", "Model files: ready" + (" (synthetic)" if status.synthetic else ""))
    missing = [a.filename for a in status.assets if not a.present and a.need == "required"]
    return ("ERROR", "Missing model files: " + ", ".join(missing))


def draw_reconstruct(layout, context) -> None:
    """Reconstruct from Image and Import Image Sequence (each with its progress, then its last
    message), the backend and model-file status, the main options."""
    from ..operators import backend as backend_ops
    from ..operators import reconstruct as rec

    prefs = get_preferences(context)
    box = layout.box()
    draw_task(box, rec.STATE, "pixie.reconstruct", "Reconstruct from Image", "OUTLINER_OB_ARMATURE", 1.4)
    draw_sequence(box, context)

    state, line, icon = backend_status(context)
    col = box.column(align=True)
    col.label(text=f"Backend: {line}"[:120], icon=icon)
    row = col.row(align=True)
    if state == "missing":
        row.operator("pixie.backend_install", text="Install Backend", icon="IMPORT")
    else:
        sub = row.row(align=True)
        sub.enabled = backend_ops.STATE.check is None and backend_ops.STATE.job is None and state != "remote"
        sub.operator("pixie.backend_check", text="Check Backend", icon="FILE_REFRESH")
    row.operator("pixie.open_setup", text="Set-up", icon="PREFERENCES")
    files = model_status(context)
    if files is None:
        col.operator("pixie.data_check", text="Check Model Files", icon="FILE_REFRESH")
    else:
        sub = col.column(align=True)
        sub.alert = files[0] == "ERROR"
        for i, part in enumerate(textwrap.wrap(files[1], 48)[:3]):
            sub.label(text=part, icon=files[0] if i == 0 else "BLANK1")
        if files[0] == "ERROR":
            col.operator("pixie.open_setup", text="Set up model files", icon="URL")
    if prefs is not None:
        opts = box.column(align=True)
        opts.use_property_split = True
        opts.use_property_decorate = False
        opts.prop(prefs, "reconstruct_detector")
        sub = opts.column(align=True)
        sub.active = not prefs.remote_enabled
        sub.prop(prefs, "backend_device")
        sub.prop(prefs, "backend_precision")


def draw_sequence(layout, context) -> None:
    """Import Image Sequence (a video, a folder of frames or a sequence file) under Reconstruct from
    Image, its progress with Cancel while the backend computes it, then the last run's message."""
    from ..operators import import_sequence as seq

    draw_task(layout.column(align=True), seq.STATE, "pixie.import_sequence", "Import Image Sequence", "SEQUENCE", 1.2)


def draw_task(layout, state, operator: str, text: str, icon: str, scale_y: float) -> None:
    """An operator that runs a backend task (``state``: its :class:`..operators.task_loop.TaskState`):
    its button (off while the task runs), then the progress bar with the task's Cancel button
    (``<operator>_cancel``) while it runs, or the last run's message."""
    running = state.task is not None
    row = layout.row(align=True)
    row.scale_y = scale_y
    row.enabled = not running
    row.operator(operator, icon=icon, text=text)
    progress = state.progress()
    if running and progress is not None:
        row = layout.row(align=True)
        row.progress(factor=progress.fraction, type="BAR", text=progress.text[:120])
        row.operator(f"{operator}_cancel", text="", icon="CANCEL")
    elif state.report is not None:
        level, message = state.report
        col = layout.column(align=True)
        col.alert = level == "ERROR"
        first_icon = {"ERROR": "ERROR", "WARNING": "INFO"}.get(level, "CHECKMARK")
        for i, line in enumerate(textwrap.wrap(message, 48)[:6]):
            col.label(text=line, icon=first_icon if i == 0 else "BLANK1")


class PIXIE_PT_main(bpy.types.Panel):
    bl_idname = "PIXIE_PT_main"
    bl_label = "PIXIE"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PIXIE"

    def draw(self, context):
        layout = self.layout
        draw_reconstruct(layout, context)
        layout.operator("pixie.import_result", icon="IMPORT", text="Import Result")
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
