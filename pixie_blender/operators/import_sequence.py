"""``pixie.import_sequence``: one animated rig per person from a sequence result (``.pixie-seq.npz``,
for example computed on a GPU server).

With a window the import runs as a modal operator: one short step per timer tick (reading and
planning, building the rigs, keying each track), progress in the status bar and the cursor, Esc
cancels and removes what was built. Headless (no event loop) and from scripts it runs to the end
in ``execute``.
"""

from __future__ import annotations

import traceback

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..preferences import get_preferences

SEQUENCE_PLACEMENT_ITEMS = (
    ("PHOTO", "As in Video", "Root translation keyed: the people move as in the clip, seen through one camera"),
    ("IN_PLACE", "In Place", "No root translation: the rigs animate on the spot, side by side"),
)
SEQUENCE_CORRECTIVE_ITEMS = (
    ("NONE", "None", "No pose correctives (fast playback)"),
    ("LIVE", "Live", "486 'Pose###' keys driven by the bone rotations (exact, slower playback)"),
)


class PIXIE_OT_import_sequence(bpy.types.Operator, ImportHelper):
    """Import a PIXIE image-sequence result: one smoothed, animated rig per person, with body,
    hands and face"""

    bl_idname = "pixie.import_sequence"
    bl_label = "Import Image Sequence"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.pixie-seq.npz", options={"HIDDEN"})

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

    _job = None
    _steps = None
    _timer = None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        for name in ("smoothing", "placement", "add_camera", "place_on_ground", "pose_correctives", "frame_start"):
            layout.prop(self, name)

    def _make_job(self, context):
        from ..scene.sequence import SequenceImport, SequenceImportOptions

        prefs = get_preferences(context)
        options = SequenceImportOptions(
            smoothing=self.smoothing,
            placement=self.placement,
            add_camera=self.add_camera,
            place_on_ground=self.place_on_ground,
            pose_correctives=self.pose_correctives,
            frame_start=self.frame_start,
            use_cache=True if prefs is None else prefs.use_template_cache,
        )
        return SequenceImport(context, self.filepath, options)

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
        if not self.filepath:
            self.report({"ERROR"}, "No sequence file given")
            return {"CANCELLED"}
        self._job = self._make_job(context)
        if bpy.app.background or context.window is None:
            try:
                self._job.run()
            except Exception as exc:  # noqa: BLE001 - reported to the user, nothing left behind
                return self._fail(exc)
            return self._finish()
        # interactive: one step per timer tick, Esc cancels
        self._steps = self._job.steps()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.02, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end_modal(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def modal(self, context, event):
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


def menu_import(self, context):
    self.layout.operator("pixie.import_sequence", text="PIXIE Image Sequence (.pixie-seq.npz)")


def register_extra() -> None:
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister_extra() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)


CLASSES = (PIXIE_OT_import_sequence,)
