"""Drive ``pixie-backend doctor --json`` and ``pixie-backend fetch-data`` from the add-on.

Standard library only (no ``bpy``), so it is unit-tested in plain Python. The add-on never
imports ``pixie_backend``: it runs ``[backend_python, "-m", "pixie_backend", ...]`` as a child
process (no shell). ``fetch-data`` runs as a :class:`~.supervisor.BackendProcess` without a
handshake (the one child-process class of the add-on: reader threads, a stderr tail, stop
escalation); its JSON lines are parsed here into a :class:`FetchProgress` when the Blender side
polls (:meth:`FetchJob.poll`, from a modal timer).

Credentials: :meth:`FetchJob.start` writes them once, as one JSON line, to the child's stdin and
keeps no reference to them; stdin then stays open so that :meth:`FetchJob.cancel` can send a
``cancel`` line (a clean stop on every platform), escalating to ``terminate()``/``kill()`` when the
child does not stop. Nothing here stores, logs or prints a password; the child's stderr is kept
only as a short tail for error messages (the backend itself never prints passwords).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import processes
from .protocol import ProtocolError, parse_event
from .supervisor import BackendProcess, SupervisorError

#: The ``doctor --json`` schema this client understands.
DOCTOR_SCHEMA = 1


@dataclass(frozen=True)
class AccountInfo:
    key: str
    label: str
    site: str
    licence_url: str


#: Shown even when the backend cannot be asked (same values as the backend's registry).
ACCOUNTS: dict[str, AccountInfo] = {
    "smplx": AccountInfo(
        "smplx", "SMPL-X", "https://smpl-x.is.tue.mpg.de", "https://smpl-x.is.tue.mpg.de/modellicense.html"
    ),
    "pixie": AccountInfo(
        "pixie", "PIXIE", "https://pixie.is.tue.mpg.de", "https://pixie.is.tue.mpg.de/license.html"
    ),
}


class BackendError(Exception):
    """The backend could not be run or gave an answer this client cannot read."""


def backend_command(backend_python: str | os.PathLike, *args: str) -> list[str]:
    return [str(backend_python), "-m", "pixie_backend", *args]


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment (:func:`processes.child_env`; a user's own environment may rely on
    ``PYTHONPATH``, so it is kept)."""
    return processes.child_env(extra, keep_pythonpath=True)


def _popen_kwargs() -> dict[str, Any]:
    return processes.popen_kwargs()


def check_backend_python(backend_python: str | os.PathLike | None) -> Path:
    """The interpreter as a Path, or :class:`BackendError` saying what to set."""
    if not backend_python or not str(backend_python).strip():
        raise BackendError(
            "Set the backend Python in the add-on preferences: the python executable of the "
            "environment where pixie-backend is installed (e.g. .venv/bin/python or "
            ".venv\\Scripts\\python.exe)."
        )
    path = Path(str(backend_python)).expanduser()
    if not path.is_file():
        raise BackendError(f"The backend Python {path} does not exist.")
    return path


def _explain_failure(stderr: str, returncode: int | None) -> str:
    tail = stderr.strip().splitlines()[-3:] if stderr.strip() else []
    if any("No module named pixie_backend" in line for line in tail):
        return (
            "pixie-backend is not installed in that Python environment "
            "(pip install pixie-blender, or choose the right interpreter)."
        )
    text = " / ".join(tail) if tail else f"exit code {returncode}"
    return f"The backend failed: {text}"


# --------------------------------------------------------------------------------------------------
# Data-folder status (doctor --json)


@dataclass(frozen=True)
class AssetRow:
    key: str
    filename: str
    need: str  #: "required" | "texture" | "optional"
    present: bool
    size: int | None
    purpose: str
    licence: str
    licence_url: str
    register_url: str
    domain: str | None  #: download domain (= account key), None for manual files
    archive: str | None
    missing_effect: str
    instructions: str
    url: str | None
    commands: tuple[str, ...]


