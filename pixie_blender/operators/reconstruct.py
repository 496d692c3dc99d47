"""Reconstruct from Image: photos in, one avatar per person in the scene, through the backend.

* ``pixie.reconstruct``: pick one or more images (file browser) or drop them onto the 3D viewport
  (``PIXIE_FH_images``). It starts a :class:`..client.reconstruct.ReconstructTask` and runs modal on
  a timer: the status bar and the sidebar show image k of n, the stage and the persons found; Esc
  or *Cancel* stops it; the scene stays editable. When the job is done it builds every person's
  avatar with the importer's builder in one undo step. Any failure gives one message and leaves
  the scene as it was.
* ``pixie.reconstruct_cancel``: the sidebar's Cancel.

The backend is the local one (started through the add-on's supervisor, kept warm, restarted when
it died) or the Remote Backend of the preferences. Results are kept in ``<blend name>_pixie/``
next to the saved .blend file (a temporary folder for an unsaved file): *Import Result* re-imports
them without computing again.

The job loop is the plain function :func:`pump` (one non-blocking step); the modal operator calls
it on each TIMER event, headless code and tests call it in a loop (there is no event loop there).
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path
from urllib.parse import urlsplit

import bpy
from bpy.props import CollectionProperty, StringProperty

from ..client import processes, supervisor
from ..client.reconstruct import (
    IMAGE_EXTENSIONS,
    LocalConnector,
    ReconstructProgress,
    ReconstructRequest,
    ReconstructTask,
    RemoteConnector,
)
from ..version import ADDON_VERSION
from . import backend as backend_ops
from .task_loop import TaskCancel, TaskModal, TaskState, pump_task

TIMER_INTERVAL = 0.1
UNDO_MESSAGE = "Reconstruct from Image"


STATE = TaskState()


# --------------------------------------------------------------------------------------------------
# Settings


def results_dir(blend: str | None = None) -> Path:
    """``<blend dir>/<blend name>_pixie`` for a saved file (default: the open one), else a folder in
    the system's temp folder."""
    blend = bpy.data.filepath if blend is None else blend
    if blend:
        p = Path(blend)
        return p.with_name(f"{p.stem}_pixie")
    return Path(tempfile.gettempdir()) / "pixie_blender_results"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def backend_args(prefs) -> list[str]:
    """``serve``'s arguments from the preferences (device, precision, data folder)."""
    args = ["serve"]
    if prefs is not None:
        args += ["--device", prefs.backend_device.lower(), "--precision", prefs.backend_precision]
        if prefs.data_dir.strip():
            args += ["--data-dir", bpy.path.abspath(prefs.data_dir.strip())]
    return args


def make_connector(context):
    """The remote connector (Remote Backend on), else the local one; a ConnectError says what is missing."""
    from ..client.reconstruct import ConnectError

    prefs = backend_ops.addon_preferences(context)
    if prefs is not None and prefs.remote_enabled:
        url = prefs.remote_url.strip()
        if not _is_loopback(url) and not bpy.app.online_access:
            raise ConnectError(
                "Blender's online access is off, and the remote backend is on another machine: allow "
                "it in Preferences > System > Network, or reach the backend through an SSH tunnel on "
                "127.0.0.1.",
                "offline",
            )
        return RemoteConnector(url, prefs.remote_token)
    python, isolated, source = backend_ops.effective_backend(context)
    if source == "none":
        raise ConnectError(
            "The backend is not installed: open Preferences > Add-ons > PIXIE and click Install Backend.",
            "not_installed",
        )
    command = supervisor.backend_command(python, *backend_args(prefs), isolated=isolated)
    env = processes.child_env(keep_pythonpath=not isolated)
    backend_ops.ensure_idle_timer()
    return LocalConnector(backend_ops.get_supervisor(), command, env)


def start_task(context, images: list[str]) -> ReconstructTask:
    """Start reconstructing ``images`` (returns at once); raises ConnectError before anything starts."""
    from ..scene import template_cache

    prefs = backend_ops.addon_preferences(context)
    connector = make_connector(context)
    request = ReconstructRequest(
        images=tuple(Path(p) for p in images),
        results_dir=results_dir(),
        cache_dir=template_cache.default_cache_dir(),
        detector=prefs.reconstruct_detector if prefs is not None else "auto",
        addon_version=ADDON_VERSION,
    )
    task = ReconstructTask(connector, request)
    STATE.task, STATE.last, STATE.report, STATE.rigs = task, None, None, []
    STATE.undo_steps = 0
    return task


# --------------------------------------------------------------------------------------------------
# The job loop


