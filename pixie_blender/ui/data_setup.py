"""The "Set up model files" section of the add-on preferences.

``PIXIE_AP_preferences.draw`` calls :func:`draw_preferences` with a box. The section shows the
data folder and, per file, whether it is present (as the backend's ``doctor`` reports it), the
licence and registration links, a licence checkbox, the download button (a dialog asks for the
passwords), progress with Cancel while a download runs, and copyable commands for the files that
need a separate procedure. Drawing never waits for the backend: the check runs on a thread.
"""

from __future__ import annotations

import textwrap

import bpy

from ..client import data_setup as client
from ..operators import data_setup as ops

NEED_LABEL = {"required": "required", "texture": "for textures", "optional": "optional"}


def _wrap(layout, text: str, width: int, *, icon: str = "NONE", alert: bool = False) -> None:
    col = layout.column(align=True)
    col.alert = alert
    lines = textwrap.wrap(text, width=width) or [""]
    for i, line in enumerate(lines):
        col.label(text=line, icon=icon if i == 0 else ("BLANK1" if icon != "NONE" else "NONE"))


def _chars(context) -> int:
    region = getattr(context, "region", None)
    width = getattr(region, "width", 0) or 700
    scale = getattr(getattr(getattr(context, "preferences", None), "view", None), "ui_scale", 1.0) or 1.0
    return max(40, int(width / (7.0 * scale)) - 8)


def _size(n: int | None) -> str:
    return client._human(n) if n is not None else ""


def draw_preferences(layout, context) -> None:
    """Draw the section into ``layout`` (a box from the preferences)."""
    state = ops.STATE
    own = context.window_manager.pixie_data_setup
    width = _chars(context)
    ops.ensure_status(context)
    python, data_dir = ops.settings(context)
    status = state.status
    running = state.job is not None

    header = layout.row()
    header.label(text="Set up model files", icon="PACKAGE")
    sub = header.row()
    sub.enabled = not running
    sub.operator("pixie.data_check", text="Check Again", icon="FILE_REFRESH")

    folder = status.data_dir if status is not None else (data_dir or "the backend's default folder")
    row = layout.row()
    row.label(text=f"Data folder: {folder}", icon="FILE_FOLDER")
    if status is not None:
        op = row.operator("wm.path_open", text="Open", icon="FILEBROWSER")
        op.filepath = status.data_dir

    if state.status_error:
        _wrap(layout, state.status_error, width, icon="ERROR", alert=True)
    elif status is None:
        layout.label(text="Asking the backend which files are present…", icon="SORTTIME")
    else:
        _draw_files(layout, status, width)

    _draw_licences(layout, status)

    row = layout.row()
    row.enabled = not running
    row.prop(
        own,
        "licences_accepted",
        text="I have registered on both sites and accept the SMPL-X and PIXIE licences",
    )

    online = bpy.app.online_access
    if not online:
        # Blender's rule for extensions: no network use unless the user allowed it.
        col = layout.column()
        _wrap(col, ops.OFFLINE_MESSAGE + ".", width, icon="INFO")
        col.prop(context.preferences.system, "use_online_access")

    missing = status.missing_downloadable() if status is not None else []
    row = layout.row()
    row.scale_y = 1.3
    row.enabled = (
        online and own.licences_accepted and not running and bool(missing) and not state.status_error
    )
    label = "Download Missing Files…" if missing or status is None else "Nothing to Download"
    row.operator("pixie.data_download", text=label, icon="IMPORT")

    _draw_progress(layout, state, width)

    if status is not None and status.missing_manual():
        _draw_manual(layout, status, width)


def _draw_files(layout, status: client.DataStatus, width: int) -> None:
    col = layout.column(align=True)
    if status.synthetic:
        _wrap(
            col,
            "This folder holds SYNTHETIC test files (random weights), not the real models.",
            width,
            icon="ERROR",
            alert=True,
        )
    for a in status.assets:
        row = col.row()
        icon = "CHECKMARK" if a.present else ("ERROR" if a.need == "required" else "X")
        row.alert = not a.present and a.need == "required"
        row.label(text=a.filename, icon=icon)
        where = (
            ""
            if a.present
            else (f"in {a.archive}" if a.archive else ("download" if a.domain else "separate procedure"))
        )
        row.label(text=NEED_LABEL.get(a.need, a.need))
        row.label(text=_size(a.size) if a.present else f"missing ({where})")
    if status.complete:
        tex = "complete" if status.texture_complete else "incomplete"
        col.label(text=f"Ready: all required files are present (texture files {tex}).", icon="INFO")
    else:
        col.label(text="Not ready: required files are missing.", icon="INFO")


def _draw_licences(layout, status: client.DataStatus | None) -> None:
    licences = (
        status.licences()
        if status is not None
        else [(a.label, a.licence_url, a.site) for a in client.ACCOUNTS.values()]
    )
    box = layout.column(align=True)
    box.label(
        text="Licensed for non-commercial research, education and art only; register (free) on each site:"
    )
    row = box.row(align=True)
    for label, licence_url, _site in licences:
        op = row.operator("wm.url_open", text=f"{label} Licence", icon="URL")
        op.url = licence_url
    row = box.row(align=True)
    for label, _licence_url, site in licences:
        op = row.operator("wm.url_open", text=f"Register for {label}", icon="USER")
        op.url = site


def _draw_progress(layout, state, width: int) -> None:
    progress = state.progress()
    if progress is None:
        return
    box = layout.box()
    running = state.job is not None
    if not progress.official_endpoint and progress.endpoint_label:
        _wrap(box, progress.endpoint_label, width, icon="ERROR", alert=True)
    row = box.row()
    row.progress(factor=progress.fraction, type="BAR", text=progress.text)
    if running:
        row.operator("pixie.data_cancel", text="", icon="CANCEL")
    for line in list(progress.log)[-4:]:
        _wrap(box, line, width)
    if progress.state == "failed" and progress.error_message:
        _wrap(box, progress.error_message, width, icon="ERROR", alert=True)


def _draw_manual(layout, status: client.DataStatus, width: int) -> None:
    box = layout.box()
    box.label(text="Not downloaded here (a separate procedure):", icon="INFO")
    for a in status.missing_manual():
        col = box.column(align=True)
        col.label(text=f"{a.filename} ({NEED_LABEL.get(a.need, a.need)})", icon="DOT")
        if a.missing_effect:
            _wrap(col, f"Without it: {a.missing_effect}.", width)
        _wrap(col, a.instructions, width)
        for command in a.commands:
            row = col.row(align=True)
            row.label(text=command)
            op = row.operator("pixie.data_copy", text="", icon="COPYDOWN")
            op.text = command
        if a.url:
            op = col.operator("wm.url_open", text="Open Link", icon="URL")
            op.url = a.url


CLASSES: tuple = ()
