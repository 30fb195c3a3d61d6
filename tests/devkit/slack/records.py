"""What the Web API stand-in keeps: each call it answered, and each message as it is now.

Tests and the playground read these to see what the bot said, and how Slack answered it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from tests.devkit.slack.workspace import BOT_ID, BOT_USER_ID

Params = dict[str, Any]


@dataclass(frozen=True)
class RecordedCall:
    """One request the stand-in received, with what it answered."""

    method: str  # Web API method name, or "response_url"
    params: Params  # query + body; JSON-valued form fields are decoded; "token" is removed
    headers: dict[str, str]  # lower-cased header names
    time: float  # time.time() when answered
    injected: bool = False  # answered by fail_next() or the rate limiter, not by the method
    status: int = 200
    response: Any = None  # the JSON answered (or the text, for response_url)

    @property
    def ok(self) -> bool:
        if self.method == "response_url":
            return self.status == 200
        return (
            self.status == 200 and isinstance(self.response, dict) and bool(self.response.get("ok"))
        )


@dataclass
class PostedMessage:
    """Current state of a message posted through chat.postMessage (after any updates)."""

    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    # Every state the message has had, oldest first: {"text": ..., "blocks": ...}.
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def update_count(self) -> int:
        return len(self.versions) - 1

    def as_api_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": self.ts,
            "text": self.text,
        }
        if self.blocks:
            message["blocks"] = self.blocks
        if self.thread_ts:
            message["thread_ts"] = self.thread_ts
        return message

    def _remember_version(self) -> None:
        self.versions.append({"text": self.text, "blocks": copy.deepcopy(self.blocks)})
