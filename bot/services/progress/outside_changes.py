"""Notices of changes made outside the bot (kubectl, CI/CD, GitOps), once per revision.

A channel bound to a namespace hears of every new revision there that the bot did not make;
the store's once-only marks keep every replica from announcing it again. Kept apart from the
tracker, which only hands each watch event over and follows the rollout when asked to.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from datetime import datetime

from bot.domain import kinds
from bot.domain.errors import RolloutBotError, StoreError
from bot.domain.policy import Policy
from bot.domain.revisions import observed_revision
from bot.domain.targets import Target
from bot.services.ports import Json, RolloutRegistry
from bot.services.progress.publishing import OutsideChange, ProgressPublisher
from bot.services.progress.verdicts import current_revision
from bot.services.rollouts import Rollouts


@dataclass(frozen=True)
class NoticeChannel:
    channel: str
    follow: bool


@dataclass(frozen=True)
class Announced:
    """An outside change announced in `channel`, its notice's ts being `thread_ts`."""

    channel: str
    thread_ts: str
    target: Target
    revision: int
    uid: str
    generation: int


def notice_channels_of(
    policy: Policy, context: str, default_context: bool
) -> dict[str, NoticeChannel]:
    """namespace -> the channel bound to it in this context (exact names only; a channel
    bound to no context is the default context's)."""
    return {
        binding.namespace: NoticeChannel(channel, binding.follow_outside)
        for channel, binding in policy.channels.items()
        if binding.namespace
        and (
            binding.context == context
            if binding.context is not None and context
            else default_context
        )
    }


class OutsideChangeNotices:
    def __init__(
        self,
        *,
        context: str,
        registry: RolloutRegistry,
        rollouts: Rollouts,
        publisher: ProgressPublisher,
    ) -> None:
        self.context = context
        self.registry = registry
        self.rollouts = rollouts
        self.publisher = publisher
        self._lock = threading.Lock()
        # uid -> generation last checked for an outside change (status events repeat it).
        self._noticed: dict[str, int] = {}

    def forget(self, uid: str) -> None:
        """The object is gone: a new one under its uid would be news again."""
        with self._lock:
            self._noticed.pop(uid, None)

    def announce(self, deployment: Json, where: NoticeChannel, kind: str) -> Announced | None:
        """Announce a revision someone else made, once. Judged only once the controller has
        observed the generation (before that the revision annotation is the previous one's):
        a revision the bot's own generation produced is marked as announced, so a later
        outside change that makes no new revision (a scale) never announces it either."""
        meta = deployment.get("metadata", {})
        uid = str(meta.get("uid", ""))
        generation = int(meta.get("generation", 0) or 0)
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        target = Target(namespace, name, kinds.as_kind(kind), self.context)
        if kinds.revision_on_object(kind):
            revision = observed_revision(deployment)
        else:
            with self._lock:
                if not uid or self._noticed.get(uid) == generation:
                    return None  # a status update: the revision cannot have changed
            if generation <= 1:
                return None
            revision = current_revision(self.rollouts, target, deployment)
            if revision is None:
                return None  # the controller has not written the new revision yet: ask again
            with self._lock:
                self._noticed[uid] = generation
        if not revision or revision <= 1 or not uid:
            return None  # a brand-new object's first revision is not a change to announce
        try:
            if self.registry.is_ours(uid, generation):
                self.registry.first_notice(uid, revision)
                return None
            if not self.registry.first_notice(uid, revision):
                return None
        except StoreError:
            return None  # without Redis we cannot promise "once", so we stay quiet
        try:
            revisions = self.rollouts.history(target).revisions
        except RolloutBotError:
            revisions = ()
        current = next((r for r in revisions if r.number == revision), None)
        previous = [r for r in revisions if r.number < revision]
        before = previous[-1] if previous else None
        who, changed_at = who_changed(deployment)
        thread_ts = self.publisher.notice(
            where.channel,
            OutsideChange(
                target=target,
                revision=revision,
                who=who,
                changed_at=changed_at,
                images_before=tuple(before.images) if before else (),
                images_after=tuple(current.images) if current else (),
                previous_revision=before.number if before else None,
            ),
        )
        if thread_ts is None:
            return None
        return Announced(where.channel, thread_ts, target, revision, uid, generation)


def who_changed(deployment: Json) -> tuple[str, datetime | None]:
    """The field manager that last wrote the pod template, and when, from `managedFields`.

    Never the change-cause: kubectl leaves it alone, so after `kubectl set image` it still
    names the previous (Slack) change and its user. The controller's own writes (the revision
    annotation, status) are not the change either: the template is what made the revision."""
    entries = [
        m
        for m in deployment.get("metadata", {}).get("managedFields") or []
        if m.get("operation") in ("Update", "Apply") and m.get("subresource") != "status"
    ]
    entries.sort(key=lambda m: m.get("time") or "")
    spec_writers = [m for m in entries if "f:spec" in (m.get("fieldsV1") or {})]
    template_writers = [
        m for m in spec_writers if "f:template" in (m["fieldsV1"].get("f:spec") or {})
    ]
    latest = (template_writers or spec_writers or entries or [None])[-1]
    if latest is None:
        return "someone outside the bot", None
    at: datetime | None = None
    with contextlib.suppress(TypeError, ValueError):
        at = datetime.fromisoformat(str(latest.get("time")).replace("Z", "+00:00"))
    return str(latest.get("manager") or "an unnamed field manager"), at


__all__ = [
    "Announced",
    "NoticeChannel",
    "OutsideChangeNotices",
    "notice_channels_of",
    "who_changed",
]
