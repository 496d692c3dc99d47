"""Start, watch and stop backend child processes (standard library only, no ``bpy``).

:class:`BackendProcess` is one child ``[python, "-m", "pixie_backend", ...]``:

* started without a shell (``CREATE_NO_WINDOW`` on Windows), its **stdin kept open**: the backend
  exits when its stdin reaches end-of-file, so a Blender that dies (even by a crash) takes it along;
* a reader thread per pipe: stdout lines go to a queue that the main thread drains
  (:meth:`BackendProcess.lines`), stderr is kept as a bounded tail for error messages;
* with ``handshake=True`` the first stdout line must be the handshake (below), checked for the
  protocol and for the backend's version against the add-on's;
* stopping: close stdin (or send a line such as ``cancel``), wait, terminate, kill
  (:meth:`BackendProcess.request_stop` without blocking, :meth:`BackendProcess.stop` blocking).

:class:`Supervisor` keeps the one long-lived backend service of a Blender session: a pidfile under
the extension's user folder records it, so that a backend left by a crashed Blender is found and
ended by its recorded id (after checking its command line: a reused id is left alone); an idle
timeout stops it; ``atexit`` and the add-on's ``unregister()`` stop it.

The handshake is one JSON object on one stdout line, printed once the service listens::

    {"event": "ready", "protocol": 1, "port": 53211, "token": "<hex>", "device": "cuda:0",
     "versions": {"pixie_backend": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11.7"}}

Nothing but the handshake (and later machine-read events) may go to stdout; logs go to stderr.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import processes

_NO_BACKEND = re.compile(r"No module named '?pixie_backend'?\s*$")
#: The handshake protocol this add-on speaks.
PROTOCOL = 1
HANDSHAKE_EVENT = "ready"


class SupervisorError(Exception):
    """The backend could not be started or did not behave; the message is for the user."""


class HandshakeError(SupervisorError):
    """The first stdout line was not a valid handshake."""


class VersionMismatch(SupervisorError):
    """The backend speaks another protocol or has another version than the add-on."""


class BackendExited(SupervisorError):
    """The backend exited before it was ready."""


class StartTimeout(SupervisorError):
    """The backend did not report ready in time."""


def backend_command(python: str | os.PathLike, *args: str, isolated: bool = False) -> list[str]:
    """``[python, ("-I",) "-m", "pixie_backend", *args]``. ``isolated``: Python's ``-I`` (no user
    site, no ``PYTHON*`` variables), for the private environment that "Install Backend" made."""
    return [str(python), *(["-I"] if isolated else []), "-m", "pixie_backend", *args]


# --------------------------------------------------------------------------------------------------
# Handshake


@dataclass(frozen=True)
class Handshake:
    protocol: int
    port: int
    token: str = field(repr=False)  #: never printed or logged
    device: str
    versions: Mapping[str, str]

    @property
    def backend_version(self) -> str:
        return str(self.versions.get("pixie_backend", ""))


def parse_handshake(line: str) -> Handshake:
    """The handshake in ``line``, or :class:`HandshakeError` saying what is wrong with it."""
    shown = line.strip()[:200]
    try:
        doc = json.loads(line)
    except ValueError:
        raise HandshakeError(f"The backend printed something that is not its start-up message: {shown!r}") from None
    if not isinstance(doc, dict) or doc.get("event") != HANDSHAKE_EVENT:
        raise HandshakeError(f"The backend's first message was not 'ready': {shown!r}")
    problems = []
    protocol, port, token = doc.get("protocol"), doc.get("port"), doc.get("token")
    if not isinstance(protocol, int) or isinstance(protocol, bool):
        problems.append("no protocol number")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        problems.append("no valid port")
    if not isinstance(token, str) or len(token) < 16 or any(c not in "0123456789abcdefABCDEF" for c in token):
        problems.append("no valid token")
    versions = doc.get("versions")
    if not isinstance(versions, dict) or not isinstance(versions.get("pixie_backend"), str):
        problems.append("no backend version")
    if problems:
        raise HandshakeError("The backend's start-up message is incomplete: " + ", ".join(problems) + ".")
    return Handshake(protocol, port, token, str(doc.get("device", "")), {k: str(v) for k, v in versions.items()})


def version_problem(handshake: Handshake, addon_version: str, protocol: int = PROTOCOL) -> str | None:
    """A sentence saying what to do when the backend does not match the add-on, else None."""
    if handshake.protocol != protocol:
        return (
            f"The backend speaks protocol {handshake.protocol} but this add-on speaks protocol {protocol}. "
            "Click Install Backend in the add-on preferences to install the backend that comes with this add-on."
        )
    if handshake.backend_version != addon_version:
        return (
            f"The backend is version {handshake.backend_version} but the add-on is version {addon_version}. "
            "Click Install Backend in the add-on preferences to install the matching backend "
            "(or update the environment named in Backend Python)."
        )
    return None


# --------------------------------------------------------------------------------------------------
# One child process


class BackendProcess:
    """One backend child process.

    Args:
        command: the argv (see :func:`backend_command`); run without a shell.
        env: the full environment (default: :func:`processes.child_env`).
        handshake: expect the handshake as the first stdout line.
        addon_version: if given, a backend of another version fails the start (:class:`VersionMismatch`).
        stderr_lines: how many of the last stderr lines to keep.
        on_exit: called (from the main thread, in :meth:`poll`) once the child has exited.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        handshake: bool = True,
        addon_version: str | None = None,
        stderr_lines: int = 200,
        on_exit: Callable[[BackendProcess], None] | None = None,
    ):
        self.command = [str(c) for c in command]
        self.env = dict(env) if env is not None else processes.child_env()
        self.cwd = cwd
        self.expect_handshake = handshake
        self.addon_version = addon_version
        self.on_exit = on_exit
        self.proc: subprocess.Popen | None = None
        self.handshake: Handshake | None = None
        self.error: SupervisorError | None = None
        self.started_at: float | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._stdout_done = threading.Event()
        self._stop_at: float | None = None
        self._stop_grace = 5.0
        self._exit_reported = False
        self._lock = threading.Lock()

    # -- start

    def start(self) -> None:
        """Starts the child (returns at once). :class:`SupervisorError` if it cannot be run."""
        if self.proc is not None:
            raise RuntimeError("already started")
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                **processes.popen_kwargs(),
            )
        except OSError as exc:
            raise SupervisorError(f"Cannot run the backend Python {self.command[0]}: {exc.strerror or exc}") from None
        self.started_at = time.monotonic()
        for target, stream, name in (
            (self._read_stdout, self.proc.stdout, "pixie-backend-stdout"),
            (self._read_stderr, self.proc.stderr, "pixie-backend-stderr"),
        ):
            threading.Thread(target=target, args=(stream,), name=name, daemon=True).start()

    def _read_stdout(self, stream) -> None:
        try:
            for line in stream:
                line = line.rstrip("\r\n")
                if line.strip():
                    self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._stdout_done.set()

    def _read_stderr(self, stream) -> None:
        try:
            for line in stream:
                self._stderr.append(line.rstrip("\r\n")[:1000])
        except (OSError, ValueError):
            pass

    # -- state

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    @property
    def ready(self) -> bool:
        return self.handshake is not None and self.error is None and self.alive

    @property
    def state(self) -> str:
        """One of "starting", "ready", "failed", "stopping" or "exited"."""
        if self.proc is None:
            return "starting"
        if self.error is not None:
            return "failed"
        if not self.alive:
            return "exited"
        if self._stop_at is not None:
            return "stopping"
        if self.expect_handshake and self.handshake is None:
            return "starting"
        return "ready"

    @property
    def done(self) -> bool:
        """The child exited and every stdout line it wrote has been read (one-shot commands)."""
        return self.proc is not None and not self.alive and self._stdout_done.is_set() and self._lines.empty()

    def stderr_tail(self, n: int | None = None) -> list[str]:
        tail = list(self._stderr)
        return tail if n is None else tail[-n:]

    def _explain_exit(self) -> str:
        code = self.returncode
        tail = [ln for ln in self.stderr_tail() if ln.strip()][-3:]
        if any(_NO_BACKEND.search(ln) for ln in tail):
            return (
                "pixie-backend is not installed in that Python environment: click Install Backend in the add-on "
                "preferences, or choose the right Backend Python."
            )
        detail = " / ".join(tail) if tail else "no error message"
        return f"The backend exited (code {code}) before it was ready: {detail}"

    # -- main-thread API

    def poll(self) -> None:
        """Reads the handshake when it arrives, escalates a requested stop, notices the exit.
        Call it often (a timer); it never blocks."""
        if self.proc is None:
            return
        if self.expect_handshake and self.handshake is None and self.error is None:
            try:
                first = self._lines.get_nowait()
            except queue.Empty:
                first = None
            if first is not None:
                try:
                    hs = parse_handshake(first)
                    problem = version_problem(hs, self.addon_version) if self.addon_version else None
                    if problem:
                        raise VersionMismatch(problem)
                    self.handshake = hs
                except SupervisorError as exc:
                    self.error = exc
                    self.request_stop(grace=2.0)
            elif self._stdout_done.is_set() and not self.alive:
                self.error = BackendExited(self._explain_exit())
        self._escalate()
        if not self.alive and not self._exit_reported and self._stdout_done.wait(0):
            self._exit_reported = True
            self._close_pipes()
            if self.on_exit is not None:
                self.on_exit(self)

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.02) -> Handshake:
        """Blocks until the handshake (headless use and tests; the UI polls instead).

        Raises :class:`HandshakeError`, :class:`VersionMismatch`, :class:`BackendExited` or
        :class:`StartTimeout` (the child is then stopped)."""
        if not self.expect_handshake:
            raise RuntimeError("this process has no handshake")
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if self.error is not None:
                self.stop(timeout=3.0)
                raise self.error
            if self.handshake is not None:
                return self.handshake
            if time.monotonic() > deadline:
                self.error = StartTimeout(
                    f"The backend did not report ready within {timeout:.0f} s"
                    + (": " + " / ".join(self.stderr_tail(3)) if self.stderr_tail() else ".")
                )
                self.stop(timeout=3.0)
                raise self.error
            time.sleep(interval)

    def lines(self) -> list[str]:
        """The stdout lines received so far after the handshake (raw text; parsing is the caller's)."""
        if self.expect_handshake and self.handshake is None:
            self.poll()
            if self.handshake is None:
                return []
        out = []
        while True:
            try:
                out.append(self._lines.get_nowait())
            except queue.Empty:
                return out

    def send(self, line: str) -> bool:
        """Writes one line to the child's stdin. False if the child is gone."""
        if self.proc is None or self.proc.stdin is None:
            return False
        try:
            with self._lock:
                self.proc.stdin.write(line.rstrip("\n") + "\n")
                self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def request_stop(self, line: str | None = None, *, grace: float = 5.0) -> None:
        """Asks the child to stop without blocking: sends ``line`` (e.g. "cancel") or closes stdin;
        :meth:`poll` terminates it after ``grace`` seconds and kills it after twice that."""
        if self.proc is None or self._stop_at is not None:
            return
        self._stop_at, self._stop_grace = time.monotonic(), grace
        if line is None or not self.send(line):
            self._close_stdin()

    def _escalate(self) -> None:
        if self._stop_at is None or not self.alive:
            return
        waited = time.monotonic() - self._stop_at
        if waited > 2 * self._stop_grace:
            self.proc.kill()
        elif waited > self._stop_grace:
            self.proc.terminate()

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stops the child and waits: stdin closed, then terminate, then kill. Returns its exit code."""
        if self.proc is None:
            return None
        if self.alive:
            self._close_stdin()
            for action in (None, self.proc.terminate, self.proc.kill):
                if action is not None:
                    try:
                        action()
                    except OSError:
                        pass
                try:
                    self.proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._stdout_done.wait(2.0)
        self.poll()
        return self.returncode

    def _close_stdin(self) -> None:
        try:
            if self.proc is not None and self.proc.stdin is not None:
                with self._lock:
                    self.proc.stdin.close()
        except (OSError, ValueError):
            pass

    def _close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, ValueError):
                pass


# --------------------------------------------------------------------------------------------------
# The add-on's backend service


_OWNER: dict | None = None


def _owner_record() -> dict:
    """This Blender's id and command line (asked once: on Windows it costs a PowerShell start)."""
    global _OWNER
    if _OWNER is None or _OWNER["owner_pid"] != os.getpid():
        _OWNER = {"owner_pid": os.getpid(), "owner_command": processes.process_command_line(os.getpid()) or ""}
    return dict(_OWNER)


