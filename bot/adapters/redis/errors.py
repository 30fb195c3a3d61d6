"""Redis failures as the domain's store errors (defined in `bot.domain.errors`).

The user-facing text never contains Redis error text, host names or URLs (which may carry a
password). The original redis-py exception stays on `__cause__` for the operator's log, and
`cause` names only its class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bot.domain.errors import AuditTrailUntrusted, StoreCorrupt, StoreError, StoreUnavailable
from bot.observability.metrics import metrics

__all__ = [
    "AuditTrailUntrusted",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "redis_errors",
]


@contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Turn any redis-py error raised inside the block into `StoreUnavailable`."""
    try:
        yield
    except redis.RedisError as exc:
        metrics().redis_error(operation)
        raise StoreUnavailable(operation, cause=type(exc).__name__) from exc
