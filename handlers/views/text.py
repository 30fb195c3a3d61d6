"""The words views share: a mention that pings only ids, a workload as typed in a command,
which cluster, images, ages and Slack date tokens (each reader sees their own time zone).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.domain import kinds
from bot.domain.mrkdwn import code, escape
from bot.domain.targets import Target

# The cluster name when none was configured (ROLLOUT_BOT_CLUSTER_NAME): one cluster, not named.
DEFAULT_CLUSTER = "default"
USER_ID = re.compile(r"[UW][A-Z0-9]{1,20}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{1,20}")


def mention(principal: str) -> str:
    """A user (or user-group) id as a mention; anything else, as text that pings nobody."""
    if USER_ID.fullmatch(principal):
        return f"<@{principal}>"
    if _GROUP_ID.fullmatch(principal):
        return f"<!subteam^{principal}>"
    return f"`{code(principal)}`"


def word(target: Target) -> str:
    """The target as typed in a command: `NAME` for a Deployment, `sts/NAME`, `ds/NAME`."""
    return code(kinds.info(target.kind).typed(target.name))


def workload_path(namespace: str, kind: str, name: str) -> str:
    """`NAMESPACE/NAME` for a Deployment, `NAMESPACE/KIND/NAME` for the others; a kind the bot
    does not know (a record's) is written as it came."""
    known = kinds.info(kind).word(name) if kind in kinds.KINDS else f"{kind}/{name}"
    return f"{namespace}/{known}"


def pausable(kind: str) -> bool:
    """Whether a workload of this kind can be paused (kubectl pauses Deployments only)."""
    return kind in kinds.KINDS and kinds.info(kind).pausable


def in_cluster(context: str) -> str:
    """` in cluster `east``: said only when several clusters are served (a target's context is
    "" with one, and today's text stays as it was)."""
    return f" in cluster `{escape(context)}`" if context else ""


def flags(target: Any) -> str:
    """`-n NS`, and `--context NAME` for a target in one of several clusters."""
    context = getattr(target, "context", "")
    return code(f"-n {target.namespace}" + (f" --context {context}" if context else ""))


def cluster_note(cluster: str, *, several: bool = False) -> str | None:
    """Which cluster, only when one is named: the default single cluster goes unsaid. With
    ``several`` clusters served, every one is named, one called `default` too."""
    if not cluster or (cluster == DEFAULT_CLUSTER and not several):
        return None
    return f"cluster `{escape(cluster)}`"


def image_list(images: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name}={image}" for name, image in images) or "-"


def age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def short_time(stamp: str) -> str:
    """`2026-12-07T03:08:12Z` as `12-07 03:08`: the year and seconds only widen a table."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp or "-"
    return moment.astimezone(UTC).strftime("%m-%d %H:%M")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def date_token(moment: datetime) -> str:
    """A Slack date token: each reader sees their own time zone."""
    stamp = int(moment.timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{moment.isoformat()}>"


def time_of_day(moment: datetime) -> str:
    """A Slack time token (`03:08 AM` in each reader's zone), for something that just happened."""
    stamp = int(moment.timestamp())
    return f"<!date^{stamp}^{{time}}|{moment.strftime('%H:%M UTC')}>"


def time_of_day_now() -> str:
    return time_of_day(datetime.now(UTC))
