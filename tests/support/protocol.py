"""Checking event streams against the documented protocol (docs/events.schema.json, docs/protocol.md)."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "events.schema.json"


def validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_events(records: list[dict]) -> None:
    """Every record matches the schema, and the stream obeys the protocol's order: ``started``
    first (absent only when the run failed before it started), ``finished`` last and once, one job
    id, times that never go back."""
    v = validator()
    for r in records:
        errors = sorted(v.iter_errors(r), key=lambda e: e.path)
        assert not errors, f"{r} does not match the schema: {errors[0].message}"
    kinds = [r["event"] for r in records]
    assert kinds and kinds[-1] == "finished" and kinds.count("finished") == 1, kinds
    if len(records) > 1:
        assert kinds[0] == "started" and kinds.count("started") == 1, kinds
    assert len({r["job"] for r in records}) == 1
    times = [r["time"] for r in records]
    assert times == sorted(times)
