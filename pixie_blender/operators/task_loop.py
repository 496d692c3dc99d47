"""The main-thread side of a backend task that ends by building something in the scene
(Reconstruct from Image, Import Image Sequence): the task's transient state, one non-blocking pump
step, the modal loop (progress bar, status text, Esc cancels) and the Cancel button.

A client task (:class:`..client.reconstruct.ReconstructTask`, :class:`..client.sequence.SequenceTask`)
has ``step()`` (True once it has finished), ``cancel()`` and ``progress`` (``state``, ``message``,
``text``, ``fraction``). When it finishes, the operator's ``build(context, progress)`` turns the
downloaded result into avatars or rigs and returns the ``(level, sentence)`` to report.

Headless code and tests have no event loop: they call :func:`pump_task` (through the operator
module's ``pump``) in a loop. The preferences' install and download jobs use :mod:`.job_loop`.
"""

from __future__ import annotations

from collections.abc import Callable

import bpy


class TaskState:
    """One operator's running task and what its last run left (module level: never saved)."""

    def __init__(self):
        self.task = None  #: the running client task
        self.last = None  #: the finished task's progress
        self.report: tuple[str, str] | None = None  #: ("INFO" | "WARNING" | "ERROR", sentence) of the last run
        self.rigs: list[str] = []  #: names of the armatures the last run built
        self.undo_steps = 0  #: undo steps pushed by builds in this session (one per finished run)

    def progress(self):
        return self.task.progress if self.task is not None else self.last


def pump_task(state: TaskState, context, build: Callable) -> bool:
    """One non-blocking step of ``state``'s task; True when none runs (any more).

    When the task has just finished, this calls ``build(context, progress)`` for a done task and
    records ``state.report`` (a cancelled task is a warning, a failed one an error)."""
    task = state.task
    if task is None:
        return True
    if not task.step():
        return False
    state.task, state.last = None, task.progress
    p = task.progress
    if p.state == "done":
        state.report = build(context, p)
    elif p.state == "cancelled":
        state.report = ("WARNING", p.message)
    else:
        state.report = ("ERROR", p.message)
    return True


def status_text(progress) -> str:
    return f"PIXIE: {progress.text} (Esc to cancel)"


def redraw(context=None) -> None:
    """Redraw the sidebars and the preferences, which show the task's progress."""
    wm = (context or bpy.context).window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


class TaskModal:
    """Modal TIMER operator mixin for a backend task: the scene stays editable, the status bar and the
    progress bar follow the task, Esc cancels it, and closing the window stops it (nothing is built).

    A subclass sets ``task_state`` and defines ``_pump(context) -> bool``."""

    task_state: TaskState
    _timer = None

    def _pump(self, context) -> bool:
        raise NotImplementedError

    def _start_task(self, context, start: Callable[[], object], interval: float) -> set[str]:
        """Start the task (``start()``: connects to the backend and submits the job) and run modal.

        A backend that cannot be reached is one error, kept as the task's report for the sidebar.
        Headless (no window) the caller drives the pump."""
        from ..client.reconstruct import ConnectError

        try:
            start()
        except ConnectError as exc:
            self.task_state.report = ("ERROR", str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.window is None or bpy.app.background:
            return {"FINISHED"}  # headless: the caller drives the pump
        return self._begin_modal(context, interval)

    def _begin_modal(self, context, interval: float, steps: int = 1000) -> set[str]:
        wm = context.window_manager
        self._timer = wm.event_timer_add(interval, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, steps)
        return {"RUNNING_MODAL"}

    def _end_modal(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def _task_modal(self, context, event) -> set[str]:
        state = self.task_state
        if event.type == "ESC" and event.value == "PRESS" and state.task is not None:
            state.task.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the scene stays editable while the backend works
        finished = self._pump(context)
        progress = state.progress()
        if progress is not None:
            context.window_manager.progress_update(int(progress.fraction * 1000))
            if context.workspace is not None:
                context.workspace.status_text_set(None if finished else status_text(progress))
        redraw(context)
        if not finished:
            return {"PASS_THROUGH"}
        self._end_modal(context)
        if state.report is not None:
            level, text = state.report
            self.report({level}, text)
        return {"FINISHED"} if state.report and state.report[0] != "ERROR" else {"CANCELLED"}

    def _cancel_task(self) -> None:
        state = self.task_state
        if state.task is not None:
            state.task.cancel()
            state.task = None


class TaskCancel:
    """Operator mixin: the sidebar's Cancel button of ``task_state``'s running task."""

    task_state: TaskState

    @classmethod
    def poll(cls, context):
        return cls.task_state.task is not None

    def execute(self, context):
        self.task_state.task.cancel()
        return {"FINISHED"}