def _owner_runs(record: dict) -> bool:
    """True if the Blender that wrote ``record`` still runs (same id *and* same command line)."""
    owner = int(record.get("owner_pid", 0))
    return processes.process_alive(owner) and processes.process_command_line(owner) == record.get("owner_command")


def end_stale_backends(run_dir: Path) -> list[str]:
    """Ends the backends recorded in ``run_dir`` whose Blender is gone; returns one sentence per
    pidfile handled. A backend whose Blender still runs (another Blender instance) is left alone."""
    messages = []
    if not run_dir.is_dir():
        return messages
    for pidfile in sorted(run_dir.glob("backend-*.json")):
        record = processes.read_json(pidfile)
        if record is None:
            pidfile.unlink(missing_ok=True)
            continue
        if int(record.get("owner_pid", 0)) != os.getpid() and _owner_runs(record):
            continue  # another Blender, still running, owns that backend
        pid, command = int(record.get("pid", 0)), record.get("command") or []
        outcome = processes.end_process(pid, command)
        if outcome == "ended":
            messages.append(f"Ended a backend (process {pid}) left running by an earlier Blender session.")
        elif outcome == "not ours":
            messages.append(f"Process {pid} from an old record is another program now; left alone.")
        elif outcome == "unknown":
            messages.append(f"Could not check process {pid} from an old record; left alone.")
            continue  # keep the record for a later try
        pidfile.unlink(missing_ok=True)
    return messages


