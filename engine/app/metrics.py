"""Prometheus metrics: evaluation latency, alerts by severity, rule errors, audit failures, RPC codes."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from engine.model import EvaluationResult, Severity

__all__ = [
    "ALERTS",
    "AUDIT_FAILURES",
    "EVALUATION_SECONDS",
    "RPCS",
    "RULE_ERRORS",
    "count_rpc",
    "observe_evaluation",
]

EVALUATION_SECONDS = Histogram(
    "praneya_evaluation_seconds",
    "EvaluateSafety time inside the service (read, evaluate, audit, commit)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
ALERTS = Counter("praneya_alerts_total", "Alerts returned, by severity", ["severity"])
RULE_ERRORS = Counter("praneya_rule_errors_total", "Rules that could not be evaluated", ["insufficient_data"])
AUDIT_FAILURES = Counter("praneya_audit_failures_total", "Audit rows that could not be written")
RPCS = Counter("praneya_rpcs_total", "RPCs by method and status code", ["method", "code"])

# Children bound once: `labels()` takes a lock and builds its key on every call (once per alert: 127
# times for a 40-medication patient); a bound child only adds.
_ALERTS_BY_SEVERITY = {s: ALERTS.labels(s.name) for s in Severity}
_RULE_ERRORS_BY_KIND = {b: RULE_ERRORS.labels(str(b).lower()) for b in (True, False)}
_RPC_CHILDREN: dict[tuple[str, str], Any] = {}


def count_rpc(method: str, code: str) -> None:
    child = _RPC_CHILDREN.get((method, code))
    if child is None:  # a handful of (method, code) pairs, each bound the first time it is seen
        child = _RPC_CHILDREN.setdefault((method, code), RPCS.labels(method, code))
    child.inc()


def observe_evaluation(seconds: float, result: EvaluationResult) -> None:
    EVALUATION_SECONDS.observe(seconds)
    # Counted here, then one increment per child: each `inc` takes the child's lock.
    by_severity = dict.fromkeys(_ALERTS_BY_SEVERITY, 0)
    for alert in result.alerts:
        by_severity[alert.severity] += 1
    for severity, n in by_severity.items():
        if n:
            _ALERTS_BY_SEVERITY[severity].inc(n)
    if result.rule_errors:
        insufficient = sum(1 for error in result.rule_errors if error.insufficient_data)
        for kind, n in ((True, insufficient), (False, len(result.rule_errors) - insufficient)):
            if n:
                _RULE_ERRORS_BY_KIND[kind].inc(n)
