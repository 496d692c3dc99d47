"""The event protocol (``docs/protocol.md``, schema ``docs/events.schema.json``): what every job
reports, as plain typed objects that serialise to one JSON object per line.

Every record has ``schema_version``, ``event`` (its kind), ``job`` (the job's id) and ``time``
(seconds since the job started). A stream starts with ``started`` and ends with ``finished``; in
between come ``progress``, ``item_done``, ``item_error`` and ``message`` records. Kind-specific
facts go into ``details`` (an object), so the top level stays the same for every job kind.

Bump :data:`SCHEMA_VERSION` when a field changes meaning or disappears; adding a field to
``details`` or a new optional field does not change it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

SCHEMA_VERSION = 1

#: ``finished.status`` values and the exit code each has in the CLI.
STATUS_OK, STATUS_PARTIAL, STATUS_FAILED, STATUS_CANCELLED = "ok", "partial", "failed", "cancelled"


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""
    job: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        d = {"schema_version": SCHEMA_VERSION, "event": self.kind}
        d.update({k: v for k, v in asdict(self).items()})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False, default=_plain)


def _plain(obj):
    """JSON for numpy scalars and paths inside ``details``."""
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


@dataclass(frozen=True)
class Started(Event):
    """The job runs. ``total``: how many items it has (None while unknown)."""

    kind: ClassVar[str] = "started"
    job_kind: str = ""  #: reconstruct | sequence | fetch-data (and later service jobs)
    total: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress(Event):
    """How far it is. ``done``/``total`` count items, or bytes when ``unit`` says so."""

    kind: ClassVar[str] = "progress"
    stage: str = ""
    done: int = 0
    total: int | None = None
    unit: str = "items"  #: items | bytes
    item: str | None = None
    text: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemDone(Event):
    """One item is complete. ``resumed``: an earlier run had completed it (nothing was redone)."""

    kind: ClassVar[str] = "item_done"
    item: str = ""
    index: int | None = None
    resumed: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemError(Event):
    """One item failed; the job goes on with the others. ``code`` is a stable word."""

    kind: ClassVar[str] = "item_error"
    item: str = ""
    index: int | None = None
    code: str = ""
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message(Event):
    """A note for the log: ``level`` info or warning."""

    kind: ClassVar[str] = "message"
    level: str = "info"
    text: str = ""
    item: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished(Event):
    """The last record. ``error`` says why a job failed as a whole (``{"code", "message"}``)."""

    kind: ClassVar[str] = "finished"
    status: str = STATUS_OK  #: ok | partial | failed | cancelled
    exit_code: int = 0
    counts: dict[str, int] = field(default_factory=dict)  #: ok, failed, skipped
    seconds: float = 0.0
    error: dict[str, str] | None = None
    details: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {t.kind: t for t in (Started, Progress, ItemDone, ItemError, Message, Finished)}


class Emitter:
    """Builds a job's events with its id and clock: ``emit = Emitter(job, sink); emit(Started, total=3)``."""

    def __init__(self, job: str, sink=None):
        self.job = job
        self.t0 = time.monotonic()
        self.sink = sink

    def make(self, cls: type[Event], **fields) -> Event:
        return cls(job=self.job, time=round(time.monotonic() - self.t0, 3), **fields)

    def __call__(self, cls: type[Event], **fields) -> Event:
        ev = self.make(cls, **fields)
        if self.sink is not None:
            self.sink(ev)
        return ev
