"""Reading the audit trail for `/rollout audit`."""

from __future__ import annotations

from bot.domain.audit import AuditEntry
from bot.services.ports import AuditLog


class AuditTrail:
    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def recent(
        self,
        limit: int,
        *,
        namespace: str | None = None,
        deployment: str | None = None,
        cluster: str | None = None,
    ) -> list[AuditEntry]:
        return self._log.recent(limit, namespace=namespace, deployment=deployment, cluster=cluster)
