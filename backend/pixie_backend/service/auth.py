"""Bearer-token authentication: every request carries ``Authorization: Bearer <token>``.

The token is compared in constant time (:func:`hmac.compare_digest`) and never logged: uvicorn's
access log shows the request line only, and nothing here prints headers.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError

bearer = HTTPBearer(auto_error=False, description="The service's token: from the handshake line (local mode) "
                                                  "or the one set with PIXIE_SERVICE_TOKEN / --token-file")


def new_token() -> str:
    """A random token for local mode (64 hex digits)."""
    return secrets.token_hex(32)


def token_matches(given: str | None, expected: str) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def check_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise ``unauthorized`` (401) unless the request carries the service's token."""
    expected = request.app.state.service.config.token
    given = credentials.credentials if credentials is not None and credentials.scheme.lower() == "bearer" else None
    if not token_matches(given, expected):
        raise ApiError("unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})
