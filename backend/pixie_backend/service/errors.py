"""Errors as JSON with stable codes: ``{"error": {"code": "queue_full", "message": "..."}}``.

Every refusal the service makes is an :class:`ApiError`; FastAPI's own (validation, unknown route,
wrong method) and anything unexpected are turned into the same shape, so a client never parses
HTML or a traceback. ``code`` is a stable lower-case word for programs, ``message`` is for people.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

#: Every code the service answers with, and its HTTP status (docs/service.md lists them).
ERROR_CODES: dict[str, int] = {
    "unauthorized": 401,
    "not_found": 404,
    "job_not_found": 404,
    "file_not_found": 404,
    "package_not_found": 404,
    "method_not_allowed": 405,
    "job_running": 409,
    "upload_too_large": 413,
    "too_many_pixels": 413,
    "too_many_images": 413,
    "too_many_frames": 413,
    "not_an_image": 415,
    "not_a_video": 415,
    "invalid_request": 422,
    "bad_option": 422,
    "queue_full": 429,
    "internal": 500,
    "model_files": 503,
    "model_failed": 503,
    "shutting_down": 503,
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """A refusal with a stable code (its HTTP status comes from :data:`ERROR_CODES`)."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = ERROR_CODES[code]
        self.headers = headers


def error_response(code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=ERROR_CODES[code],
                        headers=headers)


def responses(*codes: str) -> dict[int | str, dict]:
    """OpenAPI ``responses=`` for the error codes a route can answer with."""
    out: dict[int | str, dict] = {}
    for code in codes:
        status = ERROR_CODES[code]
        entry = out.setdefault(status, {"model": ErrorBody, "description": ""})
        entry["description"] = ", ".join(filter(None, [entry["description"], f"`{code}`"]))
    return out


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into :class:`ErrorBody`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return error_response("invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code)
        if code is None:
            code = "invalid_request" if 400 <= exc.status_code < 500 else "internal"
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response("internal", f"internal error ({type(exc).__name__}); see the service's log")
