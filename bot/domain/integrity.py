"""Seals: HMAC-SHA256 over a record's canonical JSON, with a key only the bot holds.

Redis is not a trust root. Anything that can write to it could otherwise approve a request,
edit the command of a pending one, or invent a tracked rollout for the bot to undo. Each such
record carries a seal made with `ROLLOUT_BOT_STATE_KEY`; a record whose seal does not match is
never acted on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

# Shorter keys can be brute-forced offline from one sealed record.
MIN_KEY_BYTES = 32


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a sealing key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def seal(self, purpose: str, content: Any) -> str:
        """The seal of `content` (any JSON value) for one purpose ("approval", "vote", ...), so
        a seal made for one kind of record never validates another."""
        canonical = json.dumps(
            [purpose, content], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()

    def valid(self, seal: str, purpose: str, content: Any) -> bool:
        return hmac.compare_digest(seal, self.seal(purpose, content))
