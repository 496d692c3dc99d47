"""A stand-in for the MPI download server (``download.php``) on 127.0.0.1, for tests only.

It speaks the protocol of upstream PIXIE's ``fetch_model.sh``: ``POST /download.php?domain=<d>&
sfile=<f>&resume=1`` with a form body ``username=…&password=…``. It honours ``Range: bytes=N-``
(206 / 416) and can misbehave on request: wrong-login answers of several kinds, a connection
dropped midway, a server that ignores ``Range``, slow bodies, fixed status codes.

The served files are synthetic bytes made by the tests; no licensed data is involved.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

#: How a wrong login is answered.
WRONG_LOGIN_MODES = ("401", "403", "html", "redirect", "text", "empty")


@dataclass
class Request:
    method: str
    path: str
    domain: str | None
    sfile: str | None
    resume: str | None
    range: str | None
    login_ok: bool
    content_type: str | None


@dataclass
class FakeMPIServer:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: domain -> (username, password)
    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)
    wrong_login: str = "401"
    #: The wrong-login page quotes the submitted password (a sloppy server; tests redaction).
    echo_password: bool = False
    #: sfile -> number of body bytes sent before the connection is dropped (once per entry).
    cut_after: dict[str, int] = field(default_factory=dict)
    support_range: bool = True
    #: sfile -> HTTP status answered instead of the file.
    status_override: dict[str, int] = field(default_factory=dict)
    #: Seconds to sleep between 64 KiB blocks of a body (0: no throttling).
    delay_per_block: float = 0.0
    #: Seconds to wait before answering at all.
    delay_before_answer: float = 0.0
    content_type: str = "application/octet-stream"
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self):
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeMPIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeMPIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/download.php"

    def downloads(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeMPIServer

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        fake = self.fake
        u = urlsplit(self.path)
        fake.requests.append(Request("GET", u.path, None, None, None, None, False, None))
        if u.path == "/static_pages/no_permission":
            page = (
                b"<!DOCTYPE html><html><head><title>No permission</title></head><body>"
                b"<p>Please keep in mind that all downloads are blocked if they are not started "
                b"from the website directly.</p></body></html>"
            )
            self._send(200, page, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self):
        fake = self.fake
        u = urlsplit(self.path)
        query = parse_qs(u.query)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("ascii"), keep_blank_values=True)
        domain = query.get("domain", [None])[0]
        sfile = query.get("sfile", [None])[0]
        user = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        login_ok = domain in fake.accounts and fake.accounts[domain] == (user, password)
        rng = self.headers.get("Range")
        fake.requests.append(
            Request(
                "POST",
                u.path,
                domain,
                sfile,
                query.get("resume", [None])[0],
                rng,
                login_ok,
                self.headers.get("Content-Type"),
            )
        )
        if fake.delay_before_answer:
            time.sleep(fake.delay_before_answer)
        if u.path != "/download.php":
            return self._send(404, b"no such page", "text/plain")
        if sfile in fake.status_override:
            return self._send(fake.status_override[sfile], b"<html>error</html>", "text/html")
        if not login_ok:
            return self._wrong_login(password)
        data = fake.files.get((domain, sfile))
        if data is None:
            return self._send(404, b"<html>File not found</html>", "text/html")

        start = 0
        if rng and fake.support_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        else:
            status, headers = 200, {}
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", fake.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        cut = fake.cut_after.pop(sfile, None)
        to_send = body if cut is None else body[:cut]
        block = 64 * 1024
        try:
            for i in range(0, len(to_send), block):
                self.wfile.write(to_send[i : i + block])
                self.wfile.flush()
                if fake.delay_per_block:
                    time.sleep(fake.delay_per_block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if cut is not None:  # drop the connection in the middle of the body
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _wrong_login(self, password: str) -> None:
        mode = self.fake.wrong_login
        echo = f"<p>You typed the password {password}</p>".encode() if self.fake.echo_password else b""
        page = (
            b"<!DOCTYPE html><html><head><title>Login</title></head><body><h1>Sign in</h1>"
            b"<p>Username/Password Authentication Failed.</p>" + echo + b"</body></html>"
        )
        if mode == "401":
            self._send(401, page, "text/html; charset=utf-8")
        elif mode == "403":
            self._send(403, page, "text/html; charset=utf-8")
        elif mode == "html":
            self._send(200, page, "text/html; charset=utf-8")
        elif mode == "redirect":
            self._send(302, b"", "text/html", {"Location": "/static_pages/no_permission"})
        elif mode == "text":  # a tiny text body served as if it were the file
            msg = b"Error: wrong username or password" + (f" ({password})".encode() if echo else b"")
            self._send(200, msg, "application/octet-stream")
        elif mode == "empty":
            self._send(200, b"", "application/octet-stream")
        else:
            raise ValueError(mode)


# --------------------------------------------------------------------------------------------------
# Synthetic payloads (shaped like the real files, but random)

UTILITIES_MEMBERS = (
    "smplx_extra_joints.yaml",
    "SMPLX_to_J14.pkl",
    "smplx_tex.obj",
    "flame2smplx_tex_1024.npy",
    "MANO_SMPLX_vertex_ids.pkl",
    "SMPL-X__FLAME_vertex_ids.npy",
    "smplx_hand.obj",
    "SMPL_X_template_FLAME_uv.obj",
)


def fake_npz(n_bytes: int = 700_000, seed: int = 0) -> bytes:
    """A real ``.npz`` (zip) of random arrays, about ``n_bytes`` long (several download chunks)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez(buf, v_template=rng.standard_normal(n_bytes // 8), f=np.arange(30, dtype=np.int32))
    return buf.getvalue()


def fake_checkpoint(n_bytes: int = 900_000, seed: int = 1) -> bytes:
    """A zip-format blob like ``torch.save`` writes (random payload)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", rng.bytes(n_bytes))
        zf.writestr("archive/version", b"3\n")
    return buf.getvalue()


def member_bytes(name: str) -> bytes:
    return f"synthetic stand-in for {name}\n".encode() * 50


def fake_utilities(
    members: tuple[str, ...] = UTILITIES_MEMBERS,
    *,
    folder: str = "",
    extra: dict[str, bytes] | None = None,
) -> bytes:
    """``utilities.zip`` with synthetic members (optionally inside one top-level ``folder``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in members:
            zf.writestr(folder + name, member_bytes(name))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def unsafe_zip(entry: str, *, symlink: bool = False) -> bytes:
    """``utilities.zip`` with the normal members plus one hostile ``entry``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in UTILITIES_MEMBERS:
            zf.writestr(name, member_bytes(name))
        info = zipfile.ZipInfo(entry)
        if symlink:
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(info, b"evil")
    return buf.getvalue()


def corrupt_zip(data: bytes) -> bytes:
    """Flips bytes inside the first member's compressed data: the zip opens, its CRC check fails."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[0]
    # local header: 30 bytes + name + extra; then the data
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    b = bytearray(data)
    for i in range(start + 5, start + 25):
        b[i] ^= 0xFF
    return bytes(b)


SMPLX_USER, SMPLX_PASSWORD = "body@example.org", "Smplx-Pa55 w0rd&%=+?#!"
PIXIE_USER, PIXIE_PASSWORD = "face@example.org", 'pixie-S3cret/Ünïcode "q"'


def standard_server(**overrides) -> FakeMPIServer:
    """The server with the three real file names (synthetic contents) and two accounts."""
    server = FakeMPIServer(
        files={
            ("smplx", "SMPLX_NEUTRAL_2020.npz"): fake_npz(),
            ("pixie", "pixie_model.tar"): fake_checkpoint(),
            ("pixie", "utilities.zip"): fake_utilities(),
        },
        accounts={"smplx": (SMPLX_USER, SMPLX_PASSWORD), "pixie": (PIXIE_USER, PIXIE_PASSWORD)},
    )
    for k, v in overrides.items():
        setattr(server, k, v)
    return server
