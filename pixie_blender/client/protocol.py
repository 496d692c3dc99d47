"""The backend's event protocol (``docs/protocol.md``), read without the backend: standard library only.

Every line a backend job prints with ``--json`` is one JSON object with ``schema_version``,
``event`` (started, progress, item_done, item_error, message, finished), ``job`` and ``time``;
kind-specific facts are under ``details``. This module turns lines into checked dicts; the job
clients (``data_setup.FetchJob``, later the reconstruct client) act on them.
"""

from __future__ import annotations

import json
from typing import Any

#: The schema version this add-on reads (``pixie_backend.jobs.events.SCHEMA_VERSION``).
SCHEMA_VERSION = 1
EVENT_KINDS = ("started", "progress", "item_done", "item_error", "message", "finished")


class ProtocolError(ValueError):
    """A line is not an event of a schema this add-on reads."""


def parse_event(line: str) -> dict[str, Any] | None:
    """One output line as an event dict; None for an empty line.

    Raises:
        ProtocolError: not JSON, not an event object, or another schema version (the message says
            which versions differ, so the user knows to update the add-on or the backend).
    """
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not a JSON event: {line[:200]}") from None
    if not isinstance(record, dict) or record.get("event") not in EVENT_KINDS:
        raise ProtocolError(f"not an event record: {line[:200]}")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ProtocolError(
            f"the backend speaks event schema {version!r}, this add-on reads {SCHEMA_VERSION}; "
            "install matching versions of the add-on and the backend"
        )
    if not isinstance(record.get("details", {}), dict):
        raise ProtocolError(f"event details are not an object: {line[:200]}")
    record.setdefault("details", {})
    return record
