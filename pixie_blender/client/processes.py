"""Child processes without a shell, on Windows, macOS and Linux (standard library only, no ``bpy``).

* :func:`child_env` / :func:`popen_kwargs`: the environment and ``Popen`` options every child of
  the add-on gets (UTF-8 pipes, no Blender ``PYTHONHOME``, no console window on Windows).
* :func:`process_alive`, :func:`process_command_line`, :func:`end_process`: find a process by its
  recorded id, check that it is really ours (its command line), end it. Used for the backend left
  behind by a crashed Blender and for a pip left running by an interrupted install.

On Windows ``os.kill(pid, 0)`` would *terminate* the process, so liveness is asked through the
Win32 API (``ctypes``) instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

#: Variables of Blender's own interpreter that must not reach another Python.
_DROPPED_VARS = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")


def child_env(extra: Mapping[str, str] | None = None, *, keep_pythonpath: bool = False) -> dict[str, str]:
    """The environment for a child Python: this process's (proxies such as ``HTTPS_PROXY`` pass
    through), minus Blender's interpreter variables, with UTF-8 unbuffered output."""
    env = dict(os.environ)
    for var in _DROPPED_VARS:
        if keep_pythonpath and var == "PYTHONPATH":
            continue
        env.pop(var, None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def popen_kwargs() -> dict[str, Any]:
    """Text pipes in UTF-8 and, on Windows, no console window."""
    kw: dict[str, Any] = {"encoding": "utf-8", "errors": "replace"}
    if sys.platform == "win32":
        kw["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return kw


# --------------------------------------------------------------------------------------------------
# Processes by id


def _win_alive(pid: int) -> bool:
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def process_alive(pid: int) -> bool:
    """True if a process with this id runs (a zombie does not count)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _win_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    stat = f"/proc/{pid}/stat"
    if os.path.exists(stat):
        try:
            with open(stat, encoding="utf-8", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X")
        except (OSError, IndexError):
            return True
    return True


def process_command_line(pid: int) -> str | None:
    """The command line of a running process as one string, or None if it cannot be read."""
    if pid <= 0:
        return None
    proc_file = f"/proc/{pid}/cmdline"
    if sys.platform.startswith("linux") and os.path.exists(proc_file):
        try:
            with open(proc_file, "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace") or None
    if sys.platform == "win32":
        cmd = [
            "powershell",
            "-NoProfile",
            "-NonInteractive",
            "-Command",
            f"(Get-CimInstance Win32_Process -Filter 'ProcessId={int(pid)}').CommandLine",
        ]
    else:
        cmd = ["ps", "-ww", "-p", str(int(pid)), "-o", "command="]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=15, stdin=subprocess.DEVNULL, **popen_kwargs())
    except (OSError, subprocess.SubprocessError):
        return None
    text = proc.stdout.strip()
    return text if proc.returncode == 0 and text else None


def command_matches(recorded: Sequence[str], actual: str | None) -> bool:
    """True if every recorded argument appears, in order, in the actual command line."""
    if not actual or not recorded:
        return False
    at = 0
    for arg in recorded:
        found = actual.find(str(arg), at)
        if found < 0:
            return False
        at = found + len(str(arg))
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return not process_alive(pid)


def end_process(pid: int, recorded_command: Sequence[str], *, grace: float = 3.0) -> str:
    """Ends process ``pid`` if its command line still matches ``recorded_command``.

    Returns "gone" (not running), "ended", "not ours" (another program has that id now; left
    alone) or "unknown" (its command line cannot be read; left alone).
    """
    if not process_alive(pid):
        return "gone"
    actual = process_command_line(pid)
    if actual is None:
        return "gone" if not process_alive(pid) else "unknown"
    if not command_matches(recorded_command, actual):
        return "not ours"
    try:
        os.kill(pid, signal.SIGTERM)  # TerminateProcess on Windows
    except (ProcessLookupError, PermissionError, OSError):
        pass
    if _wait_gone(pid, grace):
        return "ended"
    if sys.platform != "win32":
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return "ended" if _wait_gone(pid, grace) else "unknown"


def read_json(path: os.PathLike) -> dict | None:
    """A small JSON file, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: os.PathLike, data: Mapping) -> None:
    """Writes next to the target, then renames (readers never see half a file)."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)
