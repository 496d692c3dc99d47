"""Install the backend into a private Python environment ("Install Backend"; standard library only).

Nothing is ever installed into Blender's own Python. The installer

1. checks first: a usable base Python (3.10+, with ``venv``; pip from ``ensurepip`` or from the
   wheelhouse), free disk space, a short enough folder on Windows, no other install running, and
   network only if allowed (``online_allowed``, i.e. ``bpy.app.online_access``) or not needed;
2. builds the environment in ``<root>/env.new`` with ``<base python> -I -m venv``;
3. installs torch first (the build :mod:`.torch_choice` picked), reads back the exact version it
   got and writes ``torch==<that version>`` to a constraints file, so nothing later swaps it;
4. installs the bundled backend wheel with its ``[detector]`` extra and dependencies under that
   constraint, then ``mediapipe==0.10.21`` with ``--no-deps`` (optional: without it the backend
   falls back to OpenCV's detector);
5. starts the backend from the new environment (versions probe, ``doctor --json``);
6. writes the completion marker ``pixie-install.json`` and renames ``env.new`` to ``env``.

Every pip runs as ``<env python> -I -m pip install --isolated --only-binary=:all: ...`` with
``PIP_CONFIG_FILE`` set to the null device: no pip configuration file (user's or global) and no
``PIP_*``/``PYTHON*`` variable can redirect it; proxy variables (``HTTPS_PROXY``...) pass through.
With a wheelhouse (the "full" zip) every step uses ``--no-index --find-links`` and needs no network.
A failed or cancelled install removes ``env.new``; an earlier working ``env`` stays as it was.
:func:`find_installed` only accepts an environment with its completion marker.

The job runs its steps on a worker thread; :meth:`InstallJob.poll` (a modal timer in Blender, a
loop in tests) drains the log lines from a queue on the main thread and does the final rename.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import processes
from .torch_choice import TorchChoice

MARKER_SCHEMA = 1
MARKER = "pixie-install.json"
ENV_DIR, NEW_DIR, OLD_DIR = "env", "env.new", "env.old"
LOCK = "install.lock"
LOG = "install.log"
CONSTRAINTS = "pixie-constraints.txt"
WHEELHOUSE_META = "wheelhouse.json"
BACKEND_DIST = "pixie-blender"  #: the backend's distribution name (pyproject ``[project] name``)
EXTRA = "detector"
MEDIAPIPE = "mediapipe==0.10.21"
#: The newest Python that mediapipe 0.10.21 has wheels for (and numpy < 2, which it needs).
MEDIAPIPE_MAX_PYTHON = (3, 12)
MIN_PYTHON = (3, 10)
#: A lock older than this is stale even if its process id is in use again.
LOCK_MAX_AGE_S = 12 * 3600
#: On Windows without long-path support, env paths longer than this break deep package paths.
WINDOWS_MAX_ROOT = 60


class InstallError(Exception):
    """The install cannot start or failed; the message is one sentence for the user."""


def env_python(env: Path) -> Path:
    """The interpreter of a virtual environment (``Scripts\\python.exe`` or ``bin/python``)."""
    return env / "Scripts" / "python.exe" if sys.platform == "win32" else env / "bin" / "python"


# --------------------------------------------------------------------------------------------------
# What is installed, and what the extension carries


@dataclass(frozen=True)
class InstalledBackend:
    """A complete private environment (its marker exists)."""

    root: Path
    env: Path
    python: Path
    info: Mapping

    @property
    def backend_version(self) -> str:
        return str(self.info.get("backend_version", ""))

    @property
    def torch_version(self) -> str:
        return str(self.info.get("torch", ""))

    @property
    def device(self) -> str:
        return str(self.info.get("device", ""))

    @property
    def summary(self) -> str:
        return (
            f"pixie-backend {self.backend_version}, torch {self.torch_version} "
            f"({self.device.upper() or '?'}), Python {self.info.get('python', '?')}"
        )


def find_installed(root: Path) -> InstalledBackend | None:
    """The complete environment under ``root``, or None (nothing, or a half-made one)."""
    env = Path(root) / ENV_DIR
    info = processes.read_json(env / MARKER)
    if info is None or info.get("schema") != MARKER_SCHEMA:
        return None
    python = env_python(env)
    if not python.exists():
        return None
    return InstalledBackend(Path(root), env, python, info)


@dataclass(frozen=True)
class Bundle:
    """The backend files an extension zip carries (``backend_dist/``)."""

    backend_wheel: Path | None
    wheelhouse: Path | None
    wheelhouse_info: Mapping | None

    @property
    def offline(self) -> bool:
        return self.wheelhouse is not None


def find_bundle(bundle_dir: Path) -> Bundle:
    """Looks in ``bundle_dir`` (the extension's ``backend_dist``) for the backend wheel and a wheelhouse."""
    bundle_dir = Path(bundle_dir)
    wheels = sorted(bundle_dir.glob(f"{BACKEND_DIST.replace('-', '_')}-*.whl")) if bundle_dir.is_dir() else []
    house = bundle_dir / "wheelhouse"
    has_house = house.is_dir() and any(house.glob("*.whl"))
    return Bundle(
        wheels[-1] if wheels else None,
        house if has_house else None,
        processes.read_json(house / WHEELHOUSE_META) if has_house else None,
    )


# --------------------------------------------------------------------------------------------------
# Checks


_PROBE_BASE = (
    "import json, sys, platform, importlib.util as u\n"
    "print(json.dumps({'version': list(sys.version_info[:3]), 'executable': sys.executable,\n"
    " 'venv': u.find_spec('venv') is not None, 'ensurepip': u.find_spec('ensurepip') is not None,\n"
    " 'machine': platform.machine(), 'system': platform.system(),\n"
    " 'in_venv': sys.prefix != getattr(sys, 'base_prefix', sys.prefix)}))\n"
)


@dataclass(frozen=True)
class BasePython:
    path: Path
    version: tuple[int, int, int]
    has_venv: bool
    has_ensurepip: bool

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def probe_base_python(python: Path, timeout: float = 30.0) -> BasePython:
    """Runs ``python -I -c`` to learn its version and whether it has ``venv``/``ensurepip``."""
    python = Path(python)
    if not python.is_file():
        raise InstallError(f"The Python {python} does not exist.")
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", _PROBE_BASE],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=processes.child_env(),
            **processes.popen_kwargs(),
        )
        doc = json.loads(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        raise InstallError(f"{python} does not run as a Python interpreter.") from None
    return BasePython(python, tuple(doc["version"]), bool(doc["venv"]), bool(doc["ensurepip"]))


def free_space_problem(root: Path, need_gb: float) -> str | None:
    """A sentence if the disk holding ``root`` has less than ``need_gb`` free, else None."""
    probe = Path(root)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 1e9
    if free < need_gb:
        return (
            f"Not enough free disk space at {root}: {free:.1f} GB free, the install needs about {need_gb:.1f} GB. "
            "Free some space or choose another Install Folder."
        )
    return None


def windows_long_paths_enabled() -> bool:
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            return bool(winreg.QueryValueEx(key, "LongPathsEnabled")[0])
    except (ImportError, OSError):
        return False


def path_length_problem(root: Path, *, windows: bool | None = None, long_paths: bool | None = None) -> str | None:
    """On Windows without long-path support, a sentence if ``root`` is too long for torch's deep
    package paths (260 characters in all), else None."""
    windows = sys.platform == "win32" if windows is None else windows
    if not windows:
        return None
    if long_paths is None:
        long_paths = windows_long_paths_enabled()
    if long_paths or len(str(root)) <= WINDOWS_MAX_ROOT:
        return None
    return (
        f"The install folder {root} is {len(str(root))} characters long; Windows limits paths to 260 characters "
        f"and torch's files sit deep inside it. Choose a short Install Folder such as C:\\pixie (at most "
        f"{WINDOWS_MAX_ROOT} characters), or enable Windows long paths."
    )


# --------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class InstallOptions:
    """What to install where.

    Args:
        root: the install folder; the environment becomes ``root/env``.
        base_python: the Python the environment is made from (Blender's, or one the user names).
        backend_wheel: the bundled ``pixie_blender-<version>-py3-none-any.whl``.
        torch: the torch build (:func:`.torch_choice.detect`); with a wheelhouse, the wheelhouse's
            ``wheelhouse.json`` overrides it.
        wheelhouse: folder of wheels for an offline install (``--no-index --find-links``), or None.
        online_allowed: whether network use is allowed (``bpy.app.online_access``).
        mediapipe: also install mediapipe (``--no-deps``); its failure is a warning, not an error.
        extra_env: extra environment variables for every child.
    """

    root: Path
    base_python: Path
    backend_wheel: Path
    torch: TorchChoice
    wheelhouse: Path | None = None
    online_allowed: bool = False
    mediapipe: bool = True
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        return self.wheelhouse is not None


def effective_torch(options: InstallOptions) -> TorchChoice:
    """The torch build actually installed: the wheelhouse's when there is one."""
    if options.wheelhouse is None:
        return options.torch
    meta = processes.read_json(Path(options.wheelhouse) / WHEELHOUSE_META) or {}
    if not meta.get("torch"):
        return options.torch
    device = meta.get("device", options.torch.device)
    note = f"The offline package carries torch {meta['torch']} ({device.upper()})."
    warnings = list(options.torch.warnings)
    if options.torch.device == "cuda" and device != "cuda":
        warnings.append(
            f"This machine has a supported NVIDIA GPU, but this offline package carries a {device.upper()} build; "
            "use the CUDA package or the small zip (online install) to run on the GPU."
        )
    return replace(
        options.torch,
        variant=meta.get("variant", options.torch.variant),
        device=device,
        requirement=f"torch=={meta['torch']}",
        index_url=None,
        reason=note,
        warnings=tuple(warnings),
    )


def preflight(options: InstallOptions, base: BasePython | None = None) -> list[str]:
    """Everything that stops the install before it starts, as sentences (empty: go)."""
    problems = []
    if not Path(options.backend_wheel).is_file():
        problems.append(
            "This add-on carries no backend wheel (backend_dist/*.whl): install the extension zip built by "
            "tools/build_extension.py."
        )
    if options.wheelhouse is None and not options.online_allowed:
        problems.append(
            "Blender's online access is off and this add-on has no offline package: allow online access in "
            "Preferences > System > Network, or install the full (offline) zip."
        )
    try:
        base = base or probe_base_python(options.base_python)
    except InstallError as exc:
        problems.append(str(exc))
        base = None
    if base is not None:
        if base.version[:2] < MIN_PYTHON:
            problems.append(
                f"{base.path} is Python {base.version_text}; the backend needs Python 3.10 or newer. "
                "Name another Python in 'Python for the Environment'."
            )
        if not base.has_venv:
            problems.append(
                f"{base.path} has no 'venv' module. Name another Python 3.10+ in 'Python for the Environment'."
            )
        if not base.has_ensurepip and bundled_pip_wheel(options.wheelhouse) is None:
            problems.append(
                f"{base.path} has no 'ensurepip' (no pip to start from). Name another Python 3.10+ in "
                "'Python for the Environment', or use the full (offline) zip, which carries pip."
            )
        meta = processes.read_json(Path(options.wheelhouse) / WHEELHOUSE_META) if options.wheelhouse else None
        want = (meta or {}).get("python")
        if want and want != f"{base.version[0]}.{base.version[1]}":
            problems.append(
                f"The offline package is for Python {want} but {base.path} is Python {base.version_text}. Use the "
                f"small zip (online install), or name a Python {want} in 'Python for the Environment'."
            )
    torch = effective_torch(options)
    for check in (free_space_problem(options.root, torch.disk_gb), path_length_problem(options.root / NEW_DIR)):
        if check:
            problems.append(check)
    return problems


def bundled_pip_wheel(wheelhouse: Path | None) -> Path | None:
    if wheelhouse is None:
        return None
    wheels = sorted(Path(wheelhouse).glob("pip-*.whl"))
    return wheels[-1] if wheels else None


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    weight: float  #: share of the whole install (for the progress bar)
    optional: bool = False  #: a failure is a warning


def plan_steps(options: InstallOptions) -> list[Step]:
    torch = effective_torch(options)
    steps = [
        Step("venv", "Creating the Python environment", 0.04),
        Step("torch", f"Installing {torch.label}", 0.50),
        Step("backend", "Installing the backend and its dependencies", 0.36),
    ]
    if options.mediapipe:
        steps.append(Step("mediapipe", "Installing the mediapipe person detector", 0.05, optional=True))
    steps.append(Step("verify", "Starting the backend from the new environment", 0.05))
    return steps


def pip_install_args(
    python: Path, options: InstallOptions, *, torch_index: bool = False, raw_progress: bool = False
) -> list[str]:
    """``<env python> -I -m pip install`` with the flags every step shares and the package source."""
    args = [
        str(python),
        "-I",
        "-m",
        "pip",
        "install",
        "--isolated",
        "--disable-pip-version-check",
        "--no-input",
        "--no-color",
        "--no-warn-script-location",
        "--only-binary=:all:",
        "--progress-bar",
        "raw" if raw_progress else "off",
    ]
    if options.wheelhouse is not None:
        args += ["--no-index", "--find-links", str(options.wheelhouse)]
    elif torch_index:
        index = effective_torch(options).index_url
        if index:
            args += ["--index-url", index]
    return args


def step_commands(options: InstallOptions, env: Path, *, raw_progress: bool, detector: bool = True) -> dict:
    """The argv of each pip step (pure; the tests read it). ``detector``: the backend's ``[detector]``
    extra (mediapipe's run-time needs, numpy < 2), left out where mediapipe has no wheels."""
    py = env_python(env)
    torch = effective_torch(options)
    constraints = env / CONSTRAINTS
    return {
        "torch": [*pip_install_args(py, options, torch_index=True, raw_progress=raw_progress), torch.requirement],
        "backend": [
            *pip_install_args(py, options, raw_progress=raw_progress),
            "-c",
            str(constraints),
            f"{options.backend_wheel}[{EXTRA}]" if detector else str(options.backend_wheel),
        ],
        "mediapipe": [
            *pip_install_args(py, options, raw_progress=raw_progress),
            "-c",
            str(constraints),
            "--no-deps",
            MEDIAPIPE,
        ],
    }


# --------------------------------------------------------------------------------------------------
# Probing an environment


#: Runs in the backend's interpreter, never in Blender's (hence import_module: the add-on's own
#: code never imports torch or the backend).
_PROBE_ENV = (
    "import importlib, json, platform\n"
    "from importlib import metadata\n"
    "def v(d):\n"
    "    try:\n"
    "        return metadata.version(d)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        return None\n"
    "out = {'python': platform.python_version()}\n"
    "out['pixie_backend'] = importlib.import_module('pixie_backend').__version__\n"
    "tr = importlib.import_module('torch')\n"
    "out['torch'] = tr.__version__\n"
    "out['cuda'] = bool(tr.cuda.is_available())\n"
    "out['gpu'] = tr.cuda.get_device_name(0) if out['cuda'] else None\n"
    "mps = getattr(tr.backends, 'mps', None)\n"
    "out['mps'] = bool(mps is not None and mps.is_available())\n"
    "out['device'] = 'cuda' if out['cuda'] else ('mps' if out['mps'] else 'cpu')\n"
    "for d in ('numpy', 'mediapipe', 'opencv-python-headless', 'smplx'):\n"
    "    out[d] = v(d)\n"
    "print(json.dumps(out))\n"
)


@dataclass(frozen=True)
class BackendInfo:
    """What a backend environment reports about itself."""

    python: str
    backend_version: str
    torch_version: str
    device: str
    gpu: str | None
    packages: Mapping[str, str | None]

    @property
    def summary(self) -> str:
        where = self.gpu or self.device.upper()
        return f"pixie-backend {self.backend_version}, torch {self.torch_version} on {where}, Python {self.python}"


def probe_backend(python: Path, *, isolated: bool = True, timeout: float = 120.0, env=None) -> BackendInfo:
    """Imports pixie_backend and torch in ``python`` and reports their versions and the device.
    Blocking (a few seconds: torch loads); :class:`InstallError` with the reason on failure."""
    cmd = [str(python), *(["-I"] if isolated else []), "-c", _PROBE_ENV]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env or processes.child_env(),
            **processes.popen_kwargs(),
        )
    except subprocess.TimeoutExpired:
        raise InstallError(f"The backend did not answer within {timeout:.0f} s.") from None
    except OSError as exc:
        raise InstallError(f"Cannot run {python}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-2:]
        if any("No module named 'pixie_backend'" in ln for ln in tail):
            raise InstallError(f"pixie-backend is not installed for {python}.") from None
        if any("No module named 'torch'" in ln for ln in tail):
            raise InstallError(f"torch is not installed for {python}.") from None
        raise InstallError(f"The backend at {python} does not start: {' / '.join(tail) or 'no output'}") from None
    packages = {k: doc.get(k) for k in ("numpy", "mediapipe", "opencv-python-headless", "smplx")}
    return BackendInfo(
        str(doc["python"]), str(doc["pixie_backend"]), str(doc["torch"]), str(doc["device"]), doc.get("gpu"), packages
    )


# --------------------------------------------------------------------------------------------------
# The job


@dataclass
class InstallProgress:
    """What the UI shows; updated by :meth:`InstallJob.poll` on the main thread."""

    state: str = "starting"  #: starting | running | done | failed | cancelled
    step_index: int = 0
    step_count: int = 0
    step_label: str = ""
    fraction: float = 0.0
    text: str = "Preparing…"
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=300))
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    result: InstalledBackend | None = None
    info: BackendInfo | None = None

    def last_lines(self, n: int = 8) -> list[str]:
        return list(self.log)[-n:]


