"""Logging set-up: text or JSON lines, a level from the environment, context fields carried by
contextvars, and a filter that takes anything shaped like a secret out of every record.

    configure_logging(fmt="json", level="INFO")
    with log_context(request_id="r-1", user="U0ALICE", verb="scale", target="prod/web"):
        log.info("scaled")       # {"msg": "scaled", "request_id": "r-1", "user": "U0ALICE", ...}

No traceback is ever written: an exception adds only its type's name (`exc_type`), because a
traceback can quote local values, and this bot's locals include tokens and request bodies.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CONTEXT_FIELDS = ("request_id", "rollout_id", "user", "verb", "target")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "rollout_bot_log_context", default=None
)


def _fields() -> dict[str, str]:
    return _context.get() or {}


# Slack tokens (bot, user, app-level, refresh and config tokens), the password part of a Redis
# URL, Slack response URLs (anyone holding one may post as the bot for 30 minutes) and JWTs
# (Kubernetes service-account tokens, at DEBUG level in client libraries). Anything matching
# is replaced, wherever it appears in a record.
_SECRETS = [
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]+"), "xox?-[redacted]"),
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), "xapp-[redacted]"),
    (re.compile(r"\b(rediss?://)([^:@/\s]*):([^@\s]*)@"), r"\1\2:[redacted]@"),
    (re.compile(r"(https://hooks\.slack\.com/)[^\s\"'<>]+"), r"\1[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "[redacted-jwt]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Adds fields (request_id, rollout_id, user, verb, target, ...) to every record logged in
    this context, including by functions it calls; the previous fields come back on exit."""
    merged = {**_fields(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_fields())


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` bound to a copy of the current context: for work handed to another thread (a
    ThreadPoolExecutor does not carry contextvars by itself)."""
    ctx = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.run(fn, *args, **kwargs)

    return run


class RedactingFilter(logging.Filter):
    """Formats the message once, redacts it, and freezes it on the record (args cleared), so
    no handler or formatter later sees the secret. Exception tracebacks are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_type = record.exc_info[0].__name__
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        exc_type = getattr(record, "exc_type", None)
        if exc_type:
            entry["exc_type"] = exc_type
        entry.update(_fields())
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        exc_type = getattr(record, "exc_type", None)
        if exc_type:
            line += f" ({exc_type})"
        fields = _fields()
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return redact(line)


def configure_logging(
    fmt: str = "text", level: str = "INFO", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Replaces the root logger's handlers with one that redacts and formats as asked."""
    fmt, level = fmt.lower(), level.upper()
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3's warnings repeat what the bot logs itself, with URLs.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return handler
