"""Prometheus metrics in the bot's own registry (never the process-global default one, so tests
and several bots in one process do not share counters).

The rest of the code calls the small methods of `Metrics`; `metrics()` is the process's
instance. Label values are bounded: verbs, outcomes, API methods, HTTP status codes and Slack
error codes, never user input.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import monotonic

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Slack must see an ack within 3 s; the buckets resolve the part that matters.
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# From a Deployment's change in the watch to the progress message that shows it.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
_LABEL = re.compile(r"[^A-Za-z0-9_.:-]")


def _label(value: str, limit: int = 48) -> str:
    """A safe, bounded label value: no spaces or quotes, at most `limit` characters."""
    return _LABEL.sub("_", value)[:limit] or "unknown"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "rollout_bot_commands",
            "Slash commands and button clicks handled, by verb and outcome.",
            ["verb", "outcome"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "rollout_bot_ack_seconds",
            "Time from receiving a Slack request to acknowledging it.",
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.approvals_pending = Gauge(
            "rollout_bot_approvals_pending", "Approval requests waiting for a decision.", registry=r
        )
        self.approvals_decided = Counter(
            "rollout_bot_approvals_decided",
            "Approval requests decided, by outcome (approved, rejected, expired, voided).",
            ["outcome"],
            registry=r,
        )
        self.rollouts_tracked = Gauge(
            "rollout_bot_rollouts_tracked",
            "Rollouts whose progress this replica is posting.",
            registry=r,
        )
        self.rollout_verdicts = Counter(
            "rollout_bot_rollout_verdicts",
            "Tracked rollouts that ended, by verdict (succeeded, failed).",
            ["verdict"],
            registry=r,
        )
        self.progress_lag_seconds = Histogram(
            "rollout_bot_progress_lag_seconds",
            "Delay between a Deployment change seen in the watch and its progress update.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.slack_calls = Counter(
            "rollout_bot_slack_api_calls",
            "Slack Web API calls, by method.",
            ["method"],
            registry=r,
        )
        self.slack_rate_limited = Counter(
            "rollout_bot_slack_api_rate_limited",
            "Slack Web API answers 429 (rate limited), by method.",
            ["method"],
            registry=r,
        )
        self.slack_errors = Counter(
            "rollout_bot_slack_api_errors",
            "Slack Web API calls that failed, by method and Slack error code.",
            ["method", "error"],
            registry=r,
        )
        self.kube_calls = Counter(
            "rollout_bot_kubernetes_api_calls",
            "Kubernetes API calls, by verb and resource.",
            ["verb", "resource"],
            registry=r,
        )
        self.kube_errors = Counter(
            "rollout_bot_kubernetes_api_errors",
            "Kubernetes API calls that failed, by verb, resource and HTTP code (0: no answer).",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.redis_errors = Counter(
            "rollout_bot_redis_errors",
            "Redis operations that failed, by operation.",
            ["operation"],
            registry=r,
        )
        self.audit_entries = Counter(
            "rollout_bot_audit_entries_written",
            "Entries appended to the audit trail, by event.",
            ["event"],
            registry=r,
        )
        self.audit_verify_ok = Gauge(
            "rollout_bot_audit_verify_ok",
            "1 if the last audit chain verification passed, 0 if it found a bad entry, -1 before "
            "the first one.",
            registry=r,
        )
        self.audit_verify_time = Gauge(
            "rollout_bot_audit_verify_timestamp_seconds",
            "When the audit chain was last verified (Unix time).",
            registry=r,
        )
        self.policy_reloads = Counter(
            "rollout_bot_policy_reloads",
            "Policy file changes seen, by result (applied, invalid).",
            ["result"],
            registry=r,
        )
        self.policy_valid = Gauge(
            "rollout_bot_policy_valid",
            "1 if the policy file on disk is the one in force, 0 if it is invalid.",
            registry=r,
        )
        self.dependency_up = Gauge(
            "rollout_bot_dependency_up",
            "1 if the dependency answered the last readiness check (kubernetes, redis).",
            ["dependency"],
            registry=r,
        )
        self.policy_valid.set(1)
        self.audit_verify_ok.set(-1)

    # -- what the rest of the code calls -------------------------------------------------------

    def command(self, verb: str, outcome: str) -> None:
        self.commands.labels(verb=_label(verb), outcome=_label(outcome)).inc()

    @contextmanager
    def time_ack(self) -> Iterator[None]:
        started = monotonic()
        try:
            yield
        finally:
            self.ack_seconds.observe(monotonic() - started)

    def set_approvals_pending(self, count: int) -> None:
        self.approvals_pending.set(count)

    def approval_decided(self, outcome: str) -> None:
        self.approvals_decided.labels(outcome=_label(outcome)).inc()

    def set_rollouts_tracked(self, count: int) -> None:
        self.rollouts_tracked.set(count)

    def count_rollouts_tracked_with(self, count: Callable[[], float]) -> None:
        """The gauge is read from `count` at each scrape instead."""
        self.rollouts_tracked.set_function(count)

    def rollout_verdict(self, verdict: str) -> None:
        self.rollout_verdicts.labels(verdict=_label(verdict)).inc()

    def progress_lag(self, seconds: float) -> None:
        self.progress_lag_seconds.observe(max(0.0, seconds))

    def slack_call(self, method: str, *, error: str | None = None) -> None:
        method = _label(method)
        self.slack_calls.labels(method=method).inc()
        if error is not None:
            self.slack_errors.labels(method=method, error=_label(error)).inc()

    def slack_rate_limit(self, method: str) -> None:
        self.slack_rate_limited.labels(method=_label(method)).inc()

    def kube_call(self, verb: str, resource: str, *, code: int | None = None) -> None:
        """One API call; `code` is the HTTP status of a failure (0 when nothing answered)."""
        verb, resource = _label(verb), _label(resource)
        self.kube_calls.labels(verb=verb, resource=resource).inc()
        if code is not None:
            self.kube_errors.labels(verb=verb, resource=resource, code=str(code)).inc()

    def redis_error(self, operation: str) -> None:
        self.redis_errors.labels(operation=_label(operation)).inc()

    def audit_written(self, event: str) -> None:
        self.audit_entries.labels(event=_label(event)).inc()

    def audit_verified(self, ok: bool, at: float) -> None:
        self.audit_verify_ok.set(1 if ok else 0)
        self.audit_verify_time.set(at)

    def policy_reload(self, applied: bool) -> None:
        self.policy_reloads.labels(result="applied" if applied else "invalid").inc()
        self.policy_valid.set(1 if applied else 0)

    def dependency(self, name: str, up: bool) -> None:
        self.dependency_up.labels(dependency=_label(name)).set(1 if up else 0)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_default: Metrics | None = None
_default_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default