@dataclass(frozen=True)
class DataStatus:
    data_dir: str
    complete: bool
    texture_complete: bool
    synthetic: bool
    assets: tuple[AssetRow, ...]
    text: str

    @classmethod
    def from_doctor(cls, doc: Mapping[str, Any]) -> DataStatus:
        schema = doc.get("schema") if isinstance(doc, Mapping) else None
        if schema != DOCTOR_SCHEMA:
            raise BackendError(
                f"unsupported doctor report (schema {schema!r}, expected {DOCTOR_SCHEMA}): "
                "update the backend or the add-on"
            )
        rows = []
        for a in doc["assets"]:
            dl = a.get("download") or None
            rows.append(
                AssetRow(
                    key=a["key"],
                    filename=a["filename"],
                    need=a["need"],
                    present=bool(a["present"]),
                    size=a.get("size"),
                    purpose=a.get("purpose", ""),
                    licence=a.get("licence", ""),
                    licence_url=a.get("licence_url", ""),
                    register_url=a.get("register_url", ""),
                    domain=dl["domain"] if dl else None,
                    archive=a.get("archive"),
                    missing_effect=a.get("missing_effect", ""),
                    instructions=a.get("instructions", ""),
                    url=a.get("url"),
                    commands=tuple(a.get("commands") or ()),
                )
            )
        return cls(
            data_dir=doc["data_dir"],
            complete=bool(doc["complete"]),
            texture_complete=bool(doc["texture_complete"]),
            synthetic=bool(doc.get("synthetic")),
            assets=tuple(rows),
            text=doc.get("text", ""),
        )

    def missing_downloadable(self) -> list[AssetRow]:
        return [a for a in self.assets if not a.present and a.domain is not None]

    def missing_manual(self) -> list[AssetRow]:
        return [a for a in self.assets if not a.present and a.domain is None]

    def accounts_needed(self) -> list[str]:
        """Account keys whose files are missing, in a stable order."""
        needed = {a.domain for a in self.missing_downloadable()}
        return [k for k in ACCOUNTS if k in needed]

    def licences(self) -> list[tuple[str, str, str]]:
        """(label, licence url, registration url) of the downloadable files' licences."""
        out = []
        for key, acc in ACCOUNTS.items():
            rows = [a for a in self.assets if a.domain == key]
            url = rows[0].licence_url if rows else acc.licence_url
            site = rows[0].register_url if rows else acc.site
            out.append((acc.label, url, site))
        return out


