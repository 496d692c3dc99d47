"""``pixie.import_sequence``: Import Image Sequence, one animated rig per person, from

* **a video file or a folder of frames** (or one frame of the folder): the operator runs the
  backend's sequence job through the same client as Reconstruct from Image (the local backend,
  started and kept warm through the supervisor, or the Remote Backend of the preferences),
  non-blocking: a :class:`..client.sequence.SequenceTask` runs on a timer, the status bar and the
  sidebar show frame k of n, frames/s and the time left, Esc or *Cancel* stops it, and the scene
  stays editable. When the job is done, the downloaded sequence file is imported with the sequence
  importer in one undo step. Results are kept in ``<blend name>_pixie/`` next to the .blend (the
  sequence file, a source record of the local clip, the model package), so importing that
  ``.pixie-seq.npz`` again computes nothing. Any failure is one message and leaves the scene as it
  was.
* **a finished sequence result** (``.pixie-seq.npz``, computed here or on a GPU server): imported
  directly. With a window it runs as a modal operator, one short step per timer tick (reading and
  planning, building the rigs, keying each track), Esc cancels and removes what was built.

Headless (no event loop) a direct import runs to the end in ``execute``; a computed one returns
once the job has started, and the caller drives :func:`pump` (one non-blocking step) in a loop.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..client.reconstruct import IMAGE_EXTENSIONS
from ..client.sequence import VIDEO_EXTENSIONS, SequenceProgress, SequenceRequest, SequenceTask
from ..preferences import get_preferences
from ..version import ADDON_VERSION
from .task_loop import TaskCancel, TaskModal, TaskState, pump_task

SEQUENCE_PLACEMENT_ITEMS = (
    ("PHOTO", "As in Video", "Root translation keyed: the people move as in the clip, seen through one camera"),
    ("IN_PLACE", "In Place", "No root translation: the rigs animate on the spot, side by side"),
)
SEQUENCE_CORRECTIVE_ITEMS = (
    ("NONE", "None", "No pose correctives (fast playback)"),
    ("LIVE", "Live", "486 'Pose###' keys driven by the bone rotations (exact, slower playback)"),
)
TIMER_INTERVAL = 0.1
UNDO_MESSAGE = "Import Image Sequence"
ACTION = "Import Image Sequence"


class _State(TaskState):
    """The running sequence job (module level: never saved)."""

    def __init__(self):
        super().__init__()
        self.options = None  #: the SequenceImportOptions the finished job is imported with


STATE = _State()


def source_kind(path: Path) -> str:
    """``result`` (a ``.npz`` sequence file), ``frames`` (a folder, or an image of one) or ``video``."""
    name = path.name.lower()
    if name.endswith(".npz"):
        return "result"
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS or not name:
        return "frames"
    return "video"


def start_task(context, source: Path, import_options, fps: float = 0.0) -> SequenceTask:
    """Start the backend's sequence job on ``source`` (returns at once); raises ConnectError before
    anything starts."""
    from ..scene import template_cache
    from . import reconstruct as rec

    prefs = get_preferences(context)
    connector = rec.make_connector(context)
    if getattr(connector, "local", False):
        connector.action = ACTION
    request = SequenceRequest(
        source=Path(source),
        results_dir=rec.results_dir(),
        cache_dir=template_cache.default_cache_dir(),
        detector=prefs.reconstruct_detector if prefs is not None else "auto",
        fps=fps,
        addon_version=ADDON_VERSION,
    )
    task = SequenceTask(connector, request)
    STATE.task, STATE.last, STATE.report, STATE.rigs = task, None, None, []
    STATE.options = import_options
    return task


def _build(context, progress: SequenceProgress, push_undo: bool = True) -> tuple[str, str]:
    """Import the downloaded sequence file (main thread, one undo step, all or nothing)."""
    from ..io.schema import PixieFormatError
    from ..scene.sequence import SequenceImport

    result = progress.result
    try:
        rep = SequenceImport(context, result.path, STATE.options).run()
    except (PixieFormatError, ValueError) as exc:
        return "ERROR", f"The sequence could not be imported: {exc}"
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected Blender state: the import rolled back
        traceback.print_exc()
        return "ERROR", f"Building the rigs failed ({type(exc).__name__}: {exc}); nothing was imported"
    STATE.rigs = [r.name for r in rep.rigs]
    if push_undo and bpy.ops.ed.undo_push(message=UNDO_MESSAGE) == {"FINISHED"}:
        STATE.undo_steps += 1
    n = len(rep.rigs)
    text = (
        f"{progress.message}: {n} animated rig{'s' if n != 1 else ''} ({rep.keyed_frames} keyed frames) "
        f"in {progress.seconds:.1f} s"
    )
    warnings = [f"{frame}: {msg}" if frame not in msg else msg for frame, _code, msg in progress.errors[:2]]
    warnings += progress.warnings[:2] + rep.warnings
    if warnings:
        return "WARNING", text + ". " + "; ".join(warnings[:3])
    return "INFO", text


def pump(context=None, push_undo: bool = True) -> bool:
    """One non-blocking step of the running sequence job; True when none runs (any more). When the
    job has finished, this imports its result (or records the failure): ``STATE.report``, and
    pushes one undo step (``push_undo``; the modal operator's own step is that one)."""
    return pump_task(STATE, context or bpy.context, lambda c, p: _build(c, p, push_undo))


class PIXIE_OT_import_sequence(TaskModal, bpy.types.Operator, ImportHelper):
    """Import an image sequence: a video file or a folder of frames (reconstructed and tracked by the
    backend; the scene stays editable, Esc cancels), or a finished PIXIE sequence result; one
    smoothed, animated rig per person, with body, hands and face"""

    bl_idname = "pixie.import_sequence"
    bl_label = "Import Image Sequence"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(
        default=";".join(
            ["*.pixie-seq.npz", *(f"*{e}" for e in VIDEO_EXTENSIONS), *(f"*{e}" for e in IMAGE_EXTENSIONS)]
        ),
        options={"HIDDEN"},
    )
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    fps: FloatProperty(
        name="Frame Rate",
        default=0.0,
        min=0.0,
        max=1000.0,
        description="Frame rate of a folder of frames (0: 30 fps); a video's own rate is used when it states one",
    )
    smoothing: FloatProperty(
        name="Smoothing",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="Temporal smoothing strength (zero-phase One-Euro filter; 0 keys the raw per-frame "
        "results). The file keeps the raw results: re-import to change it",
    )
    placement: EnumProperty(name="Placement", items=SEQUENCE_PLACEMENT_ITEMS, default="PHOTO")
    add_camera: BoolProperty(
        name="Camera", default=True, description="The clip's camera with its frames as background (as in video)"
    )
    place_on_ground: BoolProperty(name="Stand on Ground", default=True, description="Feet at the cursor's height")
    pose_correctives: EnumProperty(name="Pose Correctives", items=SEQUENCE_CORRECTIVE_ITEMS, default="NONE")
    frame_start: IntProperty(name="Start Frame", default=1, description="Scene frame of the clip's first frame")

    task_state = STATE
    _job = None
    _steps = None
    _computing = False

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.label(text="A video, a folder of frames, or a .pixie-seq.npz")
        for name in (
            "fps",
            "smoothing",
            "placement",
            "add_camera",
            "place_on_ground",
            "pose_correctives",
            "frame_start",
        ):
            layout.prop(self, name)

    def _source(self) -> Path | None:
        path = self.filepath
        if path and os.path.basename(path.rstrip("/\\")) and not path.endswith(("/", "\\")):
            return Path(path)
        if self.directory:
            return Path(self.directory)
        return Path(path) if path else None

    def _import_options(self, context):
        from ..scene.sequence import SequenceImportOptions

        prefs = get_preferences(context)
        return SequenceImportOptions(
            smoothing=self.smoothing,
            placement=self.placement,
            add_camera=self.add_camera,
            place_on_ground=self.place_on_ground,
            pose_correctives=self.pose_correctives,
            frame_start=self.frame_start,
            use_cache=True if prefs is None else prefs.use_template_cache,
        )

    def _fail(self, exc: BaseException) -> set[str]:
        from ..io.schema import PixieFormatError

        if isinstance(exc, (PixieFormatError, ValueError)):
            self.report({"ERROR"}, str(exc))
        else:  # a bug or an unexpected Blender state: nothing is left behind
            traceback.print_exc()
            self.report({"ERROR"}, f"PIXIE sequence import failed ({type(exc).__name__}: {exc}); nothing was imported")
        return {"CANCELLED"}

    def _finish(self) -> set[str]:
        rep = self._job.report
        for w in rep.warnings[:8]:
            self.report({"WARNING"}, w)
        n = len(rep.rigs)
        rigs = f"{n} animated rig{'s' if n != 1 else ''}"
        self.report({"INFO"}, f"Imported {rigs} ({rep.keyed_frames} keyed frames) in {rep.seconds:.2f} s")
        return {"FINISHED"}

    def execute(self, context):
        source = self._source()
        if source is None:
            self.report({"ERROR"}, "No video, folder of frames or sequence file given")
            return {"CANCELLED"}
        if source_kind(source) != "result":
            return self._compute(context, source)
        from ..scene.sequence import SequenceImport

        self._job = SequenceImport(context, str(source), self._import_options(context))
        if bpy.app.background or context.window is None:
            try:
                self._job.run()
            except Exception as exc:  # noqa: BLE001 - reported to the user, nothing left behind
                return self._fail(exc)
            return self._finish()
        # interactive: one step per timer tick, Esc cancels
        self._steps = self._job.steps()
        return self._begin_modal(context, 0.02, steps=100)

    def _compute(self, context, source: Path) -> set[str]:
        if STATE.task is not None:
            self.report({"ERROR"}, "An image sequence is already being computed")
            return {"CANCELLED"}
        if not source.exists():
            self.report({"ERROR"}, f"{source}: no such file or folder")
            return {"CANCELLED"}
        self._computing = True
        options = self._import_options(context)
        return self._start_task(context, lambda: start_task(context, source, options, self.fps), TIMER_INTERVAL)

    def modal(self, context, event):
        if self._computing:
            return self._task_modal(context, event)
        if event.type == "ESC":
            self._steps.close()
            self._job.rollback()
            self._end_modal(context)
            self.report({"WARNING"}, "Sequence import cancelled; nothing was imported")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            fraction, text = next(self._steps)
        except StopIteration:
            self._end_modal(context)
            return self._finish()
        except Exception as exc:  # noqa: BLE001 - the job has rolled back
            self._end_modal(context)
            return self._fail(exc)
        context.window_manager.progress_update(int(100 * fraction))
        if context.workspace is not None:
            context.workspace.status_text_set(f"PIXIE: {int(100 * fraction)} %, {text} (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def _pump(self, context) -> bool:
        return pump(context, push_undo=False)  # FINISHED pushes this operator's undo step

    def cancel(self, context):  # the window closed: stop the job, nothing is built
        self._end_modal(context)
        if self._computing:
            self._cancel_task()
        elif self._steps is not None:
            self._steps.close()
            self._job.rollback()


class PIXIE_OT_import_sequence_cancel(TaskCancel, bpy.types.Operator):
    """Stop computing the image sequence (nothing is imported)"""

    bl_idname = "pixie.import_sequence_cancel"
    bl_label = "Cancel Image Sequence"
    bl_options = {"INTERNAL"}

    task_state = STATE


def menu_import(self, context):
    self.layout.operator("pixie.import_sequence", text="PIXIE Image Sequence (video, frames, .pixie-seq.npz)")


def register_extra() -> None:
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister_extra() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    if STATE.task is not None:
        STATE.task.cancel()
    STATE.__init__()


CLASSES = (PIXIE_OT_import_sequence, PIXIE_OT_import_sequence_cancel)