class Supervisor:
    """At most one long-lived backend service for this Blender session.

    Args:
        state_dir: a folder of the add-on's own (the extension's user folder); pidfiles go to
            ``state_dir/run``.
        addon_version: the add-on's version; a backend of another version is refused.
        idle_timeout: seconds without :meth:`touch` after which :meth:`check_idle` stops it (0: never).
    """

    def __init__(self, state_dir: Path, addon_version: str, *, idle_timeout: float = 900.0):
        self.run_dir = Path(state_dir) / "run"
        self.addon_version = addon_version
        self.idle_timeout = idle_timeout
        self.process: BackendProcess | None = None
        self.last_activity = time.monotonic()
        self.messages: list[str] = []
        self._atexit = False

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"backend-{os.getpid()}.json"

    def start(self, command: Sequence[str], *, env: Mapping[str, str] | None = None) -> BackendProcess:
        """Ends stale backends, stops the current one, starts ``command`` (returns at once; poll
        :attr:`process` or call its ``wait_ready``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.messages = end_stale_backends(self.run_dir)
        self.stop()
        proc = BackendProcess(command, env=env, addon_version=self.addon_version, on_exit=self._exited)
        proc.start()
        self.process = proc
        processes.write_json_atomic(
            self.pidfile,
            {"pid": proc.pid, "command": proc.command, "started": time.time(), **_owner_record()},
        )
        if not self._atexit:
            atexit.register(self.shutdown)
            self._atexit = True
        self.touch()
        return proc

    def _exited(self, proc: BackendProcess) -> None:
        if proc is self.process:
            self.pidfile.unlink(missing_ok=True)

    def touch(self) -> None:
        """Marks activity (each request); postpones the idle stop."""
        self.last_activity = time.monotonic()

    def poll(self) -> None:
        if self.process is not None:
            self.process.poll()

    def check_idle(self, now: float | None = None) -> bool:
        """Stops a running backend idle for longer than the timeout; True if it did."""
        self.poll()
        if self.process is None or not self.process.alive or self.idle_timeout <= 0:
            return False
        if (now if now is not None else time.monotonic()) - self.last_activity < self.idle_timeout:
            return False
        self.stop()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            proc.stop(timeout=timeout)
        self.pidfile.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Blender quits or the add-on is disabled: stop the backend, forget the atexit hook."""
        self.stop(timeout=3.0)
        if self._atexit:
            atexit.unregister(self.shutdown)
            self._atexit = False
