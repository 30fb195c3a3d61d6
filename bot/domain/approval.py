"""Approval requests: who asked for which change, who decided, and where it stands.

Pure models; `bot.adapters.redis.approvals` stores them with atomic transitions.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, field_validator

__all__ = [
    "OUTCOME_STATUSES",
    "Approval",
    "ApprovalOutcome",
    "ApprovalRequest",
    "ApprovalState",
    "OutcomeStatus",
    "UtcDateTime",
    "decision_content",
    "format_time",
    "new_approval_id",
    "require_aware",
    "store_status",
]

_ID_ALPHABET: Final = "abcdefghijkmnopqrstuvwxyz23456789"  # no l/1/0 to misread
_ID_LENGTH: Final = 10  # 33^10 ≈ 1.5e15: collisions are negligible, and create() checks


def new_approval_id() -> str:
    """A short random id that is safe in URLs, Slack button values and Redis keys."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_approval_id(value: str) -> bool:
    """Whether a button's value has the shape of an approval id (checked before it is used,
    logged or shown: a forged value could carry anything)."""
    return bool(_ID_SHAPE.fullmatch(value))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision_content(
    request_id: str, user_id: str, user_name: str, reason: str, at: datetime | None
) -> list[str]:
    """What a decision's seal covers, as the store writes it (`ApprovalRequest.decision_seal`)."""
    return [request_id, user_id, user_name, reason, format_time(at) if at is not None else ""]


def require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("must be timezone-aware")
    return moment.astimezone(UTC)


def store_status(reply: object) -> str:
    """The status a store's transition answered (e.g. the reply a `NotDurable` carries): the
    first element of the reply, as text."""
    if isinstance(reply, list | tuple) and reply:
        first = reply[0]
        return first.decode("utf-8", errors="replace") if isinstance(first, bytes) else str(first)
    return ""


UtcDateTime = Annotated[
    datetime,
    AfterValidator(require_aware),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # threshold reached; claimed for execution
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # withdrawn by the requester
    VOIDED = "voided"  # invalidated by the bot, e.g. the target changed
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


OutcomeStatus = Literal[
    "recorded",  # vote counted, more needed
    "approved",  # this vote reached the threshold
    "rejected",
    "cancelled",
    "voided",
    "marked",  # mark() moved the request on
    "already_decided",  # not pending any more; see request.state / decided_by / decided_at
    "conflict",  # mark(): the request was not in the expected state
    "duplicate",  # this user already approved
    "requester",  # four-eyes: the requester cannot approve their own request
    "not_requester",  # only the requester can cancel
    "expired",  # past its deadline (now marked expired)
    "not_found",
]
OUTCOME_STATUSES: Final = frozenset(get_args(OutcomeStatus))


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    user_name: str = ""
    at: UtcDateTime
    #: The bot's seal over (request id, user id, time): a vote written by anything else
    #: does not count.
    sig: str = ""

    def sealed_content(self, request_id: str) -> list[str]:
        return [request_id, self.user_id, format_time(self.at)]


class ApprovalRequest(BaseModel):
    """One request to change a Deployment, and its decision."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_approval_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    state: ApprovalState = ApprovalState.PENDING
    requester_id: str
    requester_name: str = ""
    #: Where the request was made: the channel the policy is checked for, at request time and
    #: again just before the change runs.
    channel: str = ""
    #: Where the approval card was posted (the rule's approvers' channel, or `channel`) and its
    #: ts, set once it is posted.
    card_channel: str = ""
    message_ts: str | None = None
    action: str
    cluster: str = ""
    namespace: str
    deployment: str
    #: The command that runs once approved, as a structured record (`commands.command_record`).
    command: dict[str, Any] = Field(default_factory=dict)
    #: What will change, as shown on the card (mrkdwn).
    preview: str = ""
    reason: str = ""
    required: int = Field(default=1, ge=1)
    #: The policy rule's approver list (user or group ids), as it was at request time.
    approvers: list[str] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: UtcDateTime | None = None
    reject_reason: str | None = None
    created_at: UtcDateTime
    expires_at: UtcDateTime
    #: What the Deployment looked like at request time (resourceVersion, template hash);
    #: opaque to the store, compared by the executor before it acts.
    fingerprint: str = ""
    result_message: str | None = None
    #: When the request was approved and so claimed for execution (exactly once).
    claimed_at: UtcDateTime | None = None
    #: The bot's seal over every field that must not change after the request was made.
    seal: str = ""
    #: Seals over what later transitions write and a card shows: where the card is, who
    #: decided (and why), and the result. A field whose seal does not hold is never shown.
    card_seal: str = ""
    decision_seal: str = ""
    result_seal: str = ""

    def sealed_content(self) -> dict[str, Any]:
        """What the seal covers: who asked for what, where, bound to which object state,
        with which approvers and deadline. Not the state or the card's position, which the
        store's transitions change."""
        return {
            "id": self.id,
            "requester_id": self.requester_id,
            "requester_name": self.requester_name,
            "channel": self.channel,
            "action": self.action,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "command": self.command,
            "preview": self.preview,
            "reason": self.reason,
            "required": self.required,
            "approvers": self.approvers,
            "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at),
            "fingerprint": self.fingerprint,
        }

    def card_content(self) -> list[str]:
        """What `card_seal` covers."""
        return [self.id, self.card_channel, self.message_ts or ""]

    def decision_content(self) -> list[str]:
        """What `decision_seal` covers: who decided, when, and a rejection's reason."""
        return decision_content(
            self.id,
            self.decided_by or "",
            self.decided_by_name or "",
            self.reject_reason or "",
            self.decided_at,
        )

    def result_content(self) -> list[str]:
        """What `result_seal` covers: the result message shown on the card."""
        return [self.id, self.result_message or ""]

    @field_validator("approvers", "approvals", mode="before")
    @classmethod
    def _empty_lua_list(cls, value: Any) -> Any:
        # Redis' Lua cjson cannot tell an empty array from an empty object and writes {}.
        return [] if value == {} else value


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    """What a transition did. `request` is the stored request afterwards (None if unknown)."""

    status: OutcomeStatus
    request: ApprovalRequest | None
    #: True for exactly one caller per request: the one whose approval reached the
    #: threshold. That caller runs the action.
    should_execute: bool = False
