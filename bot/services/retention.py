"""Audit retention: trims the trail by count and age, keeping what remains verifiable."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.services.ports import AuditLog

log = logging.getLogger(__name__)


class AuditRetention:
    def __init__(
        self, audit: AuditLog, *, max_entries: int | None, max_age: timedelta | None
    ) -> None:
        self._audit = audit
        self._max_entries = max_entries
        self._max_age = max_age

    @property
    def enabled(self) -> bool:
        return self._max_entries is not None or self._max_age is not None

    @property
    def reason(self) -> str:
        """Why entries go, as the retention record says it."""
        limits = []
        if self._max_entries is not None:
            limits.append(f"keep {self._max_entries} entries")
        if self._max_age is not None:
            limits.append(f"keep {self._max_age.total_seconds() / 86400:g} days")
        return "retention policy: " + ", ".join(limits)

    def trim(self) -> None:
        if not self.enabled:
            return
        try:
            self._audit.trim(
                max_entries=self._max_entries, max_age=self._max_age, reason=self.reason
            )
        except Exception as exc:  # a broken chain is refused by trim; verify names it
            log.warning("audit retention skipped: %s", type(exc).__name__)
