"""Audit models: what happened (an event) and how it was recorded (an entry in the chain)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_KEY_ID",
    "AuditEntry",
    "AuditEvent",
    "AuditEventKind",
    "AuditKeyring",
    "TrimResult",
    "VerifyResult",
    "valid_key_id",
]

#: The key id of the single key given as ROLLOUT_BOT_AUDIT_HMAC_KEY.
DEFAULT_KEY_ID: Final = "default"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def valid_key_id(kid: str) -> bool:
    """Key ids are stored in every entry: 1-32 letters, digits, '.', '_' or '-'."""
    return bool(_KEY_ID.fullmatch(kid))


class AuditEventKind(StrEnum):
    """The event names the bot writes; `AuditEvent.event` accepts other snake_case names."""

    REQUEST = "request"
    #: An approver's click, written before the vote is recorded.
    VOTE = "vote"
    APPROVAL = "approval"
    REJECTION = "rejection"
    EXPIRY = "expiry"
    CANCELLATION = "cancellation"
    VOID = "void"
    REFUSAL = "refusal"
    DENIAL = "denial"
    EXECUTION = "execution"
    OUTCOME = "outcome"
    #: A stored record failed its integrity check and was refused.
    TAMPERING = "tampering"


class AuditEvent(BaseModel):
    """What happened: the caller's part of an audit entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    user_id: str = ""
    user_name: str = ""
    channel: str = ""
    action: str = ""
    cluster: str = ""
    namespace: str = ""
    deployment: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    approval_id: str = ""
    outcome: str = ""
    revision_before: int | None = None
    revision_after: int | None = None
    #: container name -> image
    images_before: dict[str, str] = Field(default_factory=dict)
    images_after: dict[str, str] = Field(default_factory=dict)


class AuditEntry(AuditEvent):
    """An event as recorded: with time, position in the chain and hashes."""

    time: datetime
    seq: int
    prev_hash: str
    hash: str
    #: The id of the HMAC key that signed the entry ("" for plain SHA-256).
    kid: str = ""
    #: The Redis stream id. Not covered by the entry's hash (the head's MAC covers the last
    #: entry's id).
    stream_id: str = ""


@dataclass(frozen=True)
class AuditKeyring:
    """The HMAC keys of the audit trail, by key id. `signing_kid` signs new entries and
    records; every key verifies what was signed with it (rotation keeps old keys here)."""

    keys: Mapping[str, bytes] = field(repr=False)
    signing_kid: str

    def __post_init__(self) -> None:
        for kid, key in self.keys.items():
            if not valid_key_id(kid):
                raise ValueError(f"invalid audit key id {kid!r}")
            if not key:
                raise ValueError(f"the audit key {kid!r} is empty")
        if self.signing_kid not in self.keys:
            raise ValueError(f"the signing key id {self.signing_kid!r} is not in the keyring")

    def __repr__(self) -> str:
        return f"AuditKeyring(key ids {sorted(self.keys)}, signing with {self.signing_kid!r})"

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.signing_kid]


MissingAt = Literal["oldest", "middle", "newest"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    #: Entries whose hash was recomputed.
    checked: int
    #: Stream id of the first entry found wrong (for a truncated tail: the id the head
    #: names, which is gone).
    first_bad: str | None = None
    problem: str | None = None
    #: For removed entries: the first and last missing seq (last None if unknown: "from
    #: `missing_from` on") and at which end of the retained trail they are missing.
    missing_from: int | None = None
    missing_to: int | None = None
    missing_at: MissingAt | None = None
    #: seq of the first and last entry checked.
    first_seq: int | None = None
    last_seq: int | None = None
    #: seq of the first entry signed with an HMAC key (None: no keyed entry retained).
    keyed_from: int | None = None
    #: Key ids that signed the retained entries, sorted.
    key_ids: tuple[str, ...] = ()
    #: What verification could not establish (e.g. no key: the head is not authenticated).
    warnings: tuple[str, ...] = ()
    #: The head verified (on success): keep it outside Redis to detect a later rollback.
    head_seq: int | None = None
    head_hash: str | None = None


@dataclass(frozen=True, slots=True)
class TrimResult:
    removed: int
    #: seq of the last removed entry (verification now starts after it); None if nothing
    #: was removed.
    anchor_seq: int | None = None
    #: seq of the first entry this trim removed.
    trimmed_from: int | None = None
