"""The add-on's HTTP client for ``pixie-backend serve`` (``docs/service.md``): standard library only.

:class:`ServiceClient` sends the bearer token with every request and turns every failure into one
:class:`ServiceError` subclass with a sentence for the user:

* :class:`Unreachable`: nothing answers at the address (not started, tunnel closed, wrong URL);
* :class:`ServiceTimeout`: no answer (or no event-stream keep-alive) within the timeout;
* :class:`TokenRefused`: 401, the token is wrong;
* :class:`Rejected`: the service refused the request with a JSON error (``code`` is its stable word);
* :class:`BadResponse`: an answer that is not what the API promises (HTML, a cut stream, bad JSON).

The event stream (``GET /v1/jobs/{id}/events``) is read line by line (NDJSON, the protocol of
``docs/protocol.md``); empty lines are the service's keep-alives. No proxy is used: the service is
on this machine or reached through an SSH tunnel.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .protocol import ProtocolError, parse_event

#: Seconds to wait for an ordinary answer, and for the next line of an event stream (the service
#: sends a keep-alive line every 10 s).
REQUEST_TIMEOUT = 30.0
STREAM_TIMEOUT = 60.0
CHUNK = 1 << 20


class ServiceError(Exception):
    """A request failed; ``str()`` is a sentence for the user, ``code`` a stable word."""

    code = "service"

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.status = status


class Unreachable(ServiceError):
    code = "unreachable"


class ServiceTimeout(ServiceError):
    code = "timeout"


class TokenRefused(ServiceError):
    code = "unauthorized"


class Rejected(ServiceError):
    """The service answered with a JSON error: ``code`` (``queue_full``, ``model_files``, ...)."""


class BadResponse(ServiceError):
    code = "bad_response"


def _field_part(boundary: str, name: str, value) -> bytes:
    """One form field of a ``multipart/form-data`` body, with its closing line break."""
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        + str(value).encode("utf-8")
        + b"\r\n"
    )


def _file_header(boundary: str, name: str, filename: str) -> bytes:
    """The header of one file part (its bytes and a line break follow)."""
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{_quote(name)}"; filename="{_quote(filename)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def encode_multipart(fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body: ``fields`` (name, value), ``files`` (field name, file name,
    bytes). Returns (body, content type)."""
    boundary = f"pixie-{uuid.uuid4().hex}"
    out = [_field_part(boundary, name, value) for name, value in fields]
    for name, filename, data in files:
        out += [_file_header(boundary, name, filename), data, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


class UploadCancelled(ServiceError):
    """The user cancelled while the request body was being sent."""

    code = "cancelled"


class MultipartFiles:
    """A ``multipart/form-data`` body streamed from files on disk (a video of a gigabyte is never
    held in memory): ``fields`` (name, value), then ``files`` (field name, file name, path), each
    read in chunks as it is sent. ``length`` is known beforehand (``Content-Length``)."""

    def __init__(self, fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, Path]], chunk: int = CHUNK):
        self.boundary = f"pixie-{uuid.uuid4().hex}"
        self.chunk = chunk
        head = b"".join(_field_part(self.boundary, n, v) for n, v in fields)
        self._head = head
        self._parts: list[tuple[bytes, Path, int]] = [
            (_file_header(self.boundary, name, filename), Path(path), Path(path).stat().st_size)
            for name, filename, path in files
        ]
        self._tail = f"--{self.boundary}--\r\n".encode()
        self.length = len(head) + sum(len(h) + n + 2 for h, _, n in self._parts) + len(self._tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def chunks(self, on_progress=None, cancelled=None) -> Iterator[bytes]:
        """The body; ``on_progress(sent, length)`` after each chunk; ``cancelled()`` True stops it
        (raises :class:`UploadCancelled`)."""
        sent = 0

        def emit(block: bytes) -> bytes:
            nonlocal sent
            if cancelled is not None and cancelled():
                raise UploadCancelled("Cancelled while uploading.")
            sent += len(block)
            if on_progress is not None:
                on_progress(sent, self.length)
            return block

        yield emit(self._head)
        for header, path, size in self._parts:
            yield emit(header)
            read = 0
            with open(path, "rb") as fh:
                while block := fh.read(self.chunk):
                    read += len(block)
                    yield emit(block)
            if read != size:
                raise OSError(f"{path.name} changed while it was being uploaded")
            yield emit(b"\r\n")
        yield emit(self._tail)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")


def _error_of(status: int, body: bytes, what: str) -> ServiceError:
    """The exception for an error answer (JSON ``{"error": {"code", "message"}}`` or anything else)."""
    try:
        err = json.loads(body.decode("utf-8"))["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return BadResponse(
            f"The backend answered {what} with HTTP {status} and no error document" + (f": {text!r}" if text else "."),
            status=status,
        )
    if status == 401:
        return TokenRefused(
            "The backend refused the token. For a remote backend, check the token in the add-on "
            "preferences (Remote Backend); a local backend is restarted on the next click.",
            status=status,
        )
    first = message.split(" ", 1)[0]
    if "." not in first.rstrip(".:") and "/" not in first:  # a sentence, not a file name ("clip.mp4: ...")
        message = message[:1].upper() + message[1:]
    return Rejected(message, code=code, status=status)


class ServiceClient:
    """Talks to one service: ``base_url`` (``http://127.0.0.1:53211`` or a remote URL) and its token."""

    def __init__(
        self, base_url: str, token: str, *, timeout: float = REQUEST_TIMEOUT, stream_timeout: float = STREAM_TIMEOUT
    ):
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceError(f"The backend address {base_url!r} is not an http:// or https:// URL.", "bad_url")
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ServiceError(f"The backend address {base_url!r} has an invalid port.", "bad_url") from None
        self.prefix = parts.path.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.stream_timeout = stream_timeout

    def __repr__(self) -> str:  # never shows the token
        return f"ServiceClient({self.base_url!r})"

    # ------------------------------------------------------------------ transport
    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _open(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends a request; returns the connection and the response (headers read, body not)."""
        what = f"{method} {path}"
        conn = self._connect(self.timeout if timeout is None else timeout)
        hdrs = {"Authorization": f"Bearer {self._token}", "Accept": "application/json", **(headers or {})}
        try:
            conn.request(method, self.prefix + path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except UploadCancelled:
            conn.close()
            raise
        except TimeoutError:
            conn.close()
            raise ServiceTimeout(
                f"The backend at {self.base_url} did not answer {what} within "
                f"{self.timeout if timeout is None else timeout:.0f} s."
            ) from None
        except ssl.SSLError as e:
            conn.close()
            raise Unreachable(f"Secure connection to {self.base_url} failed: {e.reason or e}.") from None
        except (ConnectionRefusedError, socket.gaierror, OSError) as e:
            conn.close()
            if isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                raise Unreachable(
                    f"The backend at {self.base_url} closed the connection ({type(e).__name__}).", "connection_lost"
                ) from None
            raise Unreachable(
                f"Nothing answers at {self.base_url} ({getattr(e, 'strerror', None) or e}). Is the "
                "backend running (and the SSH tunnel open, for a remote one)?"
            ) from None
        except http.client.HTTPException as e:
            conn.close()
            raise BadResponse(
                f"The backend at {self.base_url} sent a malformed answer to {what} ({type(e).__name__})."
            ) from None
        return conn, resp

    def _read_all(self, conn, resp, what: str) -> bytes:
        try:
            return resp.read()
        except TimeoutError:
            raise ServiceTimeout(f"The backend stopped sending its answer to {what}.") from None
        except (http.client.HTTPException, OSError) as e:
            raise BadResponse(
                f"The backend's answer to {what} was cut off ({type(e).__name__}).", "connection_lost"
            ) from None
        finally:
            conn.close()

    def request_json(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        """One request whose answer is a JSON document (errors raise)."""
        what = f"{method} {path}"
        conn, resp = self._open(method, path, body, headers, timeout)
        data = self._read_all(conn, resp, what)
        if resp.status not in expect:
            raise _error_of(resp.status, data, what)
        if resp.status == 204:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BadResponse(f"The backend's answer to {what} is not JSON: {data[:120]!r}") from None

    # ------------------------------------------------------------------ API
    def health(self) -> dict[str, Any]:
        doc = self.request_json("GET", "/v1/health")
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("version"), str)
            or not isinstance(doc.get("model"), dict)
        ):
            raise BadResponse("The backend's health report is incomplete.")
        return doc

    def submit_reconstruct(
        self,
        images: Sequence[tuple[str, bytes]],
        *,
        detector: str = "auto",
        write_objs: bool = False,
        boxes: dict | None = None,
    ) -> dict[str, Any]:
        """Queue a reconstruct job of ``images`` (file name, bytes); returns its status document."""
        fields = [("detector", detector), ("write_objs", "true" if write_objs else "false")]
        if boxes:
            fields.append(("boxes", json.dumps(boxes)))
        body, ctype = encode_multipart(fields, [("images", name, data) for name, data in images])
        doc = self.request_json(
            "POST",
            "/v1/jobs/reconstruct",
            body,
            {"Content-Type": ctype},
            expect=(202,),
            timeout=max(self.timeout, 5.0 + len(body) / 2e6),
        )
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise BadResponse("The backend accepted the job but sent no job id.")
        return doc

    def submit_sequence(
        self,
        *,
        video: Path | None = None,
        frames: Sequence[Path] = (),
        upload_names: Sequence[str] | None = None,
        options: Sequence[tuple[str, str]] = (),
        on_progress=None,
        cancelled=None,
    ) -> dict[str, Any]:
        """Queue a sequence job of a ``video`` file or the ``frames`` image files (in frame order),
        streamed from disk; ``upload_names``: the file names the backend sees (default: the files'
        names); ``options``: form fields (``name``, ``fps``, ``detector``, ...). Returns the job's
        status document."""
        paths = [Path(video)] if video is not None else [Path(f) for f in frames]
        names = list(upload_names) if upload_names is not None else [p.name for p in paths]
        field = "video" if video is not None else "frames"
        body = MultipartFiles(options, [(field, n, p) for n, p in zip(names, paths, strict=True)])
        doc = self.request_json(
            "POST",
            "/v1/jobs/sequence",
            body.chunks(on_progress, cancelled),
            {"Content-Type": body.content_type, "Content-Length": str(body.length)},
            expect=(202,),
            timeout=max(self.timeout, 5.0 + body.length / 2e6),
        )
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise BadResponse("The backend accepted the job but sent no job id.")
        return doc

    def job(self, job_id: str) -> dict[str, Any]:
        doc = self.request_json("GET", f"/v1/jobs/{quote(job_id, safe='')}")
        if not isinstance(doc, dict) or doc.get("id") != job_id:
            raise BadResponse("The backend's job status is not about this job.")
        return doc

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request_json("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")

    def delete(self, job_id: str) -> None:
        self.request_json("DELETE", f"/v1/jobs/{quote(job_id, safe='')}", expect=(204,))

    def events(self, job_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
        """The job's events from number ``after`` on, until (and including) ``finished``.

        Raises :class:`ServiceTimeout` when no line (not even a keep-alive) arrives within
        ``stream_timeout``, :class:`BadResponse` (code ``connection_lost``) when the stream ends
        before ``finished``, and :class:`BadResponse` for a line that is not an event."""
        path = f"/v1/jobs/{quote(job_id, safe='')}/events?after={int(after)}"
        conn, resp = self._open("GET", path, headers={"Accept": "application/x-ndjson"}, timeout=self.stream_timeout)
        if resp.status != 200:
            raise _error_of(resp.status, self._read_all(conn, resp, "GET events"), "GET events")
        try:
            while True:
                try:
                    raw = resp.readline(1 << 22)
                except TimeoutError:
                    raise ServiceTimeout(
                        f"The backend sent nothing for {self.stream_timeout:.0f} s; it may have stopped working."
                    ) from None
                except (http.client.HTTPException, OSError) as e:
                    raise BadResponse(
                        f"The connection to the backend broke during the job ({type(e).__name__}).", "connection_lost"
                    ) from None
                if not raw:
                    raise BadResponse("The backend's event stream ended before the job finished.", "connection_lost")
                try:
                    event = parse_event(raw.decode("utf-8"))
                except (ProtocolError, UnicodeDecodeError) as e:
                    raise BadResponse(f"The backend sent an event this add-on cannot read: {e}") from None
                if event is None:
                    continue  # keep-alive
                yield event
                if event["event"] == "finished":
                    return
        finally:
            conn.close()

    def _download(self, path: str, dest: Path, expect_sha: str | None = None) -> Path:
        """Stream ``path`` into ``dest`` (through a temporary file: ``dest`` is whole or untouched)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        conn, resp = self._open("GET", path, headers={"Accept": "application/octet-stream"})
        what = f"GET {path}"
        if resp.status != 200:
            raise _error_of(resp.status, self._read_all(conn, resp, what), what)
        if expect_sha is not None and resp.getheader("X-Content-SHA256", expect_sha) != expect_sha:
            conn.close()
            raise BadResponse("The backend sent another model package than the one asked for.")
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        length = resp.getheader("Content-Length")
        written = 0
        try:
            with open(tmp, "wb") as fh:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except TimeoutError:
                        raise ServiceTimeout(f"The download of {dest.name} stalled.") from None
                    except (http.client.HTTPException, OSError) as e:
                        raise BadResponse(
                            f"The download of {dest.name} broke off ({type(e).__name__}).", "connection_lost"
                        ) from None
                    if not block:
                        break
                    fh.write(block)
                    written += len(block)
            if length is not None and length.isdigit() and int(length) != written:
                raise BadResponse(
                    f"The download of {dest.name} is incomplete ({written} of {length} bytes).", "connection_lost"
                )
            os.replace(tmp, dest)
        finally:
            conn.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
        return dest

    def download_file(self, job_id: str, name: str, dest: Path) -> Path:
        return self._download(f"/v1/jobs/{quote(job_id, safe='')}/files/{quote(name, safe='')}", dest)

    def download_package(self, sha256: str, dest: Path) -> Path:
        return self._download(f"/v1/packages/{quote(sha256, safe='')}", dest, expect_sha=sha256)
