"""A real ``pixie-backend serve`` process for tests: started with the interpreter running the
tests, its handshake read from stdout, its stderr kept in a file (to check what it logs)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    proc: subprocess.Popen
    port: int
    token: str = field(repr=False)
    handshake: dict
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "backend"), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


def start_server(
    data_dir: Path | str, *args: str, stderr_path: Path, timeout: float = 120.0, env: dict[str, str] | None = None
) -> Served:
    """Start ``serve`` in local mode and wait for its handshake line."""
    cmd = [sys.executable, "-m", "pixie_backend", "serve", "--data-dir", str(data_dir), *args]
    err = open(stderr_path, "w", encoding="utf-8")  # noqa: SIM115 - owned by the process's lifetime
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=child_env(env), text=True
    )
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0].strip():
        proc.kill()
        raise RuntimeError(f"no handshake; stderr:\n{stderr_path.read_text()[-3000:]}")
    hs = json.loads(box[0])
    return Served(proc, hs["port"], hs["token"], hs, stderr_path)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def wait_ready(client, timeout: float = 120.0) -> dict:
    """Poll health until the model is loaded (an httpx client with the token)."""
    deadline = time.monotonic() + timeout
    while True:
        h = client.get("/v1/health").json()
        if h["model"]["state"] != "loading" or time.monotonic() > deadline:
            return h
        time.sleep(0.1)


def events(http, job_id, after=0) -> list[dict]:
    """A job's event stream (NDJSON), read to its end through an HTTP client of the service."""
    out = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events", params={"after": after}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if line.strip():
                out.append(json.loads(line))
    return out


def error_code(r) -> str:
    """The stable error code of a service error response."""
    return r.json()["error"]["code"]
