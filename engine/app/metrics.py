"""Prometheus metrics: evaluation latency, alerts by severity, rule errors, audit failures, RPC codes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from engine.model import EvaluationResult

__all__ = ["ALERTS", "AUDIT_FAILURES", "EVALUATION_SECONDS", "RPCS", "RULE_ERRORS", "observe_evaluation"]

EVALUATION_SECONDS = Histogram(
    "praneya_evaluation_seconds",
    "EvaluateSafety time inside the service (read, evaluate, audit, commit)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
ALERTS = Counter("praneya_alerts_total", "Alerts returned, by severity", ["severity"])
RULE_ERRORS = Counter("praneya_rule_errors_total", "Rules that could not be evaluated", ["insufficient_data"])
AUDIT_FAILURES = Counter("praneya_audit_failures_total", "Audit rows that could not be written")
RPCS = Counter("praneya_rpcs_total", "RPCs by method and status code", ["method", "code"])


def observe_evaluation(seconds: float, result: EvaluationResult) -> None:
    EVALUATION_SECONDS.observe(seconds)
    for alert in result.alerts:
        ALERTS.labels(alert.severity.name).inc()
    for error in result.rule_errors:
        RULE_ERRORS.labels(str(error.insufficient_data).lower()).inc()
