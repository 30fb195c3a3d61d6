"""What the progress engine needs from the chat surface, and what it hands it.

The engine decides *what* a rollout looks like now (a `ProgressFrame`); the surface decides how
that reads in Slack. It is wired in by the runtime, so the engine never imports the surface.
`Tracking` is the engine as the other use cases see it (follow the rollout a change started).
The world-facing ports (Cluster, stores, leases) are in `bot.services.ports`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.domain.status import RolloutStatus
from bot.domain.targets import Change, Target
from bot.domain.tracking import TrackedRollout


@dataclass(frozen=True)
class ProgressFrame:
    tracked: TrackedRollout
    status: RolloutStatus
    now: float
    verdict: str | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: The workload's revision when the verdict was reached: a failed rollout's buttons act
    #: only while the workload is still at it (None: not known, and no buttons are offered).
    revision: int | None = None


@dataclass(frozen=True)
class OutsideChange:
    """A new revision that someone else made (kubectl, CI/CD, GitOps)."""

    target: Target
    revision: int
    # The field manager that wrote the template (`kubectl-set`), never a Slack user: the
    # change-cause an outside tool leaves alone still names the previous change's author.
    who: str
    images_before: tuple[tuple[str, str], ...]
    images_after: tuple[tuple[str, str], ...]
    previous_revision: int | None
    # When the field manager wrote it (managedFields' time), when the cluster says.
    changed_at: datetime | None = None


class Tracking(Protocol):
    """Follows the rollout a change started, in one message threaded under `thread_ts`."""

    def track(
        self,
        change: Change,
        channel_id: str,
        thread_ts: str,
        *,
        title: str = "",
        automatic: bool = False,
    ) -> None: ...


class ProgressPublisher(Protocol):
    def post(self, frame: ProgressFrame) -> str | None:
        """Post the rollout's message in its thread; its ts, or None when Slack refused."""

    def update(
        self, frame: ProgressFrame, *, final: bool, on_delivered: Callable[[], None]
    ) -> None:
        """Show the frame in place (paced); `on_delivered` runs once a final frame is shown."""

    def notice(self, channel: str, change: OutsideChange) -> str | None:
        """Announce an outside change; the notice's ts (its thread), or None."""

    def note(self, channel: str, thread_ts: str, text: str, *, error: bool = False) -> None:
        """A short line in a rollout's thread (an automatic rollback, a refusal)."""

    def needs_person(self, tracked: TrackedRollout, revision: int | None = None) -> None:
        """The automatic rollback failed too: say in its thread that a person is needed, and
        offer Pause (the bot does not undo its own undo) while the workload is at
        ``revision``."""

    def flush(self, timeout: float) -> bool:
        """Deliver every pending update now; True if none is left."""

    def start(self) -> None: ...

    def stop(self) -> None: ...
