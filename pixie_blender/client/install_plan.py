"""What "Install Backend" installs, where, and whether it can (standard library only, no ``bpy``).

* The install folder's layout: ``env/`` (the environment, accepted only with its completion marker
  ``pixie-install.json``), ``env.new/`` while building, ``install.log``, ``install.lock``;
  :func:`find_installed`, :func:`remove_installed`.
* What the extension carries (:func:`find_bundle`): the backend wheel and, in the full zip, a wheelhouse.
* :class:`InstallOptions` and :func:`preflight`: a base Python 3.10+ with ``venv`` (pip from
  ``ensurepip`` or the wheelhouse), free disk space, a short enough folder on Windows, network only
  if allowed or not needed, a wheelhouse made for this Python.
* The steps and their pip commands (:func:`plan_steps`, :func:`step_commands`): torch first from the
  index :mod:`.torch_choice` picked, then the backend wheel with its ``[detector]`` extra under a
  constraints file pinning the exact torch build, then ``mediapipe==0.10.21 --no-deps``. Every pip
  is ``<env python> -I -m pip install --isolated --only-binary=:all: ...`` and, with a wheelhouse,
  ``--no-index --find-links``.
* :func:`probe_backend`: the versions and device a backend environment reports.

:mod:`.installer` runs the steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
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


def remove_installed(root: Path) -> None:
    """Deletes the private environment (renamed first, so a failure leaves no half environment
    that :func:`find_installed` would accept)."""
    root = Path(root)
    env = root / ENV_DIR
    if not env.exists():
        return
    old = root / OLD_DIR
    rmtree_retry(old)
    os.replace(env, old)
    rmtree_retry(old)


def rmtree_retry(path: Path, attempts: int = 5) -> None:
    """Removes a folder; retries a little (Windows may hold files of a just-killed process)."""
    for i in range(attempts):
        if not Path(path).exists():
            return
        shutil.rmtree(path, ignore_errors=True)
        if not Path(path).exists():
            return
        time.sleep(0.2 * (i + 1))
