"""The approval sweeper: expires overdue requests and starts approved ones that were orphaned.

What the surface shows for each is given to the constructor (redraw a card, report the outcome
of a resumed request), so this engine never calls up into the Slack surface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from bot.domain.approval import ApprovalRequest
from bot.domain.errors import StoreError
from bot.services.approvals import ApprovalFlow, Decision

log = logging.getLogger(__name__)


class ApprovalSweeper:
    def __init__(
        self,
        flow: ApprovalFlow,
        *,
        resume_after: timedelta,
        on_resumed: Callable[[Decision], None],
        on_expired: Callable[[ApprovalRequest], None],
    ) -> None:
        self._flow = flow
        self._resume_after = resume_after
        self._on_resumed = on_resumed
        self._on_expired = on_expired

    def sweep(self) -> None:
        try:
            expired = self._flow.expire_due()
            resumed = self._flow.resume_stalled(self._resume_after)
        except StoreError:
            return  # Redis is down; the next sweep catches up
        except Exception as exc:  # the sweeper must outlive any one bad request
            log.warning("approval sweep failed: %s", type(exc).__name__)
            return
        for decision in resumed:
            if decision.outcome.request is not None:
                self._on_resumed(decision)
        for request in expired:
            self._on_expired(request)