_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")
_PIP_VERSION = re.compile(r"pip (\d+)\.(\d+)")


class _Cancelled(Exception):
    pass


class _StepFailed(Exception):
    pass


class InstallJob:
    """One install. ``start()`` runs the steps on a thread; call ``poll()`` often.

    Args:
        options: what to install where.
        before_commit: called on the main thread just before the new environment replaces the
            old one (stop a backend that runs from the old one).
    """

    TERMINATE_GRACE = 5.0

    def __init__(self, options: InstallOptions, *, before_commit: Callable[[], None] | None = None):
        self.options = replace(options, root=Path(options.root))
        self.before_commit = before_commit
        self.steps = plan_steps(self.options)
        self.progress = InstallProgress(step_count=len(self.steps))
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen | None = None
        self._child_lock = threading.Lock()
        self._finished = False
        self._log_file = None
        self._lock_record: dict | None = None  #: set while this job owns the install folder
        self._raw_progress = False  #: pip >= 24.1 prints "Progress a of b" lines
        self._detector = True  #: False for a Python newer than mediapipe 0.10.21 supports

    # -- paths

    @property
    def root(self) -> Path:
        return self.options.root

    @property
    def new_env(self) -> Path:
        return self.root / NEW_DIR

    @property
    def log_path(self) -> Path:
        return self.root / LOG

    # -- main-thread API

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self.progress.state = "running"
        self._thread = threading.Thread(target=self._run, name="pixie-install", daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self._finished

    def cancel(self) -> None:
        """Stops the install; the new environment is removed, an existing one is kept."""
        if self._finished:
            return
        self._cancel.set()
        self.progress.text = "Cancelling…"
        with self._child_lock:
            child = self._child
        if child is not None and child.poll() is None:
            try:
                child.terminate()
            except OSError:
                pass

    def poll(self) -> InstallProgress:
        """Applies the worker's events; finishes the install (rename) on the main thread."""
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            self._apply(kind, payload)
        return self.progress

    def wait(self, timeout: float = 3600.0, interval: float = 0.1) -> InstallProgress:
        """Blocking loop for headless use and tests: what the modal timer does."""
        deadline = time.monotonic() + timeout
        while not self._finished:
            self.poll()
            if time.monotonic() > deadline:
                self.cancel()
                if self._thread is not None:
                    self._thread.join(30)
                self.poll()
                raise TimeoutError("the install did not finish in time")
            time.sleep(interval)
        return self.progress

    def _apply(self, kind: str, payload) -> None:
        p = self.progress
        if kind == "log":
            p.log.append(payload)
            m = _PROGRESS.search(payload)
            if m and int(m.group(2)) > 0:
                self._set_fraction(min(1.0, int(m.group(1)) / int(m.group(2))))
                p.text = f"{p.step_label}: {int(m.group(1)) / 1e6:.0f} of {int(m.group(2)) / 1e6:.0f} MB"
            elif not m and payload.strip() and not payload.startswith("  "):
                p.text = f"{p.step_label}: {payload.strip()[:120]}"
        elif kind == "step":
            index, step = payload
            p.step_index, p.step_label = index + 1, step.label
            p.text = f"Step {index + 1} of {len(self.steps)}: {step.label}"
            self._set_fraction(0.0)
        elif kind == "warning":
            p.warnings.append(payload)
            p.log.append(f"WARNING: {payload}")
        elif kind == "info":
            p.info = payload
        elif kind == "built":
            self._commit()
        elif kind == "failed":
            self._finish("failed", error=payload)
        elif kind == "cancelled":
            self._finish("cancelled")

    def _set_fraction(self, within: float) -> None:
        done = sum(s.weight for s in self.steps[: max(0, self.progress.step_index - 1)])
        current = self.steps[self.progress.step_index - 1].weight if self.progress.step_index else 0.0
        total = sum(s.weight for s in self.steps)
        self.progress.fraction = max(self.progress.fraction, min(1.0, (done + within * current) / total))

    def _commit(self) -> None:
        """env.new becomes env (main thread, after stopping whatever runs from the old env)."""
        if self._cancel.is_set():
            self._cleanup_new()
            self._finish("cancelled")
            return
        try:
            if self.before_commit is not None:
                self.before_commit()
            env, old = self.root / ENV_DIR, self.root / OLD_DIR
            if env.exists():
                _rmtree(old)
                os.replace(env, old)
            os.replace(self.new_env, env)
            _rmtree(old)
        except OSError as exc:
            self._cleanup_new()
            self._finish(
                "failed",
                error=f"Could not put the new environment in place ({exc}). Close anything that uses "
                f"{self.root / ENV_DIR} (a running backend) and click Install Backend again.",
            )
            return
        self.progress.result = find_installed(self.root)
        if self.progress.result is None:
            self._finish("failed", error="The new environment has no completion marker.")
            return
        self._finish("done")

    def _finish(self, state: str, error: str | None = None) -> None:
        p = self.progress
        p.state = state
        p.error = error
        if state == "done":
            p.fraction = 1.0
            p.text = f"Installed: {p.result.summary}"
        elif state == "cancelled":
            p.text = "Cancelled; nothing was changed."
        else:
            p.text = f"Failed: {error}"
        self._release_lock()
        self._finished = True

    # -- worker thread

    def _emit(self, kind: str, payload=None) -> None:
        self._events.put((kind, payload))

    def _log(self, line: str) -> None:
        if self._log_file is not None:
            try:
                self._log_file.write(line + "\n")
                self._log_file.flush()
            except (OSError, ValueError):
                pass
        self._emit("log", line)

    def _run(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
            self._log_file = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
            self._log(f"pixie-blender Install Backend, {time.strftime('%Y-%m-%d %H:%M:%S')}")
            self._log(f"install folder: {self.root}")
            self._build()
            self._emit("built")
        except _Cancelled:
            self._log("cancelled")
            self._abandon()
            self._emit("cancelled")
        except (_StepFailed, InstallError) as exc:
            self._log(f"FAILED: {exc}")
            self._abandon()
            self._emit("failed", str(exc))
        except Exception as exc:  # never let the thread die silently
            self._log(f"FAILED: {type(exc).__name__}: {exc}")
            self._abandon()
            self._emit("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Cancelled()

    def _build(self) -> None:
        opts = self.options
        base = probe_base_python(opts.base_python)
        problems = preflight(opts, base)
        if problems:
            raise InstallError(" ".join(problems))
        torch = effective_torch(opts)
        self._log(f"base Python: {base.path} ({base.version_text})")
        self._log(f"torch: {torch.label}: {torch.reason}")
        for w in torch.warnings:
            self._emit("warning", w)
        self._log("source: " + (f"offline wheelhouse {opts.wheelhouse}" if opts.offline else "online package indexes"))
        if opts.mediapipe and base.version[:2] > MEDIAPIPE_MAX_PYTHON:
            self._detector = False
            self._emit(
                "warning",
                f"mediapipe 0.10.21 has no build for Python {base.version[0]}.{base.version[1]}: the backend uses "
                "OpenCV's detector (or name a Python 3.10-3.12 in 'Python for the Environment').",
            )
        self._cleanup_leftovers()
        tmp = self.root / "tmp"
        tmp.mkdir(exist_ok=True)
        # pip reads no configuration file at all (PIP_CONFIG_FILE=devnull; --isolated only skips the user's),
        # so a global pip.conf cannot add indexes or constraints; proxy variables still pass through.
        env_vars = {
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "TMP": str(tmp),
            "PIP_CONFIG_FILE": os.devnull,
            **opts.extra_env,
        }
        new = self.new_env
        py = env_python(new)
        try:
            for index, step in enumerate(self.steps):
                self._check_cancel()
                self._emit("step", (index, step))
                self._log(f"== {step.label}")
                try:
                    self._run_step(step, base, new, py, torch, env_vars)
                except _StepFailed as exc:
                    if not step.optional:
                        raise _StepFailed(f"{step.label} failed: {exc}") from None
                    self._emit(
                        "warning", f"mediapipe could not be installed ({exc}); the backend uses OpenCV's detector."
                    )
        finally:
            _rmtree(tmp)

    def _run_step(self, step: Step, base: BasePython, new: Path, py: Path, torch: TorchChoice, env_vars) -> None:
        if step.key == "venv":
            self._make_venv(base, new, env_vars)
            self._raw_progress = self._pip_supports_raw(py, env_vars)
        elif step.key == "torch":
            self._run_child(self._commands(new)["torch"], env_vars)
            version = self._installed_version(py, "torch", env_vars)
            (new / CONSTRAINTS).write_text(f"torch=={version}\n", encoding="utf-8")
            self._log(f"torch {version} installed; pinned in {CONSTRAINTS}")
        elif step.key == "backend":
            self._run_child(self._commands(new)["backend"], env_vars)
        elif step.key == "mediapipe":
            if self._detector:
                self._run_child(self._commands(new)["mediapipe"], env_vars)
            else:
                self._log("skipped: no mediapipe build for this Python")
        elif step.key == "verify":
            self._verify(py, torch, env_vars)

    def _commands(self, new: Path) -> dict:
        return step_commands(self.options, new, raw_progress=self._raw_progress, detector=self._detector)

    def _make_venv(self, base: BasePython, new: Path, env_vars) -> None:
        pip_wheel = None if base.has_ensurepip else bundled_pip_wheel(self.options.wheelhouse)
        cmd = [str(base.path), "-I", "-m", "venv"]
        if pip_wheel is not None:
            cmd.append("--without-pip")
        self._run_child([*cmd, str(new)], env_vars)
        if pip_wheel is not None:  # pip runs from its own wheel to install itself
            self._run_child(
                [str(env_python(new)), "-I", f"{pip_wheel}/pip", "install", "--isolated", "--no-index", str(pip_wheel)],
                env_vars,
            )

    def _pip_supports_raw(self, py: Path, env_vars) -> bool:
        lines = self._run_child([str(py), "-I", "-m", "pip", "--version"], env_vars, quiet=True)
        m = _PIP_VERSION.search(" ".join(lines))
        return bool(m) and (int(m.group(1)), int(m.group(2))) >= (24, 1)

    def _installed_version(self, py: Path, dist: str, env_vars) -> str:
        code = f"from importlib import metadata; print(metadata.version({dist!r}))"
        lines = self._run_child([str(py), "-I", "-c", code], env_vars, quiet=True)
        version = lines[-1].strip() if lines else ""
        if not version:
            raise _StepFailed(f"{dist} is not installed in the new environment")
        return version

    def _verify(self, py: Path, torch: TorchChoice, env_vars) -> None:
        info = probe_backend(py, env=processes.child_env(env_vars))
        self._emit("info", info)
        self._log(f"backend starts: {info.summary}")
        lines = self._run_child(
            [str(py), "-I", "-m", "pixie_backend", "doctor", "--json"], env_vars, quiet=True, ok_codes=(0, 1)
        )
        try:
            doctor = json.loads(lines[-1])
        except (ValueError, IndexError):
            raise _StepFailed("pixie-backend doctor gave no report") from None
        self._log(f"doctor: data folder {doctor.get('data_dir')}, complete: {doctor.get('complete')}")
        if torch.device == "cuda" and info.device != "cuda":
            self._emit(
                "warning",
                "torch was installed with CUDA but does not see the GPU; the backend will run on the CPU.",
            )
        marker = {
            "schema": MARKER_SCHEMA,
            "backend_version": info.backend_version,
            "torch": info.torch_version,
            "variant": torch.variant,
            "device": info.device,
            "gpu": info.gpu,
            "python": info.python,
            "base_python": str(self.options.base_python),
            "offline": self.options.offline,
            "mediapipe": info.packages.get("mediapipe"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        processes.write_json_atomic(self.new_env / MARKER, marker)

    def _run_child(
        self, cmd: Sequence[str], env_vars: Mapping[str, str], *, quiet: bool = False, ok_codes=(0,)
    ) -> list[str]:
        """Runs one command, streaming its merged output to the log. Returns its lines."""
        self._check_cancel()
        if not quiet:
            self._log("$ " + " ".join(_shorten(c) for c in cmd))
        try:
            child = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=processes.child_env(env_vars),
                cwd=str(self.root),
                **processes.popen_kwargs(),
            )
        except OSError as exc:
            raise _StepFailed(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
        with self._child_lock:
            self._child = child
        self._record_child(child, cmd)
        lines: list[str] = []
        try:
            for line in child.stdout:
                line = line.rstrip("\r\n")
                lines.append(line)
                if not quiet or line.startswith(("ERROR", "Traceback")):
                    self._log(line)
            child.wait()
        finally:
            with self._child_lock:
                self._child = None
            if child.poll() is None:
                child.kill()
                child.wait()
        if self._cancel.is_set():
            raise _Cancelled()
        if child.returncode not in ok_codes:
            raise _StepFailed(explain_failure(lines, child.returncode))
        return lines

    # -- lock and leftovers

    @property
    def _lock_path(self) -> Path:
        return self.root / LOCK

    def _acquire_lock(self) -> None:
        lock = processes.read_json(self._lock_path)
        if lock is not None:
            pid = int(lock.get("pid", 0))
            young = time.time() - float(lock.get("started", 0)) < LOCK_MAX_AGE_S
            if pid != os.getpid() and young and processes.process_alive(pid):
                raise InstallError(
                    f"Another install into {self.root} is running (process {pid}); wait for it or cancel it."
                )
            # Stale: a Blender that died mid-install. End a pip it left behind (checked by command line).
            child = lock.get("child") or {}
            if child.get("pid"):
                processes.end_process(int(child["pid"]), child.get("command") or [])
        self._lock_record = {"pid": os.getpid(), "started": time.time(), "child": None}
        processes.write_json_atomic(self._lock_path, self._lock_record)

    def _record_child(self, child: subprocess.Popen, cmd: Sequence[str]) -> None:
        record = self._lock_record
        if record is None:
            return
        record["child"] = {"pid": child.pid, "command": [str(c) for c in cmd[:3]]}
        try:
            processes.write_json_atomic(self._lock_path, record)
        except OSError:
            pass

    def _release_lock(self) -> None:
        if self._lock_record is not None:
            self._lock_path.unlink(missing_ok=True)
            self._lock_record = None

    def _cleanup_leftovers(self) -> None:
        for name in (NEW_DIR, OLD_DIR, "tmp"):
            path = self.root / name
            if path.exists():
                self._log(f"removing {name} left by an earlier attempt")
                _rmtree(path)
                if path.exists():
                    raise InstallError(f"Cannot remove {path} left by an earlier attempt; delete it by hand.")

    def _abandon(self) -> None:
        """Worker side of a failure or cancel: remove what was made and free the folder, even if
        nobody polls any more (the add-on was disabled meanwhile)."""
        self._cleanup_new()
        self._release_lock()

    def _cleanup_new(self) -> None:
        if self._lock_record is None:
            return  # the folder belongs to another install (or none was made)
        _rmtree(self.new_env)
        _rmtree(self.root / "tmp")


_NETWORK = re.compile(
    r"ProxyError|NewConnectionError|Failed to establish a new connection|Name or service not known|"
    r"getaddrinfo failed|Temporary failure in name resolution|Read timed out|ConnectTimeout|SSLError|"
    r"CERTIFICATE_VERIFY_FAILED|Network is unreachable"
)
_RETRY_HOST = re.compile(r"Retrying .*?: (/\S*)")


def explain_failure(lines: Sequence[str], returncode: int | None) -> str:
    """One sentence from a failed child's output (pip's, mostly): a network problem, a package
    that cannot be found, or the last error line."""
    text = [ln.strip() for ln in lines if ln.strip()]
    network = [ln for ln in text if _NETWORK.search(ln)]
    if network:
        reason = _NETWORK.search(network[-1]).group(0)
        return (
            f"the download failed ({reason}). Check the network connection and proxy settings (HTTPS_PROXY), "
            "or install the full (offline) zip"
        )
    for ln in text:
        if ln.startswith(("ERROR: No matching distribution found", "ERROR: Could not find a version")):
            return ln[len("ERROR: ") :]
    errors = [ln for ln in text if ln.startswith("ERROR:") and "for help visit" not in ln]
    if errors:
        return errors[-1][len("ERROR: ") :][:300]
    return f"exit code {returncode}" + (f": {text[-1][:300]}" if text else "")


def _shorten(arg: object) -> str:
    text = str(arg)
    return text if len(text) < 160 else text[:70] + "…" + text[-70:]


def _rmtree(path: Path, attempts: int = 5) -> None:
    """Removes a folder; retries a little (Windows may hold files of a just-killed process)."""
    for i in range(attempts):
        if not Path(path).exists():
            return
        shutil.rmtree(path, ignore_errors=True)
        if not Path(path).exists():
            return
        time.sleep(0.2 * (i + 1))


def remove_installed(root: Path) -> None:
    """Deletes the private environment (renamed first, so a failure leaves no half environment
    that :func:`find_installed` would accept)."""
    root = Path(root)
    env = root / ENV_DIR
    if not env.exists():
        return
    old = root / OLD_DIR
    _rmtree(old)
    os.replace(env, old)
    _rmtree(old)


def default_log_text(root: Path, lines: int = 20) -> list[str]:
    """The last lines of the last install's log (for the failure section of the UI)."""
    try:
        text = (Path(root) / LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
