"""The policy's change windows: freezes (weekly or fixed) and who may let a change through one
(break glass). When a window is open, and until when, is bot.domain.freezes's arithmetic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from bot.domain import freezes as windows
from bot.domain.policy.fields import (
    _DEFAULT_TTL,
    ContextPatterns,
    NamespacePattern,
    Principal,
    Ttl,
    _matches,
    _Model,
)
from bot.domain.policy.rules import ApprovalRule
from bot.domain.verbs import SPECS

# What a freeze may let through: the actions that change the cluster.
_CHANGE_ACTIONS: Final = tuple(spec.command.action for spec in SPECS if spec.command.is_mutation)


def _change_action(value: str) -> str:
    if value not in _CHANGE_ACTIONS:
        raise ValueError(
            f"`{value}` is not a change a freeze could stop; `allow` lists some of "
            + ", ".join(_CHANGE_ACTIONS)
        )
    return value


def _weekly_point(value: str) -> str:
    windows.parse_weekly_point(value)
    return value


def _time_zone(value: str) -> str:
    windows.zone(value)
    return value


WeeklyPoint = Annotated[str, AfterValidator(_weekly_point)]
Instant = Annotated[datetime, BeforeValidator(windows.parse_instant)]


class WeeklyFreeze(_Model):
    """``{from: "Fri 18:00", to: "Mon 08:00", timezone: "Europe/Berlin"}``."""

    start: WeeklyPoint = Field(alias="from")
    end: WeeklyPoint = Field(alias="to")
    timezone: Annotated[str, AfterValidator(_time_zone)]

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyFreeze:
        if windows.parse_weekly_point(self.start) == windows.parse_weekly_point(self.end):
            raise ValueError("`from` and `to` are the same moment, so the window is empty")
        return self

    def window(self) -> windows.WeeklyWindow:
        start_day, start = windows.parse_weekly_point(self.start)
        end_day, end = windows.parse_weekly_point(self.end)
        return windows.WeeklyWindow(start_day, start, end_day, end, self.timezone)


class FreezeRule(_Model):
    """No changes in these namespaces during the window, except what ``allow`` lists."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w .-]*$")]
    namespaces: Annotated[list[NamespacePattern], Field(min_length=1)]
    contexts: ContextPatterns = Field(default_factory=lambda: ["*"])
    weekly: WeeklyFreeze | None = None
    start: Instant | None = Field(default=None, alias="from")
    end: Instant | None = Field(default=None, alias="to")
    allow: list[Annotated[str, AfterValidator(_change_action)]] = Field(
        default_factory=lambda: list(windows.DEFAULT_ALLOW)
    )
    #: Shown to whoever the freeze stops.
    reason: Annotated[str, Field(max_length=300)] = ""

    @model_validator(mode="after")
    def _one_window(self) -> FreezeRule:
        fixed = self.start is not None or self.end is not None
        if self.weekly is not None and fixed:
            raise ValueError("give either `weekly` or `from` and `to`, not both")
        if self.weekly is None and not fixed:
            raise ValueError("needs a window: `weekly: {from, to, timezone}` or `from` and `to`")
        if fixed and (self.start is None or self.end is None):
            raise ValueError("a fixed window needs both `from` and `to`")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("`from` must be before `to`")
        return self

    def window(self) -> windows.WeeklyWindow | windows.FixedWindow:
        if self.weekly is not None:
            return self.weekly.window()
        assert self.start is not None and self.end is not None  # _one_window
        return windows.FixedWindow(self.start, self.end)

    def covers(self, namespace: str, context: str = "") -> bool:
        return _matches(self.namespaces, namespace) and _matches(self.contexts, context)


class BreakGlassRule(_Model):
    """Who may let one change through a freeze (never the person asking)."""

    approvers: Annotated[list[Principal], Field(min_length=1)]
    approvals: Annotated[int, Field(ge=1, strict=True)] = 1
    ttl: Ttl = _DEFAULT_TTL

    @model_validator(mode="after")
    def _enough_approvers(self) -> BreakGlassRule:
        self.as_approval_rule()
        return self

    def as_approval_rule(self) -> ApprovalRule:
        """The break-glass request waits like any other approval, for these approvers."""
        try:
            return ApprovalRule(
                namespaces=["*"],
                actions=["*"],
                required=self.approvals,
                approvers=self.approvers,
                ttl=self.ttl,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str((first.get("ctx") or {}).get("error", first["msg"]))
            raise ValueError(message.replace("`required`", "`approvals`")) from None
