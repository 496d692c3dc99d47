"""The backend in Blender: Install Backend, Check Backend, Remove Backend, and the supervisor.

* ``pixie.backend_install``: a dialog says what will be installed where (torch build chosen from the
  hardware, source, disk space) and asks consent; then :class:`..client.installer.InstallJob` builds
  the private environment on a thread. ``pixie.backend_monitor`` (modal TIMER, Esc cancels) shows
  its progress; a ``bpy.app.timers`` function takes over if its window closes.
* ``pixie.backend_check``: starts the backend's interpreter and reports the versions and the device.
* ``pixie.backend_remove``: deletes the private environment.
* :func:`get_supervisor` / :func:`start_service`: the add-on's one long-lived backend process
  (:class:`..client.supervisor.Supervisor`), stopped on add-on disable, on quit (``atexit``) and
  after the idle timeout (:func:`ensure_idle_timer`).

The job loops are plain functions (:func:`pump`, :func:`pump_check`) that the modal operator and
timers call, and that headless code and tests call in a loop (there is no event loop there).
Transient state lives in :data:`STATE`; nothing here is saved in a .blend file.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..client import install_plan, installer, processes, supervisor, torch_choice
from ..version import ADDON_VERSION
from .job_loop import JobCancel, JobLoop, JobMonitor, redraw_preferences

ROOT_PACKAGE = __package__.rpartition(".")[0]
ADDON_DIR = Path(__file__).resolve().parents[1]
BUNDLE_DIR = ADDON_DIR / "backend_dist"
TIMER_INTERVAL = 0.2
IDLE_CHECK_INTERVAL = 30.0
OFFLINE_MESSAGE = (
    "Blender's online access is off: allow it in Preferences > System > Network (Allow Online Access), "
    "or install the full (offline) zip"
)


class _CheckProbe:
    """:func:`install_plan.probe_backend` on a thread (drawing never waits for it)."""

    def __init__(self, python: Path, isolated: bool):
        self.key = (str(python), isolated)
        self.info: install_plan.BackendInfo | None = None
        self.error: str | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(python, isolated), name="pixie-backend-check", daemon=True).start()

    def _run(self, python, isolated) -> None:
        try:
            self.info = install_plan.probe_backend(python, isolated=isolated)
        except install_plan.InstallError as exc:
            self.error = str(exc)
        except Exception as exc:  # never let a thread die silently
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class _State:
    """Transient state (module level: never saved)."""

    def __init__(self):
        self.job: installer.InstallJob | None = None
        self.last: installer.InstallProgress | None = None  #: the finished install's progress
        self.check: _CheckProbe | None = None
        self.info: install_plan.BackendInfo | None = None  #: the last successful check
        self.info_error: str | None = None
        self.info_key: tuple | None = None
        self.supervisor: supervisor.Supervisor | None = None
        self.monitoring = False

    def progress(self) -> installer.InstallProgress | None:
        return self.job.progress if self.job is not None else self.last


STATE = _State()


# --------------------------------------------------------------------------------------------------
# Settings


def addon_preferences(context=None):
    addon = (context or bpy.context).preferences.addons.get(ROOT_PACKAGE)
    return addon.preferences if addon is not None else None


def user_dir() -> Path:
    """The extension's own user folder (a data-files folder when not installed as an extension)."""
    try:
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, create=True))
    except (ValueError, AttributeError):
        return Path(bpy.utils.user_resource("DATAFILES", path="pixie_blender", create=True))


def install_root(context=None) -> Path:
    """Where the private environment lives: the Install Folder preference, else the user folder."""
    prefs = addon_preferences(context)
    folder = prefs.backend_folder.strip() if prefs is not None else ""
    return Path(bpy.path.abspath(folder)) if folder else user_dir() / "backend"


def bundle() -> install_plan.Bundle:
    return install_plan.find_bundle(BUNDLE_DIR)


def installed(context=None) -> install_plan.InstalledBackend | None:
    return install_plan.find_installed(install_root(context))


def effective_backend(context=None) -> tuple[str, bool, str]:
    """(python, isolated, source) of the backend the add-on uses: the Backend Python preference (a
    user-managed environment) if set, else the installed private environment; ("", False, "none")
    when there is neither."""
    prefs = addon_preferences(context)
    own = prefs.backend_python.strip() if prefs is not None else ""
    if own:
        return bpy.path.abspath(own), False, "own"
    found = installed(context)
    if found is not None:
        return str(found.python), True, "installed"
    return "", False, "none"


# --------------------------------------------------------------------------------------------------
# The supervisor


def get_supervisor() -> supervisor.Supervisor:
    """The add-on's supervisor (made on first use; the idle timeout follows the preferences)."""
    if STATE.supervisor is None:
        STATE.supervisor = supervisor.Supervisor(user_dir(), ADDON_VERSION)
    prefs = addon_preferences()
    if prefs is not None:
        STATE.supervisor.idle_timeout = prefs.idle_minutes * 60.0
    return STATE.supervisor


