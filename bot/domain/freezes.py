"""Change windows: when changes stop, and the arithmetic of "is it frozen now, until when?".

Two kinds of freeze:

* scheduled, from the policy: a weekly window (``Fri 18:00`` to ``Mon 08:00`` in an IANA time
  zone, daylight saving included) or a fixed one (two ISO timestamps with a zone);
* ad hoc, from Slack (``/rollout freeze -n prod --for 2h --reason ...``): a namespace (of one
  cluster) frozen from now for a duration, kept in Redis and sealed like other state.

Both become an `ActiveFreeze` while they are in force; `refusal_message` is what a user whose
change one of them stops reads. Pure: every function takes the time it works on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from bot.domain.approval import UtcDateTime, format_time
from bot.domain.errors import NotPermitted

__all__ = [
    "DEFAULT_ALLOW",
    "MAX_FREEZE",
    "MIN_FREEZE",
    "ActiveFreeze",
    "AdHocFreeze",
    "FixedWindow",
    "Frozen",
    "WeeklyWindow",
    "describe_duration",
    "describe_until",
    "parse_duration",
    "parse_instant",
    "parse_weekly_point",
    "refusal_message",
    "zone",
]

#: What a freeze lets through unless it says otherwise: getting back to safety.
DEFAULT_ALLOW: Final = ("undo", "pause")
MIN_FREEZE: Final = timedelta(seconds=1)
# An incident freeze longer than a month is a policy, and belongs in the policy file.
MAX_FREEZE: Final = timedelta(days=30)

_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAYS: Final = {name: i for names in (_DAYS, _FULL_DAYS) for i, name in enumerate(names)}
_WEEKLY_POINT: Final = re.compile(r"([A-Za-z]+)\s+([0-9]{1,2}):([0-9]{2})")
_DURATION: Final = re.compile(
    r"(?:(?P<d>[0-9]{1,4})d)?(?:(?P<h>[0-9]{1,6})h)?(?:(?P<m>[0-9]{1,7})m)?(?:(?P<s>[0-9]{1,9})s)?"
)


class Frozen(NotPermitted):
    """A change refused because a freeze is in force; the message names it and how to break
    glass."""


# --- parsing --------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta | None:
    """``90s``, ``1m``, ``2h``, ``1d`` (and combinations such as ``1h30m``); None otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None:
        return None
    parts = {unit: int(amount or 0) for unit, amount in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it when there is none."""
    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"`{name}` is not an IANA time zone; write one such as `Europe/Berlin`, "
            "`America/New_York` or `UTC`"
        ) from None


def parse_weekly_point(text: str) -> tuple[int, time]:
    """``Fri 18:00`` as (weekday, time), Monday being 0. ValueError saying what is wrong."""
    match = _WEEKLY_POINT.fullmatch(text.strip())
    day = match.group(1).lower() if match else ""
    weekday = _WEEKDAYS.get(day, -1)
    if match is None or weekday < 0:
        raise ValueError(
            f"`{text}` is not a day and a time: write it as `Fri 18:00` "
            "(Mon, Tue, Wed, Thu, Fri, Sat or Sun, and a 24-hour time)"
        )
    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        raise ValueError(f"`{text}` has no such time of day: hours are 0-23, minutes 0-59")
    return weekday, time(hour, minute)


def parse_instant(value: object) -> datetime:
    """An ISO 8601 timestamp with its zone (``2026-11-26T00:00:00Z``, ``…+01:00``), in UTC.

    YAML reads an unquoted timestamp as a datetime already; that is accepted too."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise ValueError(
            f"`{value}` is not a timestamp: write it as `2026-11-26T00:00:00Z` "
            "(or with an offset such as `+01:00`)"
        )
    if moment.tzinfo is None:
        raise ValueError(
            f"`{value}` has no time zone: end it with `Z` (UTC) or an offset such as `+01:00`"
        )
    return moment.astimezone(UTC)


