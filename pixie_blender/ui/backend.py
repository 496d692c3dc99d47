"""The "Backend" section of the add-on preferences.

Status (not installed, installing with progress and Cancel, installed with its versions, failed
with the last log lines), the Install Backend / Check Backend / Remove buttons, and the settings:
where to install and from which Python, the torch build, the idle timeout, the user's own
environment (Backend Python) and the remote backend. Drawing never waits: checks run on threads.
"""

from __future__ import annotations

import textwrap

import bpy

from ..client import install_plan
from ..operators import backend as ops
from ..version import ADDON_VERSION


def _wrap(layout, text: str, width: int, *, icon: str = "NONE", alert: bool = False) -> None:
    col = layout.column(align=True)
    col.alert = alert
    for i, line in enumerate(textwrap.wrap(text, width=width) or [""]):
        col.label(text=line, icon=icon if i == 0 else ("BLANK1" if icon != "NONE" else "NONE"))


def _chars(context) -> int:
    region = getattr(context, "region", None)
    width = getattr(region, "width", 0) or 700
    scale = getattr(getattr(getattr(context, "preferences", None), "view", None), "ui_scale", 1.0) or 1.0
    return max(40, int(width / (7.0 * scale)) - 8)


def status(context) -> tuple[str, str, str]:
    """(state, one line, icon) of the backend: "installing", "remote", "own", "installed",
    "failed" or "missing"."""
    prefs = ops.addon_preferences(context)
    progress = ops.STATE.progress()
    if ops.STATE.job is not None:
        return "installing", progress.text, "SORTTIME"
    if prefs is not None and prefs.remote_enabled:
        return "remote", f"Remote backend at {prefs.remote_url}", "URL"
    if prefs is not None and prefs.backend_python.strip():
        return "own", f"Your own environment: {prefs.backend_python.strip()}", "CONSOLE"
    found = ops.installed(context)
    if found is not None:
        return "installed", f"Installed: {found.summary}", "CHECKMARK"
    if progress is not None and progress.state == "failed":
        return "failed", "The last install failed", "ERROR"
    return "missing", "Not installed: click Install Backend", "INFO"


def draw_preferences(layout, context, prefs) -> None:
    """Draw the section into ``layout`` (a box); ``prefs`` holds the properties."""
    ops.pump_check()
    width = _chars(context)
    state, line, icon = status(context)
    running = ops.STATE.job is not None
    checking = ops.STATE.check is not None

    layout.label(text="Backend", icon="PREFERENCES")
    _wrap(layout, line, width, icon=icon, alert=state == "failed")

    row = layout.row(align=True)
    row.scale_y = 1.3
    sub = row.row(align=True)
    sub.enabled = not running
    sub.operator(
        "pixie.backend_install", text="Reinstall Backend" if state == "installed" else "Install Backend", icon="IMPORT"
    )
    sub = row.row(align=True)
    sub.enabled = not running and not checking and state in ("installed", "own")
    sub.operator("pixie.backend_check", text="Checking…" if checking else "Check Backend", icon="FILE_REFRESH")
    if state == "installed":
        sub = row.row(align=True)
        sub.enabled = not running
        sub.operator("pixie.backend_remove", text="", icon="TRASH")

    _draw_check(layout, width)
    _draw_progress(layout, context, width)
    if not bpy.app.online_access and not ops.bundle().offline and state in ("missing", "failed"):
        col = layout.column()
        _wrap(col, ops.OFFLINE_MESSAGE + ".", width, icon="INFO")
        col.prop(context.preferences.system, "use_online_access")

    col = layout.column()
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(prefs, "backend_folder")
    col.prop(prefs, "install_python")
    col.prop(prefs, "torch_build")
    col.prop(prefs, "idle_minutes")

    own = layout.column()
    own.label(text="Or use your own environment (pixie-backend installed there):")
    own.prop(prefs, "backend_python")

    remote = layout.column()
    remote.prop(prefs, "remote_enabled")
    sub = remote.column()
    sub.active = prefs.remote_enabled
    sub.prop(prefs, "remote_url")
    sub.prop(prefs, "remote_token")


def _draw_check(layout, width: int) -> None:
    state = ops.STATE
    if state.info_error:
        _wrap(layout, state.info_error, width, icon="ERROR", alert=True)
    elif state.info is not None:
        info = state.info
        col = layout.column(align=True)
        col.label(text=f"Checked: {info.summary}", icon="CHECKMARK")
        detector = "mediapipe" if info.packages.get("mediapipe") else "OpenCV (mediapipe not installed)"
        col.label(text=f"Person detector: {detector}; add-on {ADDON_VERSION}")
        note = ops.version_note(info)
        if note:
            _wrap(col, note, width, icon="ERROR", alert=True)


def _draw_progress(layout, context, width: int) -> None:
    state = ops.STATE
    progress = state.progress()
    if progress is None:
        return
    box = layout.box()
    running = state.job is not None
    row = box.row()
    row.progress(factor=progress.fraction, type="BAR", text=progress.text[:200])
    if running:
        row.operator("pixie.backend_cancel", text="", icon="CANCEL")
    for w in progress.warnings:
        _wrap(box, w, width, icon="ERROR")
    if progress.state == "failed":
        _wrap(box, progress.error or "", width, icon="ERROR", alert=True)
        lines = progress.last_lines(8)
        if lines:
            col = box.column(align=True)
            col.label(text="Last lines of the install log:")
            for ln in lines:
                col.label(text=ln[:width])
    elif running:
        for ln in progress.last_lines(3):
            box.label(text=ln[:width])
    log = ops.install_root(context) / install_plan.LOG
    if log.is_file() and not running:
        op = box.operator("wm.path_open", text="Open Install Log", icon="TEXT")
        op.filepath = str(log)
