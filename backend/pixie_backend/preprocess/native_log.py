"""Keeping mediapipe's native log lines out of the user's terminal.

mediapipe's C++ graphs (absl logging before ``absl::InitializeLog``, TensorFlow Lite) write info and
warning lines such as ``W0000 ... inference_feedback_manager.cc:114] Feedback manager requires ...``
straight to file descriptor 2, from their own threads; no environment variable or Python setting
turns them off. :func:`filter_native_stderr` (called when the mediapipe detector is built) routes
fd 2 through a pipe and a reader thread that drops those info/warning lines and passes everything
else (Python's own output, native errors) through unchanged. At exit fd 2 is restored and what is
left in the pipe is passed on.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

#: absl/glog lines of level I or W (``I0000 00:00:1700000000.123 1234 file.cc:12] text``) and the two
#: fixed TensorFlow Lite / absl notices. E and F lines are kept.
NOISE = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]"
                   rb"|INFO: Created TensorFlow Lite"
                   rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")

_state: dict = {}
_lock = threading.Lock()


def filter_native_stderr() -> bool:
    """Install the filter once per process; returns whether it is active."""
    with _lock:
        if _state:
            return True
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            os.close(write_end)
        except (OSError, AttributeError, ValueError):
            return False
        thread = threading.Thread(target=_pump, args=(read_end, saved), name="pixie-stderr-filter", daemon=True)
        _state.update(saved=saved, thread=thread)
        thread.start()
        atexit.register(_restore)
        return True


def _pump(read_end: int, saved: int) -> None:
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            try:
                chunk = pipe.read(65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(_clean(line) for line in lines)
            if out:
                os.write(saved, out)
    if pending and not NOISE.match(pending):
        os.write(saved, pending)


def _clean(line: bytes) -> bytes:
    """The line without its native log segments (a progress bar's ``\r`` may precede one); b"" if
    nothing else is left."""
    parts = [p for p in line.split(b"\r") if not NOISE.match(p)]
    return b"\r".join(parts) + b"\n" if parts and any(parts) else b""


def _restore() -> None:
    with _lock:
        if not _state:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os.dup2(_state["saved"], 2)  # closes the pipe's write end: the reader sees the end
        _state["thread"].join(timeout=2)
        _state.clear()
