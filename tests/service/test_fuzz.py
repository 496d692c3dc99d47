"""A schema-driven fuzz run (schemathesis) against the real service: whatever a client sends, the
service answers with a documented error or a result, never a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

EXAMPLES = 25


def fuzz_operation(op, served, seen: set[int]):
    """A hypothesis test of one operation: every generated request, every check."""

    @given(case=op.as_strategy())
    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )
    def fuzz(case):
        response = case.call_and_validate(headers=served.headers, checks=CHECKS, timeout=60)
        seen.add(response.status_code)

    return fuzz


@pytest.mark.slow
def test_fuzz_finds_no_server_error(served):
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json", headers=served.headers)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 9
    statuses: dict[str, set[int]] = {}
    for op in operations:
        seen = statuses.setdefault(f"{op.method.upper()} {op.path}", set())
        fuzz_operation(op, served, seen)()
    assert all(s and max(s) < 500 for s in statuses.values()), statuses
    print(statuses)
