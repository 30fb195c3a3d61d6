"""Progress in several clusters: one `ProgressTracker` per kubeconfig context.

Each context has its own tracker, so its own watches (one per namespace and kind in use),
leases and catch-up reads: an unreachable or slow cluster never holds up another's updates.
The surface sees one object with the tracker's interface; a change goes to its target's
context's tracker.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from bot.domain.policy import Policy
from bot.domain.targets import Change
from bot.services.progress.context_tracker import ProgressTracker


class ProgressTrackers:
    def __init__(self, trackers: Mapping[str, ProgressTracker], default: str) -> None:
        if default not in trackers:
            raise ValueError("the default context has no tracker")
        self.trackers = dict(trackers)
        self.default = default

    def of(self, context: str) -> ProgressTracker:
        return self.trackers.get(context, self.trackers[self.default])

    def start(self) -> None:
        for tracker in self.trackers.values():
            tracker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Every tracker stops at once: a hung cluster's watch must not eat the others' time."""
        if len(self.trackers) == 1:
            next(iter(self.trackers.values())).stop(timeout)
            return
        with ThreadPoolExecutor(max_workers=len(self.trackers)) as pool:
            for tracker in self.trackers.values():
                pool.submit(tracker.stop, timeout)

    def track(
        self,
        change: Change,
        channel_id: str,
        thread_ts: str,
        *,
        title: str = "",
        automatic: bool = False,
    ) -> None:
        self.of(change.target.context).track(
            change, channel_id, thread_ts, title=title, automatic=automatic
        )

    def tracked_count(self) -> int:
        return sum(tracker.tracked_count() for tracker in self.trackers.values())

    def use_policy(self, policy: Policy) -> None:
        for tracker in self.trackers.values():
            tracker.use_policy(policy)

    def watch_count(self) -> int:
        """Watches open across every context (one per context, namespace and kind in use)."""
        return sum(tracker.watch_count() for tracker in self.trackers.values())
