"""Request limits: the body size (an ASGI middleware that counts bytes as they arrive, so a huge
upload is refused before it is stored), the checks of each uploaded image from its header
(pixels, "is it an image at all"), before a job is queued, and the plain file name of an upload."""

from __future__ import annotations

import io
import json
from pathlib import PurePath

from ..jobs.sources import safe_name, unique_names
from .errors import ERROR_CODES, ApiError


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with ``upload_too_large`` (413).

    A declared ``Content-Length`` over the limit is refused before the application sees the
    request; a chunked body is counted as it arrives and refused when it passes the limit
    (whatever the application had started to answer is dropped). The rest of the body is read and
    discarded (up to ``drain_factor`` times the limit) so that the client, still sending, receives
    the answer instead of a reset connection.
    """

    def __init__(self, app, max_bytes: int, per_path: dict[str, int] | None = None, drain_factor: int = 4):
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})  #: request paths with their own limit (a video upload)
        self.drain_factor = drain_factor

    async def _refuse(self, receive, send, received: int, more: bool, limit: int) -> None:
        drain_cap = self.drain_factor * limit + (1 << 20)
        while more and received <= drain_cap:
            message = await receive()
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = json.dumps({"error": {"code": "upload_too_large", "message":
                                     f"the request is larger than the service's limit of "
                                     f"{limit / 1e6:.1f} MB"}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if more:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": ERROR_CODES["upload_too_large"], "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await self._refuse(receive, send, 0, True, limit)
                    return
            except ValueError:
                pass
        state = {"received": 0, "too_big": False, "more": True}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["more"] = message.get("more_body", False)
                if state["received"] > limit:
                    state["too_big"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            if not state["too_big"]:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not state["too_big"]:
                raise
        if state["too_big"]:
            await self._refuse(receive, send, state["received"], state["more"], limit)


def check_image_header(name: str, data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an encoded image, read from its header only.

    Raises:
        ApiError: ``not_an_image`` (415) when Pillow does not recognise it; ``too_many_pixels``
            (413) when it is larger than ``max_pixels``. A file that is recognised but corrupt
            further in is reported by the job (``item_error`` ``unreadable``).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ApiError("not_an_image", f"{name}: the upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ApiError("not_an_image", f"{name}: not an image, or a format that cannot be read "
                                       "(send JPEG, PNG, BMP, TIFF, WebP, GIF or PPM)") from None
    if w * h > max_pixels:
        raise ApiError("too_many_pixels", f"{name}: {w}x{h} = {w * h / 1e6:.1f} MP is more than the service's "
                                          f"limit of {max_pixels / 1e6:.1f} MP; downscale it")
    return w, h


def upload_name(filename: str | None, fallback: str) -> str:
    """An upload's file name without folders (never a path the server uses); ``fallback`` when it
    has none."""
    return PurePath((filename or fallback).replace("\\", "/")).name or fallback


def upload_stems(names: list[str]) -> list[str]:
    """Safe, unique file-name stems for the uploads ``names`` (in upload order; a clash gets a short
    hash of the upload's position and name)."""
    return unique_names([safe_name(PurePath(n).stem or n) for n in names], [f"{i}:{n}" for i, n in enumerate(names)])
