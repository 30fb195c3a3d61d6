"""Errors raised by the Redis adapters in `bot.store`.

    StoreError              base; str() is safe to show a user
    ├── StoreUnavailable    Redis refused, timed out, or errored: retryable later
    └── StoreCorrupt        a stored record could not be read back: not retryable

The user-facing text never contains Redis error text, host names or URLs (which may carry a
password). The original redis-py exception stays on `__cause__` for the operator's log, and
`cause` names only its class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

__all__ = ["StoreCorrupt", "StoreError", "StoreUnavailable", "redis_errors"]


class StoreError(Exception):
    """A state-store failure; the message is safe to show to a Slack user."""

    def __init__(self, message: str, *, operation: str = "", cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: What the store was doing, e.g. "approve" (for logs and metrics).
        self.operation = operation
        #: The class name of the underlying error, e.g. "TimeoutError"; never its text.
        self.cause = cause


class StoreUnavailable(StoreError):
    """Redis could not be reached or did not answer in time.

    For writes the outcome may be unknown (the reply can be lost after Redis applied the
    command); callers re-read before deciding, and never assume "nothing happened" unless
    the operation is idempotent.
    """

    def __init__(self, operation: str = "", *, cause: str = "") -> None:
        super().__init__(
            "The bot's state store is unavailable right now; try again in a minute.",
            operation=operation,
            cause=cause,
        )


class StoreCorrupt(StoreError):
    """A record in Redis is not in the shape this version of the bot writes."""

    def __init__(self, operation: str = "", *, cause: str = "") -> None:
        super().__init__(
            "A stored record could not be read; an operator has to look at it.",
            operation=operation,
            cause=cause,
        )


@contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Turn any redis-py error raised inside the block into `StoreUnavailable`."""
    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(operation, cause=type(exc).__name__) from exc