# --- windows --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """Every week from (``start_day``, ``start``) to the next (``end_day``, ``end``), wall-clock
    times in ``timezone``: a daylight-saving change moves the window's UTC times, not its local
    ones."""

    start_day: int
    start: time
    end_day: int
    end: time
    timezone: str

    def _local(self, day: date, at: time) -> datetime:
        # fold=0: an ambiguous wall time (the hour repeated in autumn) is its first occurrence;
        # a missing one (skipped in spring) is read with the offset before the change.
        return datetime.combine(day, at, tzinfo=zone(self.timezone))

    def _end_after(self, start: datetime) -> datetime:
        days = (self.end_day - self.start_day) % 7
        if days == 0 and self.end <= self.start:
            days = 7
        return self._local(start.date() + timedelta(days=days), self.end)

    def _last_start(self, now: datetime) -> datetime:
        """The latest start at or before ``now``."""
        today = now.astimezone(zone(self.timezone)).date()
        day = today - timedelta(days=(today.weekday() - self.start_day) % 7)
        start = self._local(day, self.start)
        if start > now:
            start = self._local(day - timedelta(days=7), self.start)
        return start

    def covering(self, now: datetime) -> tuple[datetime, datetime] | None:
        """(start, end) in UTC of the occurrence in force at ``now``, or None."""
        start = self._last_start(now)
        end = self._end_after(start)
        if start <= now < end:
            return start.astimezone(UTC), end.astimezone(UTC)
        return None

    def next_after(self, now: datetime) -> tuple[datetime, datetime]:
        """(start, end) in UTC of the first occurrence that starts after ``now``."""
        last = self._last_start(now)
        start = self._local(last.date() + timedelta(days=7), self.start)
        return start.astimezone(UTC), self._end_after(start).astimezone(UTC)

    def describe(self) -> str:
        return (
            f"every {_DAYS[self.start_day].title()} {self.start:%H:%M} to "
            f"{_DAYS[self.end_day].title()} {self.end:%H:%M} {self.timezone}"
        )


@dataclass(frozen=True, slots=True)
class FixedWindow:
    """Once, from ``start`` to ``end`` (UTC)."""

    start: datetime
    end: datetime
    timezone: str = "UTC"

    def covering(self, now: datetime) -> tuple[datetime, datetime] | None:
        return (self.start, self.end) if self.start <= now < self.end else None

    def next_after(self, now: datetime) -> tuple[datetime, datetime] | None:
        return (self.start, self.end) if now < self.start else None

    def describe(self) -> str:
        return f"{format_short(self.start, 'UTC')} to {format_short(self.end, 'UTC')}"


# --- freezes in force -----------------------------------------------------------------------


class AdHocFreeze(BaseModel):
    """A freeze set from Slack: ``namespace`` of ``cluster`` frozen until ``ends_at``."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    #: The context's label (the default cluster's name with one cluster).
    cluster: str
    reason: str
    set_by: str
    set_by_name: str = ""
    channel: str = ""
    set_at: UtcDateTime
    ends_at: UtcDateTime
    #: The bot's seal over everything above: a freeze written by anything else is ignored.
    seal: str = ""

    def sealed_content(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "cluster": self.cluster,
            "reason": self.reason,
            "set_by": self.set_by,
            "channel": self.channel,
            "set_at": format_time(self.set_at),
            "ends_at": format_time(self.ends_at),
        }


@dataclass(frozen=True, slots=True)
class ActiveFreeze:
    """A freeze as a reader sees it: in force now, or the next one to come."""

    name: str
    source: Literal["policy", "slack"]
    #: What it covers, for lists: `prod` or `prod, prod-*`.
    scope: str
    starts_at: datetime
    ends_at: datetime
    #: The zone its times are told in.
    timezone: str
    allow: tuple[str, ...]
    reason: str = ""
    set_by: str = ""

    def allows(self, action: str) -> bool:
        return action in self.allow


def format_short(moment: datetime, timezone: str, now: datetime | None = None) -> str:
    """``Mon 08:00 Europe/Berlin`` within the coming week, the date too further away."""
    local = moment.astimezone(zone(timezone))
    if now is not None and timedelta(0) <= moment - now < timedelta(days=6):
        return f"{local:%a %H:%M} {timezone}"
    return f"{local:%a %d %b %Y %H:%M} {timezone}"


def describe_duration(span: timedelta) -> str:
    """``2 days``, ``3 hours``, ``45 minutes``, ``30 seconds``: the one unit a reader needs."""
    seconds = max(0, round(span.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size * 1.5 or (unit == "day" and seconds >= size):
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def describe_until(end: datetime, timezone: str, now: datetime) -> str:
    """``until Mon 08:00 Europe/Berlin, in 2 days``."""
    return f"until {format_short(end, timezone, now)}, in {describe_duration(end - now)}"


def refusal_message(
    freeze: ActiveFreeze, action: str, where: str, now: datetime, *, break_glass: bool = True
) -> str:
    """What a user whose change the freeze stops reads: which freeze, why, until when, what
    still works and how to break glass (or, when the policy names no break-glass approvers,
    that it cannot be broken from Slack)."""
    name = f"*{freeze.name}*"
    why = f" ({freeze.reason})" if freeze.reason else ""
    who = f", set by <@{freeze.set_by}>" if freeze.set_by else ""
    allowed = ", ".join(f"`{a}`" for a in freeze.allow) or "nothing"
    if break_glass:
        breaking = (
            'If this change is the fix, add `--break-glass "why it cannot wait"` to the same '
            "command: the break-glass approvers decide, and it is audited."
        )
    else:
        breaking = (
            "The policy names no `break_glass` approvers, so it cannot be broken from Slack: "
            "wait for its end, or ask whoever set it to lift it."
        )
    return (
        f"`{where}` is frozen by {name}{why}{who}, "
        f"{describe_until(freeze.ends_at, freeze.timezone, now)}. *{action}* was refused and "
        f"nothing was changed. During the freeze {allowed} and reads still work. {breaking}"
    )
