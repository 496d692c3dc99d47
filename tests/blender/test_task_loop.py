"""The task loop that Reconstruct from Image and Import Image Sequence share: one pump step (build on
done, a warning on cancel, an error on failure), the modal loop (events pass through, a TIMER pumps
and shows the progress in the status bar, Esc cancels, the finished task is reported), closing the
window (the task stops, nothing is built) and the Cancel button."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


class _Task:
    """A client task as the loop sees it: ``step()`` is True once it has finished."""

    def __init__(self):
        self.cancelled = False
        self.finished = False
        self.steps = 0
        self.progress = SimpleNamespace(fraction=0.25, state="running", text="image 1 of 4", message="")

    def step(self) -> bool:
        self.steps += 1
        return self.finished

    def cancel(self):
        self.cancelled = True

    def finish(self, state: str, message: str) -> None:
        self.finished, self.progress.state, self.progress.message = True, state, message


@pytest.fixture
def task_loop(bpy_mod):
    from pixie_blender.operators import task_loop

    return task_loop


def _build(built):
    def build(context, progress):
        built.append(progress)
        return "INFO", f"{progress.message}: 1 avatar"

    return build


@pytest.mark.parametrize(
    ("final", "report"),
    [("done", ("INFO", "Done: 1 avatar")), ("cancelled", ("WARNING", "Cancelled")), ("failed", ("ERROR", "Failed"))],
)
def test_pump_builds_only_a_finished_done_task_and_records_the_report(task_loop, final, report):
    state, built = task_loop.TaskState(), []
    assert task_loop.pump_task(state, None, _build(built))  # no task: nothing runs
    task = state.task = _Task()
    assert not task_loop.pump_task(state, None, _build(built)) and state.task is task and not built
    assert state.progress() is task.progress
    task.finish(final, final.capitalize())
    assert task_loop.pump_task(state, None, _build(built))
    assert state.task is None and state.last is task.progress and state.progress() is task.progress
    assert built == ([task.progress] if final == "done" else [])
    assert state.report == report


class _WorkspaceRecorder:
    def __init__(self):
        self.texts = []

    def status_text_set(self, text):
        self.texts.append(text)


class _WindowManager:
    def __init__(self):
        self.updates, self.ended, self.windows = [], 0, []

    def progress_update(self, value):
        self.updates.append(value)

    def progress_end(self):
        self.ended += 1

    def event_timer_remove(self, timer):
        pass


def _operator(task_loop, state, built):
    reports = []

    class Op(task_loop.TaskModal):
        task_state = state

        def _pump(self, context):
            return task_loop.pump_task(state, context, _build(built))

        def report(self, level, text):
            reports.append((level, text))

    return Op(), reports


@pytest.mark.parametrize(("final", "result"), [("done", {"FINISHED"}), ("failed", {"CANCELLED"})])
def test_modal_pumps_on_timer_shows_progress_cancels_on_esc_and_reports(task_loop, final, result):
    state, built = task_loop.TaskState(), []
    op, reports = _operator(task_loop, state, built)
    task = state.task = _Task()
    ctx = SimpleNamespace(window_manager=_WindowManager(), workspace=_WorkspaceRecorder())

    def event(kind):
        return SimpleNamespace(type=kind, value="PRESS")

    assert op._task_modal(ctx, event("MOUSEMOVE")) == {"PASS_THROUGH"} and task.steps == 0  # the scene stays usable
    assert op._task_modal(ctx, event("TIMER")) == {"PASS_THROUGH"} and task.steps == 1
    assert ctx.window_manager.updates == [250]
    assert ctx.workspace.texts == ["PIXIE: image 1 of 4 (Esc to cancel)"]
    assert op._task_modal(ctx, event("ESC")) == {"RUNNING_MODAL"} and task.cancelled and state.task is task
    task.finish(final, f"It {final}")
    assert op._task_modal(ctx, event("TIMER")) == result
    assert state.task is None and ctx.window_manager.ended == 1
    assert ctx.workspace.texts[-1] is None  # the status bar is given back
    level = {"done": "INFO", "failed": "ERROR"}[final]
    assert reports == [({level}, f"It {final}: 1 avatar" if final == "done" else f"It {final}")]
    assert built == ([task.progress] if final == "done" else [])


def test_closing_the_window_stops_the_task_and_builds_nothing(task_loop):
    state, built = task_loop.TaskState(), []
    op, _ = _operator(task_loop, state, built)
    task = state.task = _Task()
    ctx = SimpleNamespace(window_manager=_WindowManager(), workspace=None)
    op._end_modal(ctx)
    op._cancel_task()
    assert task.cancelled and state.task is None and not built
    assert task_loop.pump_task(state, ctx, _build(built)) and not built


def test_cancel_button_polls_and_cancels_the_running_task(task_loop):
    state = task_loop.TaskState()
    cancel = type("Cancel", (task_loop.TaskCancel,), {"task_state": state})
    assert not cancel.poll(None)
    task = state.task = _Task()
    assert cancel.poll(None)
    assert cancel.execute(cancel(), None) == {"FINISHED"} and task.cancelled


def test_both_operators_use_the_shared_task_loop_with_their_own_state(bpy_mod, task_loop):
    """Reconstruct and Import Image Sequence each drive their own task through the shared loop: the
    registered Cancel operators poll the right state."""
    from pixie_blender.operators import import_sequence, reconstruct

    assert reconstruct.STATE is not import_sequence.STATE
    for mod, op, cancel, idname in (
        (reconstruct, "PIXIE_OT_reconstruct", "PIXIE_OT_reconstruct_cancel", "reconstruct_cancel"),
        (import_sequence, "PIXIE_OT_import_sequence", "PIXIE_OT_import_sequence_cancel", "import_sequence_cancel"),
    ):
        assert isinstance(mod.STATE, task_loop.TaskState)
        assert issubclass(getattr(mod, op), task_loop.TaskModal) and getattr(mod, op).task_state is mod.STATE
        assert issubclass(getattr(mod, cancel), task_loop.TaskCancel) and getattr(mod, cancel).task_state is mod.STATE
        registered = getattr(bpy_mod.ops.pixie, idname)
        assert not registered.poll()
        task = mod.STATE.task = _Task()
        try:
            assert registered.poll() and registered() == {"FINISHED"} and task.cancelled
        finally:
            mod.STATE.task = None


@pytest.mark.parametrize(
    ("module", "operator", "progress_class", "extra"),
    [
        ("reconstruct", "PIXIE_OT_reconstruct", "ReconstructProgress", {}),
        ("import_sequence", "PIXIE_OT_import_sequence", "SequenceProgress", {"_computing": True}),
    ],
)
def test_each_operators_modal_runs_its_task_through_the_loop(
    bpy_mod, task_loop, module, operator, progress_class, extra
):
    """The operators' own ``modal``: other events pass through (the scene stays editable), a TIMER
    steps the job, Esc cancels it; the cancelled job is reported and nothing is built."""
    import importlib

    from pixie_blender.client import reconstruct as rec_client
    from pixie_blender.client import sequence as seq_client

    mod = importlib.import_module(f"pixie_blender.operators.{module}")
    progress_type = getattr(rec_client if progress_class == "ReconstructProgress" else seq_client, progress_class)
    task = _Task()
    task.progress = progress_type(state="running", total=2, text="Step 1 of 2")
    mod.STATE.__init__()
    mod.STATE.task = task
    cls = getattr(mod, operator)
    reports = []
    op = SimpleNamespace(
        _timer=None,
        task_state=cls.task_state,
        report=lambda level, text: reports.append((level, text)),
        _end_modal=lambda ctx: None,
        **extra,
    )
    op._task_modal = lambda ctx, ev: cls._task_modal(op, ctx, ev)
    op._pump = lambda ctx: cls._pump(op, ctx)
    ctx = SimpleNamespace(window_manager=bpy_mod.context.window_manager, workspace=None)

    def event(kind):
        return SimpleNamespace(type=kind, value="PRESS")

    try:
        assert cls.modal(op, ctx, event("MOUSEMOVE")) == {"PASS_THROUGH"} and task.steps == 0
        assert cls.modal(op, ctx, event("TIMER")) == {"PASS_THROUGH"} and mod.STATE.task is task
        assert cls.modal(op, ctx, event("ESC")) == {"RUNNING_MODAL"} and task.cancelled
        task.finish("cancelled", "Cancelled; nothing was imported.")
        assert cls.modal(op, ctx, event("TIMER")) == {"FINISHED"}
        assert mod.STATE.task is None and reports == [({"WARNING"}, "Cancelled; nothing was imported.")]
        assert mod.STATE.rigs == []
    finally:
        mod.STATE.__init__()
