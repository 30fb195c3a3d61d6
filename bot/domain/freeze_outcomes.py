"""What the freeze verbs answer (a freeze set, a freeze lifted, the freezes in force), and the
break-glass reason a request carries: values the freeze use cases return and the Slack views
draw, so they live in the domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.approval import ApprovalRequest
from bot.domain.freezes import ActiveFreeze


@dataclass(frozen=True)
class FreezeSet:
    freeze: ActiveFreeze
    namespace: str
    #: The cluster, when several are served ("" otherwise).
    context: str
    #: True when it replaced a freeze already set on the namespace.
    replaced: bool
    now: datetime


@dataclass(frozen=True)
class FreezeLifted:
    namespace: str
    context: str
    #: The freeze lifted, or None when none was set from Slack (then nothing changed).
    lifted: ActiveFreeze | None
    #: Scheduled freezes still in force there (unfreeze does not lift those).
    still_frozen: tuple[ActiveFreeze, ...]
    now: datetime


@dataclass(frozen=True)
class FreezeList:
    #: None: every namespace.
    namespace: str | None
    in_force: tuple[ActiveFreeze, ...]
    upcoming: tuple[ActiveFreeze, ...]
    now: datetime
    break_glass: bool


def break_glass_reason(request: ApprovalRequest) -> str:
    """The break-glass reason of a request ("" for an ordinary one), from its sealed command."""
    fields = request.command.get("fields") if isinstance(request.command, dict) else None
    reason = fields.get("break_glass") if isinstance(fields, dict) else None
    return reason if isinstance(reason, str) else ""
