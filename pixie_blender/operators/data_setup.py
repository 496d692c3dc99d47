"""Model-file set-up: check the data folder and download the licensed files through the backend.

* ``pixie.data_check``: ask the backend (``pixie-backend doctor --json``) which files are present.
* ``pixie.data_download``: a dialog asks for the SMPL-X / PIXIE usernames and passwords of the
  accounts whose files are missing, then runs ``pixie-backend fetch-data`` as a child process.
  The passwords live only in this operator's properties, which are ``SKIP_SAVE`` (never remembered
  as last-used values), are handed to the child once over stdin and are cleared right away; they
  are never written to the preferences or a ``.blend`` file.
* ``pixie.data_monitor``: the modal TIMER operator that shows progress (ESC cancels); if its window
  closes, a ``bpy.app.timers`` function keeps the job going.
* ``pixie.data_cancel``, ``pixie.data_copy`` (copy a command to the clipboard).

The job loop is the plain function :func:`pump`, which the modal operator calls on every TIMER
event and headless code (tests, ``blender -b``) calls in a loop: there is no event loop there.
Transient state lives in :data:`STATE` (a module object) and in ``WindowManager.pixie_data_setup``;
neither is saved.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, PointerProperty, StringProperty

from ..client import data_setup as client
from .job_loop import JobCancel, JobLoop, JobMonitor, redraw_preferences

ROOT_PACKAGE = __package__.rpartition(".")[0]

#: Attribute names the add-on preferences may use for the two settings (first match wins).
TIMER_INTERVAL = 0.1
OFFLINE_MESSAGE = (
    "Blender's online access is off: allow it in Preferences > System > Network "
    "(Allow Online Access) to download the model files"
)


class _State:
    """Transient state of the set-up section (module level: never saved anywhere)."""

    def __init__(self):
        self.job: client.FetchJob | None = None
        self.last: client.FetchProgress | None = None  #: the finished job's progress
        self.status: client.DataStatus | None = None
        self.status_error: str | None = None
        self.status_key: tuple[str, str] | None = None
        self.probe: client.DoctorProbe | None = None
        self.monitoring = False  #: a modal monitor or the fallback timer is pumping

    def progress(self) -> client.FetchProgress | None:
        return self.job.progress if self.job is not None else self.last


STATE = _State()


class PIXIE_PG_data_setup(bpy.types.PropertyGroup):
    """UI state of the set-up section. Lives on the WindowManager on purpose: not saved in .blend
    files or the preferences. Holds no password."""

    licences_accepted: BoolProperty(
        name="I accept the licences",
        description="I have registered at smpl-x.is.tue.mpg.de and pixie.is.tue.mpg.de and accept the "
        "SMPL-X and PIXIE licences (non-commercial scientific research, education and art only)",
        default=False,
    )


# --------------------------------------------------------------------------------------------------
# Settings and status


def addon_preferences(context):
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    return addon.preferences if addon is not None else None


def settings(context) -> tuple[str, str]:
    """(backend Python, data folder) as absolute paths: the Backend Python preference, else the
    environment Install Backend made ("" when neither); the folder may be "" (the backend's default)."""
    from .backend import effective_backend

    prefs = addon_preferences(context)
    python = effective_backend(context)[0]
    data_dir = prefs.data_dir if prefs is not None else ""
    data_dir = bpy.path.abspath(data_dir) if data_dir else ""
    return python, data_dir


def refresh_status(python: str, data_dir: str) -> None:
    """Ask the backend now (blocking; a fraction of a second)."""
    STATE.status_key = (python, data_dir)
    STATE.probe = None
    try:
        STATE.status = client.run_doctor(python, data_dir or None)
        STATE.status_error = None
    except client.BackendError as exc:
        STATE.status = None
        STATE.status_error = str(exc)


def ensure_status(context) -> None:
    """Start a background check when the settings changed (called from drawing; never blocks)."""
    python, data_dir = settings(context)
    key = (python, data_dir)
    if STATE.job is not None:
        return
    probe = STATE.probe
    if probe is not None and probe.done:
        if probe.key == key:
            STATE.status, STATE.status_error = probe.result, probe.error
            STATE.status_key = key
        STATE.probe = None
        return
    if key == STATE.status_key or (probe is not None and probe.key == key):
        return
    try:
        client.check_backend_python(python)
    except client.BackendError as exc:
        STATE.status, STATE.status_error, STATE.status_key = None, str(exc), key
        return
    STATE.probe = client.DoctorProbe(python, data_dir or None)
    if not bpy.app.timers.is_registered(_probe_timer):
        bpy.app.timers.register(_probe_timer, first_interval=0.2, persistent=True)


def _probe_timer():
    probe = STATE.probe
    if probe is None:
        return None
    if not probe.done:
        return 0.2
    STATE.status, STATE.status_error, STATE.status_key = probe.result, probe.error, probe.key
    STATE.probe = None
    redraw_preferences()
    return None


# --------------------------------------------------------------------------------------------------
# The job loop


def pump() -> bool:
    """Drive the running download once: read its events, update the state. True when no job runs.

    The modal monitor calls this on every TIMER event; headless code calls it in a loop.
    """
    job = STATE.job
    if job is None:
        return True
    job.poll()
    if not job.finished:
        return False
    STATE.job = None
    STATE.last = job.progress
    if job.progress.status is not None:
        STATE.status = job.progress.status
        STATE.status_error = None
    job.close()
    return True


LOOP = JobLoop(STATE, pump, TIMER_INTERVAL)


# --------------------------------------------------------------------------------------------------
# Operators


class PIXIE_OT_data_check(bpy.types.Operator):
    """Ask the backend which model files are in the data folder"""

    bl_idname = "pixie.data_check"
    bl_label = "Check Model Files"

    def execute(self, context):
        python, data_dir = settings(context)
        refresh_status(python, data_dir)
        if STATE.status_error:
            self.report({"ERROR"}, STATE.status_error)
            return {"CANCELLED"}
        s = STATE.status
        self.report(
            {"INFO"},
            "All required model files are present" if s.complete else "Some required model files are missing",
        )
        return {"FINISHED"}


def _account_props(label: str):
    username = StringProperty(
        name="Username",
        description=f"E-mail address of your {label} account",
        options={"SKIP_SAVE"},
    )
    password = StringProperty(
        name="Password",
        description=f"Password of your {label} account: used once for this download, never saved",
        subtype="PASSWORD",
        options={"SKIP_SAVE"},
    )
    return username, password


_SMPLX_USER, _SMPLX_PASSWORD = _account_props("SMPL-X")
_PIXIE_USER, _PIXIE_PASSWORD = _account_props("PIXIE")


class PIXIE_OT_data_download(bpy.types.Operator):
    """Download the missing SMPL-X and PIXIE model files with your own accounts (the passwords are
    used once and never saved)"""

    bl_idname = "pixie.data_download"
    bl_label = "Download Model Files"
    bl_options = {"INTERNAL"}

    smplx_username: _SMPLX_USER
    smplx_password: _SMPLX_PASSWORD
    pixie_username: _PIXIE_USER
    pixie_password: _PIXIE_PASSWORD
    only: EnumProperty(
        name="Accounts",
        items=(
            ("AUTO", "Missing", "The accounts whose files are missing"),
            ("smplx", "SMPL-X", ""),
            ("pixie", "PIXIE", ""),
        ),
        default="AUTO",
        options={"SKIP_SAVE", "HIDDEN"},
    )
    # Explicit settings (tests, scripts); empty: from the preferences.
    backend_python: StringProperty(options={"SKIP_SAVE", "HIDDEN"})
    data_dir: StringProperty(options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context):
        return STATE.job is None

    # -- helpers

    def _settings(self, context) -> tuple[str, str]:
        python, data_dir = settings(context)
        return (
            bpy.path.abspath(self.backend_python) if self.backend_python else python,
            bpy.path.abspath(self.data_dir) if self.data_dir else data_dir,
        )

    def _accounts(self) -> list[str]:
        if self.only != "AUTO":
            return [self.only]
        status = STATE.status
        if status is None:
            return list(client.ACCOUNTS)
        return status.accounts_needed()

    def _clear_secrets(self) -> None:
        self.smplx_password = ""
        self.pixie_password = ""

    # -- operator API

    def invoke(self, context, event):
        if not bpy.app.online_access:
            self.report({"ERROR"}, OFFLINE_MESSAGE)
            return {"CANCELLED"}
        if not context.window_manager.pixie_data_setup.licences_accepted:
            self.report({"ERROR"}, "Confirm that you accepted the SMPL-X and PIXIE licences first")
            return {"CANCELLED"}
        python, data_dir = self._settings(context)
        if STATE.status is None or STATE.status_key != (python, data_dir):
            refresh_status(python, data_dir)
        if STATE.status_error:
            self.report({"ERROR"}, STATE.status_error)
            return {"CANCELLED"}
        if not self._accounts():
            self.report({"INFO"}, "Nothing to download: every downloadable file is present")
            return {"CANCELLED"}
        return context.window_manager.invoke_props_dialog(self, width=460)

    def draw(self, context):
        layout = self.layout
        layout.label(text="Your own accounts (the passwords are used once, never saved):")
        for key in self._accounts():
            acc = client.ACCOUNTS[key]
            box = layout.box()
            box.label(text=f"{acc.label} account ({acc.site.split('//')[1]})", icon="USER")
            box.prop(self, f"{key}_username")
            box.prop(self, f"{key}_password")

    def execute(self, context):
        try:
            return self._execute(context)
        finally:
            self._clear_secrets()

    def _execute(self, context):
        if STATE.job is not None:
            self.report({"ERROR"}, "A download is already running")
            return {"CANCELLED"}
        if not bpy.app.online_access:
            self.report({"ERROR"}, OFFLINE_MESSAGE)
            return {"CANCELLED"}
        if not context.window_manager.pixie_data_setup.licences_accepted:
            self.report({"ERROR"}, "Confirm that you accepted the SMPL-X and PIXIE licences first")
            return {"CANCELLED"}
        python, data_dir = self._settings(context)
        accounts = self._accounts()
        credentials: dict[str, tuple[str, str]] = {}
        for key in accounts:
            user = getattr(self, f"{key}_username").strip()
            password = getattr(self, f"{key}_password")
            if not user or not password:
                self.report({"ERROR"}, f"Enter the {client.ACCOUNTS[key].label} username and password")
                return {"CANCELLED"}
            credentials[key] = (user, password)
        self._clear_secrets()
        try:
            # Only the accounts we hold credentials for (the status may be a little stale).
            job = client.FetchJob(python, data_dir or None, only=accounts)
            job.start(credentials)
        except client.BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            credentials.clear()
        STATE.job, STATE.last = job, None
        if context.window is not None:  # with a UI: show progress; headless callers drive pump()
            bpy.ops.pixie.data_monitor("INVOKE_DEFAULT")
        return {"FINISHED"}


class PIXIE_OT_data_monitor(JobMonitor, bpy.types.Operator):
    """Show the download's progress (Esc cancels)"""

    bl_idname = "pixie.data_monitor"
    bl_label = "Model File Download"
    bl_options = {"INTERNAL"}
    loop = LOOP


class PIXIE_OT_data_cancel(JobCancel, bpy.types.Operator):
    """Stop the download (partial files are kept and resumed next time)"""

    bl_idname = "pixie.data_cancel"
    bl_label = "Cancel Download"
    bl_options = {"INTERNAL"}
    loop = LOOP


class PIXIE_OT_data_copy(bpy.types.Operator):
    """Copy this command to the clipboard"""

    bl_idname = "pixie.data_copy"
    bl_label = "Copy"
    bl_options = {"INTERNAL"}

    text: StringProperty(options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        context.window_manager.clipboard = self.text
        self.report({"INFO"}, "Copied to the clipboard")
        return {"FINISHED"}


CLASSES = (
    PIXIE_PG_data_setup,
    PIXIE_OT_data_check,
    PIXIE_OT_data_download,
    PIXIE_OT_data_monitor,
    PIXIE_OT_data_cancel,
    PIXIE_OT_data_copy,
)


def register_extra() -> None:
    # On the WindowManager on purpose: transient UI state, never saved in .blend files.
    bpy.types.WindowManager.pixie_data_setup = PointerProperty(type=PIXIE_PG_data_setup)


def unregister_extra() -> None:
    LOOP.stop_timer()
    for fn in (_probe_timer,):
        if bpy.app.timers.is_registered(fn):
            bpy.app.timers.unregister(fn)
    if STATE.job is not None:  # the add-on goes away: stop the child
        STATE.job.cancel()
        STATE.job.close()
        STATE.job = None
    STATE.monitoring = False
    del bpy.types.WindowManager.pixie_data_setup
