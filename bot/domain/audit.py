"""Audit models: what happened (an event) and how it was recorded (an entry in the chain)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AuditEntry", "AuditEvent", "AuditEventKind", "TrimResult", "VerifyResult"]


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
    #: The Redis stream id; not covered by the hash (Redis assigns it).
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    #: Entries whose hash was recomputed.
    checked: int
    #: Stream id of the first entry found wrong (for a truncated tail: the id the head
    #: names, which is gone).
    first_bad: str | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class TrimResult:
    removed: int
    #: seq of the last removed entry (verification now starts after it); None if nothing
    #: was removed.
    anchor_seq: int | None = None