def start_service(context=None, *args: str, command: list[str] | None = None):
    """Starts (or restarts) the backend service through the supervisor; returns the
    :class:`..client.supervisor.BackendProcess` (poll it, or ``wait_ready`` headless).

    ``command`` replaces ``[python, -m, pixie_backend, *args]`` (tests use stand-ins)."""
    env = None
    if command is None:
        python, isolated, source = effective_backend(context)
        if source == "none":
            raise supervisor.SupervisorError(
                "The backend is not installed: click Install Backend in the add-on preferences."
            )
        command = supervisor.backend_command(python, *(args or ("serve",)), isolated=isolated)
        env = processes.child_env(keep_pythonpath=not isolated)  # a user's own environment may rely on it
    proc = get_supervisor().start(command, env=env)
    ensure_idle_timer()
    return proc


def stop_service() -> None:
    if STATE.supervisor is not None:
        STATE.supervisor.stop()


def _idle_timer():
    sup = STATE.supervisor
    if sup is None or sup.process is None:
        return None
    sup.check_idle()
    return IDLE_CHECK_INTERVAL if sup.process is not None else None


def ensure_idle_timer() -> None:
    if not bpy.app.timers.is_registered(_idle_timer):
        bpy.app.timers.register(_idle_timer, first_interval=IDLE_CHECK_INTERVAL, persistent=True)


# --------------------------------------------------------------------------------------------------
# Install job loop


def pump() -> bool:
    """Drive the running install once. True when no install runs.

    The modal monitor calls this on every TIMER event; headless code calls it in a loop."""
    job = STATE.job
    if job is None:
        return True
    job.poll()
    if not job.finished:
        return False
    STATE.job = None
    STATE.last = job.progress
    if job.progress.info is not None and job.progress.state == "done":
        STATE.info, STATE.info_error = job.progress.info, None
        STATE.info_key = (str(job.progress.result.python), True)
    return True


LOOP = JobLoop(STATE, pump, TIMER_INTERVAL)


def pump_check() -> bool:
    """Collect a finished check. True when no check runs."""
    probe = STATE.check
    if probe is None:
        return True
    if not probe.done:
        return False
    STATE.check = None
    STATE.info, STATE.info_error, STATE.info_key = probe.info, probe.error, probe.key
    return True


def _check_timer():
    if pump_check():
        redraw_preferences()
        return None
    return TIMER_INTERVAL


def version_note(info: install_plan.BackendInfo | None) -> str | None:
    """A sentence when the checked backend's version differs from the add-on's."""
    if info is None or info.backend_version == ADDON_VERSION:
        return None
    return (
        f"The backend is version {info.backend_version} but the add-on is {ADDON_VERSION}: click Install Backend "
        "to install the matching backend (or update the environment named in Backend Python)."
    )


# --------------------------------------------------------------------------------------------------
# Operators


class PIXIE_OT_backend_install(bpy.types.Operator):
    """Install the PIXIE backend (PyTorch and the reconstruction code) into a private Python environment.
    Nothing is installed into Blender's own Python"""

    bl_idname = "pixie.backend_install"
    bl_label = "Install Backend"
    bl_options = {"INTERNAL"}

    # Explicit settings (tests, scripts); empty: from the preferences and the extension's bundle.
    folder: StringProperty(options={"SKIP_SAVE", "HIDDEN"})
    python: StringProperty(options={"SKIP_SAVE", "HIDDEN"})
    wheelhouse: StringProperty(options={"SKIP_SAVE", "HIDDEN"})
    backend_wheel: StringProperty(options={"SKIP_SAVE", "HIDDEN"})

    _pending: install_plan.InstallOptions | None = None

    @classmethod
    def poll(cls, context):
        return STATE.job is None

    def _options(self, context) -> install_plan.InstallOptions:
        prefs = addon_preferences(context)
        carried = bundle()
        wheel = Path(bpy.path.abspath(self.backend_wheel)) if self.backend_wheel else carried.backend_wheel
        house = Path(bpy.path.abspath(self.wheelhouse)) if self.wheelhouse else carried.wheelhouse
        base = self.python or (prefs.install_python.strip() if prefs is not None else "") or sys.executable
        override = prefs.torch_build if prefs is not None else "AUTO"
        return install_plan.InstallOptions(
            root=Path(bpy.path.abspath(self.folder)) if self.folder else install_root(context),
            base_python=Path(bpy.path.abspath(base)),
            backend_wheel=wheel or BUNDLE_DIR / f"pixie_blender-{ADDON_VERSION}-py3-none-any.whl",
            torch=torch_choice.detect(override),
            wheelhouse=house,
            online_allowed=bool(bpy.app.online_access),
        )

    def _problems(self, options) -> list[str]:
        if STATE.job is not None:
            return ["An install is already running"]
        problems = install_plan.preflight(options)
        if getattr(bpy.app, "online_access_override", False) and not options.online_allowed:
            problems = [
                "Blender was started with online access off (--offline-mode): restart it without that option, "
                "or install the full (offline) zip"
                if p.startswith("Blender's online access is off")
                else p
                for p in problems
            ]
        return problems

    def invoke(self, context, event):
        options = self._options(context)
        problems = self._problems(options)
        if problems:
            self.report({"ERROR"}, problems[0])
            return {"CANCELLED"}
        type(self)._pending = options
        return context.window_manager.invoke_props_dialog(self, width=560)

    def draw(self, context):
        options = type(self)._pending or self._options(context)
        torch = install_plan.effective_torch(options)
        layout = self.layout
        col = layout.column(align=True)
        col.label(text="Install the PIXIE backend into a private Python environment:", icon="PACKAGE")
        col.label(text=f"Folder: {options.root / install_plan.ENV_DIR}")
        col.label(text=f"Made from: {options.base_python}  (nothing is installed into it)")
        col.separator()
        col.label(text=torch.label, icon="MEMORY")
        col.label(text=torch.reason)
        for w in torch.warnings:
            col.label(text=w, icon="ERROR")
        col.separator()
        if options.offline:
            col.label(text="Offline: everything comes from this add-on's package.", icon="CHECKMARK")
        else:
            where = (torch.index_url or "pypi.org").split("//")[-1].split("/")[0]
            col.label(text=f"Downloads torch from {where} and the rest from pypi.org.", icon="URL")
        col.label(text=f"Needs about {torch.disk_gb:.1f} GB of disk space; takes several minutes.")
        col.label(text="You can keep working meanwhile; Esc or Cancel stops it.")

    def execute(self, context):
        options = type(self)._pending or self._options(context)
        type(self)._pending = None
        problems = self._problems(options)
        if problems:
            self.report({"ERROR"}, problems[0])
            return {"CANCELLED"}
        job = installer.InstallJob(options, before_commit=stop_service)
        job.start()
        STATE.job, STATE.last = job, None
        if context.window is not None:  # with a UI: show progress; headless callers drive pump()
            bpy.ops.pixie.backend_monitor("INVOKE_DEFAULT")
        return {"FINISHED"}


