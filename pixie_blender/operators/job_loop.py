"""The main-thread side of a background job in the preferences: a modal monitor with a progress bar
(Esc cancels), a ``bpy.app.timers`` function that keeps pumping after the monitor's window closed,
and the Cancel button. The backend install and the model-file download share it.

A job kind is described by a :class:`JobLoop`: its transient ``state`` (``job``, ``last``,
``monitoring`` and ``progress()``) and its ``pump()``, which drives the job once and returns True
when no job runs. The operators are mixins: a module declares
``class PIXIE_OT_x_monitor(JobMonitor, bpy.types.Operator)`` with ``loop = LOOP``.
"""

from __future__ import annotations

from collections.abc import Callable

import bpy


def redraw_preferences(context=None) -> None:
    wm = (context or bpy.context).window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


class JobLoop:
    """One kind of background job, pumped by the monitor or by the fallback timer."""

    def __init__(self, state, pump: Callable[[], bool], interval: float):
        self.state = state
        self.pump = pump
        self.interval = interval
        # bpy.app.timers finds a function by identity: keep one bound method for its whole life.
        self.timer = self._tick

    def _tick(self):
        done = self.pump()
        if done:
            self.state.monitoring = False
        redraw_preferences()
        return None if done else self.interval

    def start_fallback_timer(self) -> None:
        """Keep the job going without a monitor (its window closed). The timer is persistent: the
        job belongs to the add-on, not to the file, so opening a file must not drop it (and bpy 4.2
        crashes at exit after a file load dropped a Python timer)."""
        if self.state.job is not None and not bpy.app.timers.is_registered(self.timer):
            self.state.monitoring = True
            bpy.app.timers.register(self.timer, first_interval=self.interval, persistent=True)

    def stop_timer(self) -> None:
        if bpy.app.timers.is_registered(self.timer):
            bpy.app.timers.unregister(self.timer)


class JobMonitor:
    """Modal TIMER operator mixin: pumps ``loop``, shows its progress, Esc cancels the job; reports
    the finished job's ``text`` (an error when its ``state`` is "failed")."""

    loop: JobLoop
    _timer = None

    def invoke(self, context, event):
        if self.loop.state.job is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(self.loop.interval, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 1000)
        self.loop.state.monitoring = True
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        state = self.loop.state
        if event.type == "ESC" and event.value == "PRESS" and state.job is not None:
            state.job.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        progress = state.progress()
        done = self.loop.pump()
        if progress is not None:
            context.window_manager.progress_update(int(progress.fraction * 1000))
        redraw_preferences(context)
        if not done:
            return {"PASS_THROUGH"}
        self._stop(context)
        if state.last is not None:
            self.report({"ERROR"} if state.last.state == "failed" else {"INFO"}, state.last.text)
        return {"FINISHED"}

    def _stop(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self.loop.state.monitoring = False

    def cancel(self, context):  # the window closed while the job runs: a timer takes over
        self._stop(context)
        self.loop.start_fallback_timer()


class JobCancel:
    """Operator mixin: the Cancel button of ``loop``'s running job."""

    loop: JobLoop

    @classmethod
    def poll(cls, context):
        return cls.loop.state.job is not None

    def execute(self, context):
        self.loop.state.job.cancel()
        return {"FINISHED"}
