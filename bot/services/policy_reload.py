"""Policy reload: the policy file is checked every few seconds; a valid new version is put in
force without a restart and audited, an invalid one is refused and the old policy stays.

A mounted ConfigMap changes by an atomic symlink swap, so reading the whole file and comparing
its digest sees each version exactly once, whether or not the mtime moved.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from bot.adapters.redis.audit import AuditEvent, RedisAuditLog
from bot.domain.errors import StoreError
from bot.domain.policy import Policy, PolicyError, load_policy
from bot.observability.metrics import Metrics

log = logging.getLogger(__name__)

POLICY_RELOAD_EVENT = "policy_reload"


class PolicyReloader:
    def __init__(
        self,
        path: Path,
        apply: Sequence[Callable[[Policy], None]],
        audit: RedisAuditLog | None,
        metrics: Metrics,
        *,
        cluster_name: str,
        served_contexts: Collection[str] | None = None,
    ) -> None:
        self.path = path
        #: A version whose `contexts:` patterns match none of these is refused like any
        #: other invalid one: the last good policy stays.
        self._served = served_contexts
        self._apply = list(apply)
        self._audit = audit
        self._metrics = metrics
        self._cluster = cluster_name
        self._lock = threading.Lock()
        self._digest = self._read_digest()  # the version in force at start-up
        self._problems: list[str] = []

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def step(self) -> None:
        self.check()

    def check(self) -> bool:
        """Looks at the file once; True when a new version was put in force."""
        with self._lock:
            digest = self._read_digest()
            if digest is None or digest == self._digest:
                return False
            self._digest = digest
            try:
                policy = load_policy(self.path, served_contexts=self._served)
            except PolicyError as exc:
                self._problems = [str(problem) for problem in exc.problems]
                for problem in self._problems:
                    log.error("policy not reloaded: %s", problem)
                log.error("the previous policy stays in force until the file is fixed")
                self._metrics.policy_reload(applied=False)
                return False
            for apply in self._apply:
                apply(policy)
            self._problems = []
            self._metrics.policy_reload(applied=True)
        log.info("policy reloaded from %s (sha256 %s)", self.path, digest[:12])
        if self._audit is None:
            return True  # a worker process: the main process audits the reload
        try:
            self._audit.append(
                AuditEvent(
                    event=POLICY_RELOAD_EVENT,
                    cluster=self._cluster,
                    outcome="applied",
                    parameters={"file": str(self.path), "sha256": digest},
                )
            )
        except StoreError as exc:
            log.warning("the policy reload could not be audited: %s", exc.message)
        return True

    def status(self) -> dict[str, Any]:
        """For /readyz: the policy's state, and each problem of a refused version."""
        with self._lock:
            if self._problems:
                return {"policy": "invalid", "policy_problems": list(self._problems)}
        return {"policy": "ok"}
