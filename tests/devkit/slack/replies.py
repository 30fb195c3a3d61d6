"""What the Web API stand-in answers, as bytes on the wire and as the recorded response.

Slack's error shape ({"ok": false, "error": ...}) and its 429 with Retry-After are built here
once, for the methods, the Block Kit checks and the injected failures alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    payload: Any  # what gets recorded as RecordedCall.response

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Reply:
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), all_headers, payload)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"}, text)


def api_error(code: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": code, **extra}


def ratelimited(retry_after: int) -> Reply:
    return Reply.json(api_error("ratelimited"), 429, {"Retry-After": str(retry_after)})
