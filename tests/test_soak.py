"""The short soak: load with a database restart, a SIGKILLed worker and a slow database, on a cluster
of its own. `make soak` runs the long version (20,000 evaluations from 32 clients)."""

from __future__ import annotations

import pytest

from engine.ops.soak import run_soak

pytestmark = [pytest.mark.db, pytest.mark.slow]


def test_short_soak_loses_no_audit_row_and_recovers() -> None:
    # No duration is asserted here (a busy machine is slow, not wrong): `make soak` judges the seconds
    # (report.too_slow); this test judges behaviour.
    report = run_soak(evaluations=400, clients=8, fault_evaluations=200, log=lambda _: None)
    steady = report.phases[0]
    assert steady.ok == 400 and not steady.errors
    restart = report.phases[1]
    assert set(restart.errors) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert report.recovery_seconds is not None and report.recovery_seconds != float("inf")  # it came back
    assert report.worker_restarted
    slow = report.phases[3]
    # Callers of a blocked database get a status (their deadline), never a wrong answer or another code.
    assert set(slow.errors) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert report.successful_ids <= report.audit_ids
    assert report.problems == []
