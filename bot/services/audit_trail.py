"""Reading the audit trail for `/rollout audit`."""

from __future__ import annotations

from bot.adapters.redis.audit import RedisAuditLog
from bot.domain.audit import AuditEntry


class AuditTrail:
    def __init__(self, log: RedisAuditLog) -> None:
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
