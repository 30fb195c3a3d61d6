"""One watch on a namespace's workloads of one kind, restarted on any interruption.

Every tracked rollout of that kind in the namespace is fed from it: no polling per rollout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.adapters.k8s.cluster import Json, KubeCluster
from bot.domain.errors import Forbidden, RolloutBotError

log = logging.getLogger(__name__)

# A missing RBAC grant does not appear by itself within seconds: look again rarely.
FORBIDDEN_RETRY = 60.0
# Interruptions back off from half a second up to this.
MAX_BACKOFF = 10.0


class NamespaceWatch:
    """One watch on a namespace's objects of one workload kind (Deployments by default),
    restarted on any interruption. `on_event(type, object)` gets ADDED (also for every object
    on each (re)list), MODIFIED and DELETED."""

    def __init__(
        self,
        cluster: KubeCluster,
        namespace: str,
        on_event: Callable[[str, Json], None],
        kind: str = "deployment",
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.kind = kind
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{namespace}-{kind}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                items, version = self.cluster.workloads_snapshot(self.kind, self.namespace)
                for item in items:
                    self.on_event("ADDED", item)
                backoff = 0.5
                while not self._stop.is_set():
                    for kind, obj in self.cluster.watch_workloads(
                        self.kind, self.namespace, version
                    ):
                        if kind == "ERROR":  # e.g. 410 Gone: list again
                            raise _Relist()
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self.on_event(kind, obj)
                        if self._stop.is_set():
                            return
            except _Relist:
                continue
            except Forbidden:
                # A grant does not appear by itself in seconds: say it once, look again rarely.
                if backoff < FORBIDDEN_RETRY:
                    log.warning(
                        "no permission to watch %ss in %s; retrying every %ds",
                        self.kind,
                        self.namespace,
                        FORBIDDEN_RETRY,
                    )
                backoff = FORBIDDEN_RETRY
                self._stop.wait(backoff)
                continue
            except RolloutBotError as exc:
                log.info(
                    "watch on %s interrupted (%s); retrying", self.namespace, type(exc).__name__
                )
            except Exception as exc:  # the watch must survive anything a handler raises
                log.warning("watch on %s failed: %s", self.namespace, type(exc).__name__)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


class _Relist(Exception):
    pass
