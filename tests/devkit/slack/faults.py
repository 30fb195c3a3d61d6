"""Failures the Web API stand-in answers on demand, as Slack does under load: a queue of
injected statuses per method (fail_next), a delay per method, and a per-method rate limit
that answers 429 with Retry-After once a sliding window is full.

The stand-in holds its lock around `failure_for`; the delay is slept outside it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from tests.devkit.slack.replies import Reply, api_error, ratelimited


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    remaining: int


class InjectedFailures:
    """What to answer instead of the method itself, per method name (or "response_url")."""

    def __init__(self) -> None:
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._rate_limits: dict[str, float] = {}
        self._accepted_at: dict[str, deque[float]] = {}

    def fail_next(self, method: str, status: int, retry_after: int, count: int) -> None:
        fault = _Fault(status, retry_after if status == 429 else None, count)
        self._faults.setdefault(method, deque()).append(fault)

    def set_delay(self, method: str, seconds: float) -> None:
        self._delays[method] = seconds

    def delay_for(self, method: str) -> float:
        return self._delays.get(method, 0.0)

    def rate_limit(self, method: str, per_second: float | None) -> None:
        if per_second is None:
            self._rate_limits.pop(method, None)
        else:
            self._rate_limits[method] = per_second
        self._accepted_at.pop(method, None)

    def failure_for(self, method: str) -> Reply | None:
        """A queued fail_next() fault or a rate-limiter 429 for this call, if any."""
        queue = self._faults.get(method)
        if queue:
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            if fault.status == 429:
                return ratelimited(fault.retry_after or 1)
            return Reply.json(api_error("internal_error"), fault.status)
        per_second = self._rate_limits.get(method)
        if per_second is not None:
            # Slack allows short bursts, so count calls in a window rather than spacing them.
            window = max(1.0, 1.0 / per_second)
            capacity = max(1, int(per_second * window))
            accepted = self._accepted_at.setdefault(method, deque())
            now = time.monotonic()
            while accepted and now - accepted[0] >= window:
                accepted.popleft()
            if len(accepted) >= capacity:
                return ratelimited(math.ceil(window - (now - accepted[0])))
            accepted.append(now)
        return None