class PIXIE_OT_backend_monitor(JobMonitor, bpy.types.Operator):
    """Show the backend install's progress (Esc cancels)"""

    bl_idname = "pixie.backend_monitor"
    bl_label = "Backend Install"
    bl_options = {"INTERNAL"}
    loop = LOOP


class PIXIE_OT_backend_cancel(JobCancel, bpy.types.Operator):
    """Stop the install (what it made so far is removed; an earlier backend stays)"""

    bl_idname = "pixie.backend_cancel"
    bl_label = "Cancel Install"
    bl_options = {"INTERNAL"}
    loop = LOOP


class PIXIE_OT_backend_check(bpy.types.Operator):
    """Start the backend's Python and report the versions and the device it will use"""

    bl_idname = "pixie.backend_check"
    bl_label = "Check Backend"
    bl_options = {"INTERNAL"}

    wait: bpy.props.BoolProperty(options={"SKIP_SAVE", "HIDDEN"}, description="Block until the answer (scripts)")

    @classmethod
    def poll(cls, context):
        return STATE.check is None and STATE.job is None

    def execute(self, context):
        python, isolated, source = effective_backend(context)
        if source == "none":
            self.report({"ERROR"}, "The backend is not installed: click Install Backend")
            return {"CANCELLED"}
        STATE.check = _CheckProbe(Path(python), isolated)
        if not self.wait:
            if not bpy.app.timers.is_registered(_check_timer):
                bpy.app.timers.register(_check_timer, first_interval=TIMER_INTERVAL, persistent=True)
            return {"FINISHED"}
        STATE.check.wait(300)
        pump_check()
        if STATE.info_error:
            self.report({"ERROR"}, STATE.info_error)
            return {"CANCELLED"}
        note = version_note(STATE.info)
        self.report({"WARNING"} if note else {"INFO"}, note or STATE.info.summary)
        return {"FINISHED"}


class PIXIE_OT_backend_remove(bpy.types.Operator):
    """Delete the private backend environment (frees its disk space; the model files stay)"""

    bl_idname = "pixie.backend_remove"
    bl_label = "Remove Backend"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return STATE.job is None

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        root = install_root(context)
        stop_service()
        try:
            install_plan.remove_installed(root)
        except OSError as exc:
            self.report({"ERROR"}, f"Could not remove {root / install_plan.ENV_DIR}: {exc}")
            return {"CANCELLED"}
        STATE.info = STATE.info_error = STATE.info_key = STATE.last = None
        self.report({"INFO"}, "The backend environment was removed")
        return {"FINISHED"}


CLASSES = (
    PIXIE_OT_backend_install,
    PIXIE_OT_backend_monitor,
    PIXIE_OT_backend_cancel,
    PIXIE_OT_backend_check,
    PIXIE_OT_backend_remove,
)


def register_extra() -> None:
    """Nothing starts at registration (no process, no network); the pair exists for the cleanup."""


def unregister_extra() -> None:
    LOOP.stop_timer()
    for fn in (_check_timer, _idle_timer):
        if bpy.app.timers.is_registered(fn):
            bpy.app.timers.unregister(fn)
    if STATE.job is not None:  # the add-on goes away: stop pip; the job removes what it made
        STATE.job.cancel()
        STATE.job = None
    if STATE.supervisor is not None:
        STATE.supervisor.shutdown()
        STATE.supervisor = None
    STATE.monitoring = False
