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
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import processes
from .install_plan import (
    CONSTRAINTS,
    ENV_DIR,
    LOCK,
    LOG,
    MARKER,
    MARKER_SCHEMA,
    MEDIAPIPE_MAX_PYTHON,
    NEW_DIR,
    OLD_DIR,
    BackendInfo,
    BasePython,
    InstalledBackend,
    InstallError,
    InstallOptions,
    Step,
    bundled_pip_wheel,
    effective_torch,
    env_python,
    find_installed,
    plan_steps,
    preflight,
    probe_backend,
    probe_base_python,
    rmtree_retry,
    step_commands,
)
from .torch_choice import TorchChoice

#: A lock older than this is stale even if its process id is in use again.
LOCK_MAX_AGE_S = 12 * 3600


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
                rmtree_retry(old)
                os.replace(env, old)
            os.replace(self.new_env, env)
            rmtree_retry(old)
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
            rmtree_retry(tmp)

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
                rmtree_retry(path)
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
        rmtree_retry(self.new_env)
        rmtree_retry(self.root / "tmp")


_NETWORK = re.compile(
    r"ProxyError|NewConnectionError|Failed to establish a new connection|Name or service not known|"
    r"getaddrinfo failed|Temporary failure in name resolution|Read timed out|ConnectTimeout|SSLError|"
    r"CERTIFICATE_VERIFY_FAILED|Network is unreachable"
)


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