def run_doctor(
    backend_python: str | os.PathLike | None,
    data_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> DataStatus:
    """Runs ``doctor --json`` (blocking, a fraction of a second) and parses its report."""
    python = check_backend_python(backend_python)
    args = ["doctor", "--json"]
    if data_dir:
        args += ["--data-dir", str(data_dir)]
    try:
        proc = subprocess.run(
            backend_command(python, *args),
            capture_output=True,
            timeout=timeout,
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            **_popen_kwargs(),
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"The backend did not answer within {timeout:.0f} s.") from None
    except OSError as exc:
        raise BackendError(f"Cannot run the backend Python {python}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise BackendError(_explain_failure(proc.stderr, proc.returncode)) from None
    return DataStatus.from_doctor(doc)


class DoctorProbe:
    """:func:`run_doctor` on a background thread (so that drawing never waits for it)."""

    def __init__(self, backend_python, data_dir=None, *, env: Mapping[str, str] | None = None):
        self.key = (str(backend_python or ""), str(data_dir or ""))
        self.result: DataStatus | None = None
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(backend_python, data_dir, env), name="pixie-doctor", daemon=True
        )
        self._thread.start()

    def _run(self, backend_python, data_dir, env) -> None:
        try:
            self.result = run_doctor(backend_python, data_dir, env=env)
        except BackendError as exc:
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


# --------------------------------------------------------------------------------------------------
# Downloads (fetch-data --json-progress --credentials-stdin)


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@dataclass
class FetchProgress:
    """What the UI shows; updated from the events by :meth:`FetchJob.poll`."""

    state: str = "starting"  #: starting | running | done | failed | cancelled
    file: str = ""
    index: int = 0
    count: int = 0
    done: int = 0
    total: int | None = None
    text: str = "Starting the backend…"
    endpoint_label: str = ""
    official_endpoint: bool = True
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    error_kind: str | None = None
    error_message: str | None = None
    exit_code: int | None = None
    status: DataStatus | None = None

    @property
    def fraction(self) -> float:
        """Overall progress 0..1: finished files plus the current file's share."""
        if self.state == "done":
            return 1.0
        if not self.count:
            return 0.0
        current = (self.done / self.total) if self.total else 0.0
        return max(0.0, min(1.0, (self.index - 1 + current) / self.count)) if self.index else 0.0


class FetchJob:
    """One ``fetch-data`` child process.

    Args:
        backend_python: interpreter of the backend environment.
        data_dir: data folder, or None for the backend's default.
        only: account keys to restrict to (``--only``).
        env: extra environment for the child (tests point ``PIXIE_DOWNLOAD_ENDPOINT`` here).
    """

    CANCEL_GRACE = 5.0

    def __init__(
        self,
        backend_python: str | os.PathLike | None,
        data_dir: str | os.PathLike | None = None,
        *,
        only: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.python = check_backend_python(backend_python)
        self.data_dir = str(data_dir) if data_dir else None
        self.only = list(only or [])
        self.env = dict(env or {})
        self.progress = FetchProgress()
        self.proc: BackendProcess | None = None
        self._cancelled = False
        self._finished = False
        self._got_done = False
        self._protocol_error: str | None = None

    def command(self) -> list[str]:
        args = ["fetch-data", "--json", "--credentials-stdin", "--accept-licences"]
        if self.data_dir:
            args += ["--data-dir", self.data_dir]
        for key in self.only:
            args += ["--only", key]
        return backend_command(self.python, *args)

    def start(self, credentials: Mapping[str, tuple[str, str]]) -> None:
        """Starts the child and hands it ``{account: (username, password)}`` over stdin.

        The caller should drop its own references to the passwords afterwards; this object
        keeps none.
        """
        if self.proc is not None:
            raise RuntimeError("job already started")
        proc = BackendProcess(self.command(), env=_child_env(self.env), handshake=False, stderr_lines=40)
        try:
            proc.start()
        except SupervisorError:
            raise BackendError(f"Cannot run the backend Python {self.python}.") from None
        self.proc = proc
        document = {k: {"username": u, "password": p} for k, (u, p) in credentials.items()}
        try:
            proc.send(json.dumps(document))  # False if the child died at once: poll() reports its stderr
        finally:
            document.clear()
        self.progress.state = "running"

    # -- main-thread API

    @property
    def finished(self) -> bool:
        return self._finished

    def _parse(self, line: str) -> dict | None:
        try:
            return parse_event(line)
        except ProtocolError as exc:
            if "schema" in str(exc) and self._protocol_error is None:
                self._protocol_error = str(exc)
            return {"event": "message", "level": "info", "text": line.strip()[:500], "details": {}}

    def poll(self) -> list[dict]:
        """Drains the events received so far and updates :attr:`progress`; call it often."""
        if self.proc is None:
            return []
        events = [ev for ev in map(self._parse, self.proc.lines()) if ev is not None]
        for ev in events:
            self._apply(ev)
        if not self._finished:
            self.proc.poll()  # escalates a cancel the child ignores
            if self.proc.done:
                self._finish(self.proc.returncode)
        return events

    def wait(self, timeout: float = 60.0, interval: float = 0.05) -> FetchProgress:
        """Blocking loop for headless use and tests (what the modal timer does, in a loop)."""
        deadline = time.monotonic() + timeout
        while not self.finished:
            self.poll()
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError("fetch-data did not finish in time")
            time.sleep(interval)
        return self.progress

    def cancel(self) -> None:
        """Asks the child to stop (clean exit, partial downloads kept for a later resume)."""
        if self.proc is None or self._finished or self._cancelled:
            return
        self._cancelled = True
        self.progress.text = "Cancelling…"
        self.proc.request_stop("cancel", grace=self.CANCEL_GRACE)

    def close(self) -> None:
        """Stops a child that still runs (e.g. the add-on is being disabled) and closes its pipes."""
        if self.proc is not None:
            self.proc.stop(timeout=5.0)

    def _finish(self, code: int | None) -> None:
        self._finished = True
        p = self.progress
        p.exit_code = code
        if p.error_kind == "cancelled" or (self._cancelled and code not in (0, 1)):
            p.state = "cancelled"
            p.text = "Cancelled; partial downloads are kept and resumed next time."
            p.error_kind = p.error_kind or "cancelled"
        elif p.error_kind is not None:
            p.state = "failed"
            p.text = f"Failed: {p.error_message}"
        elif self._protocol_error is not None and not self._got_done:
            p.state = "failed"
            p.error_kind = "protocol"
            p.error_message = self._protocol_error
            p.text = f"Failed: {p.error_message}"
        elif code in (0, 1) and self._got_done:
            p.state = "done"
            if p.status is not None and p.status.complete:
                p.text = "All required model files are present."
            else:
                p.text = "Finished; some required files are still missing (see the list)."
        else:
            p.state = "failed"
            p.error_kind = "backend"
            p.error_message = _explain_failure("\n".join(self.proc.stderr_tail()), code)
            p.text = f"Failed: {p.error_message}"

    def _apply(self, ev: dict) -> None:
        p = self.progress
        kind, d = ev.get("event"), ev.get("details", {})
        if kind == "started":
            p.endpoint_label = d.get("endpoint_label", "")
            p.official_endpoint = bool(d.get("official_endpoint", True))
            p.text = "Checking the data folder…"
            if not p.official_endpoint:
                p.log.append(f"Using {p.endpoint_label}")
        elif kind == "progress" and ev.get("stage") == "plan":
            p.count = len(d.get("downloads", []))
            p.text = f"{p.count} file(s) to get" if p.count else "Nothing to download."
        elif kind == "progress" and ev.get("stage") == "download":
            if d.get("start"):
                p.file, p.index, p.count = ev.get("item") or "", d.get("index", 0), d.get("count", 0)
                resume = f", resuming at {_human(ev.get('done'))}" if ev.get("done") else ""
                p.log.append(f"Downloading {p.file} ({_human(ev.get('total'))}) from {d.get('source', '')}{resume}")
            p.done, p.total = ev.get("done", 0), ev.get("total")
            self._progress_text()
        elif kind == "progress" and ev.get("stage") == "extract":
            p.text = ev.get("text", "")
            p.log.append(ev.get("text", ""))
        elif kind == "item_done":
            size = d.get("size")
            p.log.append(f"Saved {ev.get('item')}" + (f" ({_human(size)})" if size is not None else ""))
        elif kind == "message":
            if not d.get("manual"):
                p.log.append(ev.get("text", ""))
        elif kind == "item_error":
            p.log.append(f"Error: {ev.get('message')}")
        elif kind == "finished":
            self._got_done = True
            error = ev.get("error")
            if error:
                p.error_kind = error.get("code")
                p.error_message = error.get("message")
            try:
                p.status = DataStatus.from_doctor(d["report"]["doctor"])
            except (BackendError, KeyError, TypeError):
                pass

    def _progress_text(self) -> None:
        p = self.progress
        p.text = f"{p.file}: {_human(p.done)} of {_human(p.total)} ({p.index}/{p.count})"
