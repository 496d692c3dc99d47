"""The add-on's HTTP client (standard library, no bpy): against the real service (health, submit,
the event stream, results, the package once per content hash, a refused token, nothing listening)
and against stand-in servers that misbehave (HTML, a JSON error, silence, a cut or garbled event
stream, a short download, another package than asked for)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from pixie_blender.client.service_client import (
    BadResponse,
    Rejected,
    ServiceClient,
    ServiceTimeout,
    TokenRefused,
    Unreachable,
    encode_multipart,
)
from tests.support.protocol import validate_events
from tests.support.service import jpeg_bytes, png_bytes

# --------------------------------------------------------------------------------------------------
# Against the real service


def test_health_submit_events_results_and_package(served, photo, photo_pair, tmp_path):
    client = ServiceClient(served.url, served.token)
    assert served.token not in repr(client)
    h = client.health()
    assert h["version"] == "0.1.0" and h["model"]["device"] == "cpu"
    job = client.submit_reconstruct([("solo.jpg", jpeg_bytes(photo)), ("pair.png", png_bytes(photo_pair))])
    assert job["images"] == ["solo", "pair"]
    evs = list(client.events(job["id"]))
    validate_events(evs)
    assert evs[-1]["status"] == "ok"
    done = [e for e in evs if e["event"] == "item_done"]
    assert [e["details"]["persons"] for e in done] == [1, 2]
    assert [e["details"]["files"] for e in done] == [["solo.pixie.npz"], ["pair.pixie.npz"]]  # no OBJs asked for
    for e in done:
        dest = client.download_file(job["id"], e["details"]["files"][0], tmp_path / e["details"]["files"][0])
        assert dest.stat().st_size > 1000
    status = client.job(job["id"])
    [pkg] = status["packages"]
    cached = client.download_package(pkg["sha256"], tmp_path / "cache" / "packages" / f"{pkg['sha256']}.npz")
    assert cached.stat().st_size == pkg["size"]
    assert not list(tmp_path.rglob("*.part"))

    from pixie_blender.io.schema import find_package_by_hash, read_result

    assert len(read_result(tmp_path / "pair.pixie.npz").persons) == 2
    assert find_package_by_hash(pkg["sha256"], cache_dirs=[tmp_path / "cache"]).content_sha256 == pkg["sha256"]

    resumed = list(client.events(job["id"], after=len(evs) - 1))
    assert resumed == evs[-1:]
    client.delete(job["id"])
    with pytest.raises(Rejected) as e:
        client.job(job["id"])
    assert e.value.code == "job_not_found" and e.value.status == 404


def test_refused_token_and_rejections(served, photo):
    with pytest.raises(TokenRefused, match="refused the token"):
        ServiceClient(served.url, "0" * 64).health()
    client = ServiceClient(served.url, served.token)
    with pytest.raises(Rejected, match="not an image") as e:
        client.submit_reconstruct([("notes.jpg", b"plain text")])
    assert e.value.code == "not_an_image" and e.value.status == 415
    with pytest.raises(Rejected) as e:
        client.submit_reconstruct([("a.jpg", jpeg_bytes(photo))], detector="yolo")
    assert e.value.code == "invalid_request"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_unreachable():
    with pytest.raises(Unreachable, match="Nothing answers at http://127.0.0.1:"):
        ServiceClient(f"http://127.0.0.1:{_free_port()}", "t" * 32).health()


def test_bad_urls():
    for url in ("ftp://x", "127.0.0.1:8765", "http://:80", "http://host:99999"):
        with pytest.raises(Exception, match="not an http|invalid port"):
            ServiceClient(url, "t")


def test_multipart_body_is_what_a_server_parses():
    from email.parser import BytesParser

    body, ctype = encode_multipart([("detector", "none")], [("images", 'we"ird.jpg', b"\x00\xff data")])
    msg = BytesParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    parts = msg.get_payload()
    assert parts[0].get_param("name", header="content-disposition") == "detector"
    assert parts[0].get_payload() == "none"
    assert parts[1].get_filename() == "we%22ird.jpg" and parts[1].get_payload(decode=True) == b"\x00\xff data"


# --------------------------------------------------------------------------------------------------
# Stand-in servers that misbehave


EVENT = {"schema_version": 1, "job": "j", "time": 0.0, "details": {}}


def _line(**kw) -> bytes:
    return (json.dumps({**EVENT, **kw}) + "\n").encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = ""

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        length: int | None = None,
        extra: dict | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):  # noqa: N802
        m = self.server.mode
        if m == "html":
            self._send(200, b"<html>hello</html>", "text/html")
        elif m == "html500":
            self._send(500, b"<html>Internal Server Error</html>", "text/html")
        elif m == "queue_full":
            self._send(429, json.dumps({"error": {"code": "queue_full", "message": "too many jobs"}}).encode())
        elif m == "hang":
            time.sleep(3)
        elif m.startswith("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            if m == "stream_cut":
                self.wfile.write(_line(event="started", job_kind="reconstruct", total=1))
            elif m == "stream_garbage":
                self.wfile.write(_line(event="started", job_kind="reconstruct", total=1) + b"<html>oops</html>\n")
            elif m == "stream_schema":
                self.wfile.write(b'{"schema_version": 2, "event": "started", "job": "j", "time": 0}\n')
            elif m == "stream_silent":
                self.wfile.flush()
                time.sleep(3)
            elif m == "stream_keepalive":
                self.wfile.write(
                    b"\n\n"
                    + _line(event="started", job_kind="reconstruct", total=1)
                    + b"\n"
                    + _line(event="finished", status="ok", exit_code=0, counts={}, seconds=0.0, error=None)
                    + _line(event="message", text="after the end")
                )
            self.wfile.flush()
            self.close_connection = True
        elif m == "short":
            self._send(200, b"x" * 50, "application/octet-stream", length=100)
            self.close_connection = True
        elif m == "wrong_package":
            self._send(200, b"npz", "application/octet-stream", extra={"X-Content-SHA256": "b" * 64})


@contextmanager
def misbehaving(mode: str):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.mode = mode
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield ServiceClient(f"http://127.0.0.1:{server.server_address[1]}", "t" * 32, timeout=1.0, stream_timeout=1.0)
    finally:
        server.shutdown()
        server.server_close()


def test_html_and_non_json_answers():
    with misbehaving("html") as c, pytest.raises(BadResponse, match="not JSON"):
        c.health()
    with misbehaving("html500") as c, pytest.raises(BadResponse, match="HTTP 500 and no error document"):
        c.health()
    with misbehaving("queue_full") as c, pytest.raises(Rejected, match="Too many jobs") as e:
        c.job("x")
    assert e.value.code == "queue_full" and e.value.status == 429


def test_silence_is_a_timeout():
    with misbehaving("hang") as c, pytest.raises(ServiceTimeout, match="did not answer GET /v1/health within 1 s"):
        c.health()
    with misbehaving("stream_silent") as c, pytest.raises(ServiceTimeout, match="sent nothing for 1 s"):
        list(c.events("j"))


def test_event_streams_that_go_wrong():
    with misbehaving("stream_cut") as c:
        got = []
        with pytest.raises(BadResponse, match="ended before the job finished") as e:
            for ev in c.events("j"):
                got.append(ev)
        assert e.value.code == "connection_lost" and [g["event"] for g in got] == ["started"]
    with misbehaving("stream_garbage") as c, pytest.raises(BadResponse, match="cannot read"):
        list(c.events("j"))
    with misbehaving("stream_schema") as c, pytest.raises(BadResponse, match="event schema 2"):
        list(c.events("j"))
    with misbehaving("stream_keepalive") as c:  # keep-alive lines skipped; nothing read after finished
        assert [e["event"] for e in c.events("j")] == ["started", "finished"]


def test_downloads_are_whole_or_absent(tmp_path):
    dest = tmp_path / "r.pixie.npz"
    dest.write_bytes(b"old")
    with misbehaving("short") as c, pytest.raises(BadResponse, match="incomplete|broke off"):
        c.download_file("j", "r.pixie.npz", dest)
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["r.pixie.npz"]
    with misbehaving("wrong_package") as c, pytest.raises(BadResponse, match="another model package"):
        c.download_package("a" * 64, tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()
