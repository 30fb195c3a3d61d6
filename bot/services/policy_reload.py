"""Policy reload: the policy file is checked every few seconds; a valid new version is put in
force without a restart and audited, an invalid one is refused and the old policy stays.

A mounted ConfigMap changes by an atomic symlink swap, so reading the whole file and comparing
its digest sees each version exactly once, whether or not the mtime moved. The file is read
once per look: the bytes hashed are the bytes parsed, so an edit landing in between can never
be marked applied without being applied.

A new version must pass every check start-up makes (`requirements`, e.g. a policy with
approval rules needs ROLLOUT_BOT_STATE_KEY); one that does not is refused like an invalid
file: the last good policy stays in force, and the refusal is logged, counted and reported.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from bot.domain.audit import AuditEvent
from bot.domain.errors import StoreError
from bot.domain.policy import Policy, PolicyError, parse_policy
from bot.observability.metrics import Metrics
from bot.services.ports import AuditLog

log = logging.getLogger(__name__)

POLICY_RELOAD_EVENT = "policy_reload"

#: What start-up would refuse about a policy, one sentence per problem (empty: none).
Requirements = Callable[[Policy], Sequence[str]]


class PolicyReloader:
    def __init__(
        self,
        path: Path,
        apply: Sequence[Callable[[Policy], None]],
        audit: AuditLog | None,
        metrics: Metrics,
        *,
        cluster_name: str,
        requirements: Requirements | None = None,
        in_force: bytes | None = None,
        served_contexts: Collection[str] | None = None,
    ) -> None:
        """`in_force`: the bytes of the policy in force now, as start-up parsed them (read
        again from the file when not given)."""
        self.path = path
        #: A version whose `contexts:` patterns match none of these is refused like any
        #: other invalid one: the last good policy stays.
        self._served = served_contexts
        self._apply = list(apply)
        self._requirements = requirements
        self._audit = audit
        self._metrics = metrics
        self._cluster = cluster_name
        self._lock = threading.Lock()
        #: The bytes of the policy in force (what a worker process started later must use).
        self.in_force = in_force if in_force is not None else self._read()
        self._digest = hashlib.sha256(self.in_force).hexdigest() if self.in_force else None
        self._problems: list[str] = []

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def step(self) -> None:
        self.check()

    def check(self) -> bool:
        """Looks at the file once; True when a new version was put in force."""
        with self._lock:
            raw = self._read()
            if raw is None:
                return False
            digest = hashlib.sha256(raw).hexdigest()
            if digest == self._digest:
                return False
            self._digest = digest
            try:
                policy = parse_policy(raw, str(self.path), served_contexts=self._served)
                problems = [str(problem) for problem in self._requirements_of(policy)]
            except PolicyError as exc:
                problems = [str(problem) for problem in exc.problems]
            if problems:
                self._problems = problems
                for problem in problems:
                    log.error("policy not reloaded: %s", problem)
                log.error("the previous policy stays in force until the file is fixed")
                self._metrics.policy_reload(applied=False)
                return False
            for apply in self._apply:
                apply(policy)
            self.in_force = raw
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

    def _requirements_of(self, policy: Policy) -> Sequence[str]:
        if self._requirements is None:
            return ()
        return [f"{self.path}: {problem}" for problem in self._requirements(policy)]

    def status(self) -> dict[str, Any]:
        """For /readyz: the policy's state, and each problem of a refused version."""
        with self._lock:
            if self._problems:
                return {"policy": "invalid", "policy_problems": list(self._problems)}
        return {"policy": "ok"}