def _build(context, progress: ReconstructProgress) -> tuple[str, str]:
    """Build the avatars of the downloaded results (main thread, one undo step, all or nothing)."""
    from ..io.schema import PixieFormatError
    from ..preferences import get_preferences
    from ..scene.avatar import ImportOptions, build_many

    prefs = get_preferences(context)
    options = ImportOptions(
        pose_correctives=prefs.default_pose_correctives if prefs is not None else "BAKED",
        add_camera=prefs.default_add_camera if prefs is not None else True,
        placement=prefs.default_placement if prefs is not None else "PHOTO",
        use_cache=True if prefs is None else prefs.use_template_cache,
    )
    paths = [str(r.path) for r in progress.results]
    try:
        rep = build_many(context, paths, options)
    except PixieFormatError as exc:
        return "ERROR", f"The results could not be imported: {exc}"
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected Blender state: nothing is left behind
        traceback.print_exc()
        return "ERROR", f"Building the avatars failed ({type(exc).__name__}: {exc}); nothing was imported"
    STATE.rigs = [r.name for r in rep.rigs]
    if bpy.ops.ed.undo_push(message=UNDO_MESSAGE) == {"FINISHED"}:
        STATE.undo_steps += 1
    n = len(rep.rigs)
    text = f"{progress.message}: {n} avatar{'s' if n != 1 else ''} in {progress.seconds:.1f} s"
    warnings = [f"{img}: {msg}" if img not in msg else msg for img, _code, msg in progress.errors]
    warnings += rep.warnings
    if warnings:
        return "WARNING", text + ". " + "; ".join(warnings[:3])
    return "INFO", text


def pump(context=None) -> bool:
    """One non-blocking step of the running reconstruction; True when none runs (any more).

    When the task has finished, this builds the avatars (or records the failure): ``STATE.report``."""
    return pump_task(STATE, context or bpy.context, _build)


# --------------------------------------------------------------------------------------------------
# Operators


class PIXIE_OT_reconstruct(TaskModal, bpy.types.Operator):
    """Reconstruct every person in the chosen photos and build their avatars (runs in the background
    backend; the scene stays editable; Esc cancels)"""

    bl_idname = "pixie.reconstruct"
    bl_label = "Reconstruct from Image"
    bl_options = {"REGISTER"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(default=";".join(f"*{e}" for e in IMAGE_EXTENSIONS), options={"HIDDEN"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    task_state = STATE

    @classmethod
    def poll(cls, context):
        return STATE.task is None

    def _paths(self) -> list[str]:
        if self.files and self.directory:
            paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
            if paths:
                return paths
        return [self.filepath] if self.filepath else []

    def invoke(self, context, event):
        if self._paths():  # dropped onto the viewport (FileHandler): go
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        paths = self._paths()
        if not paths:
            self.report({"ERROR"}, "No image given")
            return {"CANCELLED"}
        bad = [p for p in paths if Path(p).suffix.lower() not in IMAGE_EXTENSIONS]
        if bad:
            self.report(
                {"ERROR"}, f"{Path(bad[0]).name}: not an image this add-on reads (JPEG, PNG, BMP, TIFF, WebP, GIF)"
            )
            return {"CANCELLED"}
        if STATE.task is not None:
            self.report({"ERROR"}, "A reconstruction is already running")
            return {"CANCELLED"}
        return self._start_task(context, lambda: start_task(context, paths), TIMER_INTERVAL)

    def _pump(self, context) -> bool:
        return pump(context)

    def modal(self, context, event):
        return self._task_modal(context, event)

    def cancel(self, context):  # the window closed: stop the job, nothing is built
        self._end_modal(context)
        self._cancel_task()


class PIXIE_OT_reconstruct_cancel(TaskCancel, bpy.types.Operator):
    """Stop the reconstruction (nothing is built; finished images stay in the results folder)"""

    bl_idname = "pixie.reconstruct_cancel"
    bl_label = "Cancel Reconstruction"
    bl_options = {"INTERNAL"}

    task_state = STATE


class PIXIE_OT_open_setup(bpy.types.Operator):
    """Open this add-on's preferences (Install Backend, Set up model files)"""

    bl_idname = "pixie.open_setup"
    bl_label = "Open PIXIE Set-up"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        try:
            bpy.ops.screen.userpref_show("INVOKE_DEFAULT")
            context.preferences.active_section = "ADDONS"
            bpy.ops.preferences.addon_show(module=backend_ops.ROOT_PACKAGE)
        except (RuntimeError, AttributeError) as exc:
            self.report({"ERROR"}, f"Open Edit > Preferences > Add-ons > PIXIE ({exc})")
            return {"CANCELLED"}
        return {"FINISHED"}


class PIXIE_FH_images(bpy.types.FileHandler):
    """Drop photos onto the 3D viewport to reconstruct the people in them."""

    bl_idname = "PIXIE_FH_images"
    bl_label = "PIXIE: reconstruct people"
    bl_import_operator = "pixie.reconstruct"
    bl_file_extensions = ";".join(e for e in IMAGE_EXTENSIONS if e not in (".jpe", ".jfif", ".pgm", ".pnm"))

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D" and STATE.task is None


CLASSES = (PIXIE_OT_reconstruct, PIXIE_OT_reconstruct_cancel, PIXIE_OT_open_setup, PIXIE_FH_images)


def register_extra() -> None:
    """Nothing starts at registration; the pair exists for the clean-up."""


def unregister_extra() -> None:
    if STATE.task is not None:
        STATE.task.cancel()
    STATE.__init__()
