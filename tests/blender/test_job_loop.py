"""The job loop that the backend install and the model-file download share: the modal monitor
(events pass through, a TIMER pumps, Esc cancels, the finished job is reported), the fallback timer
that takes over when the monitor's window closes, and the Cancel button's poll."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


class _Job:
    def __init__(self):
        self.cancelled = False
        self.finished = False
        self.progress = SimpleNamespace(fraction=0.25, state="running", text="working")

    def cancel(self):
        self.cancelled = True


class _State:
    def __init__(self):
        self.job, self.last, self.monitoring = None, None, False

    def progress(self):
        return self.job.progress if self.job is not None else self.last


def _loop(job_loop):
    state = _State()
    pumped = []

    def pump() -> bool:
        pumped.append(1)
        job = state.job
        if job is None:
            return True
        if not job.finished:
            return False
        state.job, state.last = None, job.progress
        return True

    return job_loop.JobLoop(state, pump, 0.05), state, pumped


@pytest.fixture
def job_loop(bpy_mod):
    from pixie_blender.operators import job_loop

    return job_loop


@pytest.mark.parametrize("final", ["done", "failed"])
def test_monitor_pumps_on_timer_cancels_on_esc_and_reports(bpy_mod, job_loop, final):
    loop, state, pumped = _loop(job_loop)
    job = state.job = _Job()
    reports, stops = [], []
    op = SimpleNamespace(loop=loop, _timer=None, report=lambda level, text: reports.append((level, text)),
                         _stop=lambda ctx: stops.append(1))
    ctx = SimpleNamespace(window_manager=bpy_mod.context.window_manager)

    def event(kind):
        return SimpleNamespace(type=kind, value="PRESS")

    modal = job_loop.JobMonitor.modal
    assert modal(op, ctx, event("MOUSEMOVE")) == {"PASS_THROUGH"} and not pumped  # the scene stays usable
    assert modal(op, ctx, event("TIMER")) == {"PASS_THROUGH"} and len(pumped) == 1
    assert modal(op, ctx, event("ESC")) == {"RUNNING_MODAL"} and job.cancelled and state.job is job
    job.finished, job.progress.state, job.progress.text = True, final, f"the job is {final}"
    assert modal(op, ctx, event("TIMER")) == {"FINISHED"}
    assert stops == [1] and state.job is None
    assert reports == [({"ERROR"} if final == "failed" else {"INFO"}, f"the job is {final}")]


def test_fallback_timer_keeps_pumping_until_the_job_ends(bpy_mod, job_loop):
    loop, state, pumped = _loop(job_loop)
    loop.start_fallback_timer()  # no job: nothing to keep going
    assert not bpy_mod.app.timers.is_registered(loop.timer) and not state.monitoring

    job = state.job = _Job()
    try:
        loop.start_fallback_timer()
        loop.start_fallback_timer()  # once only
        assert bpy_mod.app.timers.is_registered(loop.timer) and state.monitoring
        assert loop.timer() == 0.05 and state.monitoring  # headless: tick it by hand
        job.finished = True
        assert loop.timer() is None and not state.monitoring and state.last is job.progress
    finally:
        loop.stop_timer()
    assert not bpy_mod.app.timers.is_registered(loop.timer)


def test_cancel_button_polls_the_running_job(bpy_mod, job_loop):
    loop, state, _ = _loop(job_loop)
    cancel = type("Cancel", (job_loop.JobCancel,), {"loop": loop})
    assert not cancel.poll(None)
    job = state.job = _Job()
    assert cancel.poll(None)
    assert cancel.execute(SimpleNamespace(loop=loop), None) == {"FINISHED"} and job.cancelled


def test_both_job_kinds_use_the_shared_loop(bpy_mod, job_loop):
    from pixie_blender.operators import backend, data_setup

    for mod, monitor, cancel in ((backend, "PIXIE_OT_backend_monitor", "PIXIE_OT_backend_cancel"),
                                 (data_setup, "PIXIE_OT_data_monitor", "PIXIE_OT_data_cancel")):
        assert getattr(mod, monitor).loop is mod.LOOP and getattr(mod, cancel).loop is mod.LOOP
        assert mod.LOOP.state is mod.STATE and mod.LOOP.pump is mod.pump
        assert issubclass(getattr(mod, monitor), job_loop.JobMonitor)


def test_the_fallback_timer_survives_opening_a_file(bpy_mod, job_loop):
    """A job keeps running when the user opens or starts a file (a non-persistent timer would be
    dropped by the load, leaving the job unpumped, and bpy 4.2 then crashes at exit)."""
    loop, state, _ = _loop(job_loop)
    state.job = _Job()
    try:
        loop.start_fallback_timer()
        bpy_mod.ops.wm.read_homefile(use_empty=True)
        assert bpy_mod.app.timers.is_registered(loop.timer)
    finally:
        loop.stop_timer()
