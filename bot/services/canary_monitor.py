"""Watching canaries: one message per canary, updated in place, and the automatic decisions.

Every few seconds the monitor looks at each running canary it finds in Redis (so a restarted
bot, or another replica once this one's lease ran out, resumes it; one replica drives each
canary, by lease). For each it reads the canary Deployment, its pods and `web`, then:

* aborts it (deletes `web-canary`, `web` untouched) when a pod restarted, is stuck
  (ImagePullBackOff, CrashLoopBackOff, …), lost its readiness, or the pods were not all Ready
  within the progress deadline; when `web` was deleted, replaced, or its pod template changed
  under the canary (a new `set image`);
* after `--analysis` healthy says it is ready to promote, or hands it to `promote` once with
  `--auto-promote` (through the same policy and approvals as a click on Promote);
* once promoted, deletes the canary when `web` has rolled out to the canary's images;
* shows all of it in the canary's message (posted in the thread the command was announced in).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from bot.domain import canary as rules
from bot.domain.audit import AuditEvent
from bot.domain.canary import CanaryRecord
from bot.domain.canary_view import CanaryView
from bot.domain.errors import NotFound, RolloutBotError, StoreError, failure_name
from bot.domain.status import rollout_status
from bot.domain.targets import Target
from bot.observability.logs import log_context
from bot.services.canary import CanaryService
from bot.services.ports import AuditLog, CanaryStore, Json, Leases
from bot.services.rollouts import binding

log = logging.getLogger(__name__)

INTERVAL = 2.0
# A Promote marks the canary first and sets `web`'s images a moment later; a mark with no
# matching `web` after this long was left by a Promote that failed half-way.
PROMOTE_GRACE_SECONDS = 60.0


class CanaryPublisher(Protocol):
    def post(self, record: CanaryRecord, view: CanaryView) -> str | None:
        """Post the canary's message in its thread; its ts, or None when Slack refused."""

    def update(self, record: CanaryRecord, view: CanaryView) -> None:
        """Show the view in place (paced; the latest wins)."""


#: Runs Promote for the canary's requester (auto-promote), as a click would.
Promote = Callable[[CanaryRecord, rules.Settings], None]


class CanaryMonitor:
    def __init__(
        self,
        service: CanaryService,
        registry: CanaryStore,
        leases: Leases,
        publisher: CanaryPublisher,
        *,
        promote: Promote | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.registry = registry
        self.leases = leases
        self.publisher = publisher
        self.promote = promote
        self.audit = audit
        self._clock = clock
        # When each promotion mark was first seen (in memory: a restart only gives it longer).
        self._promoting_since: dict[str, float] = {}

    def step(self) -> None:
        try:
            records = self.registry.active()
        except StoreError:
            return
        for record in records:
            try:
                if not self.leases.hold(_lease(record)):
                    continue
            except StoreError:
                return
            with log_context(canary=f"{record.namespace}/{record.deployment}"):
                try:
                    self.check(record)
                except (RolloutBotError, StoreError) as exc:
                    log.warning("canary check skipped: %s", failure_name(exc))

    def stop(self) -> None:
        for lease in self.leases.held():
            with contextlib.suppress(StoreError):
                self.leases.release(lease)

    # -- one canary ------------------------------------------------------------------------------

    def check(self, record: CanaryRecord) -> None:
        target = Target(record.namespace, record.deployment, "deployment", record.context)
        cluster = self.service.rollouts.on(record.context)
        canary: Json | None
        try:
            canary = cluster.get_workload(
                "deployment", record.namespace, rules.canary_name(record.deployment)
            )
        except NotFound:
            canary = None
        if canary is not None and str(canary["metadata"].get("uid")) != record.id:
            canary = None  # another object under the name: ours is gone
        last_seen = canary
        end = self.registry.ending(record.id)
        if end is not None:
            if canary is not None and end[0] == "aborted":
                self.service.delete(target, canary)
            self._finish(record, target, last_seen, end[0], end[1])
            return
        if canary is None or rules.settings_of(canary) is None:
            self._end(record, target, None, "gone", "`{}` was deleted outside the bot.")
            return
        settings = rules.settings_of(canary)
        assert settings is not None
        try:
            web: Json | None = cluster.get_workload(
                "deployment", record.namespace, record.deployment
            )
        except NotFound:
            web = None
        if web is None:
            self._abort(record, target, canary, f"`{record.deployment}` was deleted.")
            return
        if settings.of_uid and web["metadata"].get("uid") != settings.of_uid:
            self._abort(
                record, target, canary, f"`{record.deployment}` was replaced by a new object."
            )
            return
        if settings.promoting:
            self._follow_promotion(record, target, web, canary)
            return
        self._promoting_since.pop(record.id, None)
        if binding(web, "set-image") != settings.base:
            self._abort(
                record,
                target,
                canary,
                f"`{record.deployment}` was changed under it (its pod template is not the one "
                "the canary started from: a new `set image`, `undo` or `restart`?).",
            )
            return
        now = self._clock()
        pods = self.service.pods_of(target, canary)
        health = rules.judge(
            canary, pods, datetime.fromtimestamp(now, UTC), seen_ready=frozenset(record.seen_ready)
        )
        if health.failed:
            self._abort(record, target, canary, health.failed[0].upper() + health.failed[1:] + ".")
            return
        seen = tuple(sorted(set(record.seen_ready) | {p.name for p in health.pods if p.ready}))
        ready_since = (record.ready_since or now) if health.all_ready else None
        updated = replace(record, seen_ready=seen, ready_since=ready_since)
        view = self.service.view(target, web, canary, health, ready_since)
        if view.state == "ready" and settings.auto_promote and not record.promote_requested:
            updated = replace(updated, promote_requested=True)
            self._save(updated)
            self._show(updated, view)
            if self.promote is not None:
                self.promote(updated, settings)
            return
        if updated != record:
            self._save(updated)
        self._show(updated, view)

    def _follow_promotion(
        self, record: CanaryRecord, target: Target, web: Json, canary: Json
    ) -> None:
        now = self._clock()
        since = self._promoting_since.setdefault(record.id, now)
        wanted = dict(rules.images_of(canary))
        has_images = all(dict(rules.images_of(web)).get(c) == i for c, i in wanted.items())
        status = rollout_status(web)
        if has_images and status.done:
            self._end(
                record,
                target,
                canary,
                "promoted",
                f"`{record.deployment}` runs "
                + ", ".join(f"`{c}={i}`" for c, i in wanted.items())
                + " on every pod; `{}` was deleted.",
            )
            return
        if not has_images and now - since > PROMOTE_GRACE_SECONDS:
            self._abort(
                record,
                target,
                canary,
                f"the promotion did not reach `{record.deployment}` (its images are not the "
                "canary's), or it was changed again since.",
            )
            return
        view = self.service.view(target, web, canary, None, None, state="promoting")
        if status.failed:
            view = replace(
                view,
                why=f"The rollout of `{record.deployment}` failed: {status.message}. The canary "
                "is left as it is; Abort removes it.",
            )
        self._show(record, view)

    # -- endings ---------------------------------------------------------------------------------

    def _abort(self, record: CanaryRecord, target: Target, canary: Json, why: str) -> None:
        self._end(
            record,
            target,
            canary,
            "aborted",
            why + " `{}` was deleted; `" + record.deployment + "` is untouched.",
        )

    def _end(
        self, record: CanaryRecord, target: Target, canary: Json | None, verdict: str, why: str
    ) -> None:
        why = why.replace("{}", rules.canary_name(record.deployment))
        if not self.registry.end(record.id, verdict, why):
            ending = self.registry.ending(record.id)
            if ending is not None:
                verdict, why = ending
        if canary is not None:
            self.service.delete(target, canary)
        self._audit(record, verdict, why)
        self._finish(record, target, canary, verdict, why)

    def _finish(
        self,
        record: CanaryRecord,
        target: Target,
        canary: Json | None,
        verdict: str,
        why: str,
    ) -> None:
        done = replace(record, verdict=verdict, why=why, finished=True)
        if canary is not None and rules.settings_of(canary) is not None:
            try:
                web = self.service.rollouts.on(record.context).get_workload(
                    "deployment", record.namespace, record.deployment
                )
            except NotFound:
                web = None
            view = self.service.view(target, web, canary, None, None, state=verdict, why=why)
        else:
            view = CanaryView(
                target=target,
                canary=rules.canary_name(record.deployment),
                state=verdict,
                images=(),
                web_images=(),
                web_replicas=0,
                health=None,
                services=(),
                analysis_seconds=0,
                healthy_for=None,
                auto_promote=False,
                autoscaler=None,
                requester_id="",
                why=why,
            )
        self._save(self._show(done, view))
        with contextlib.suppress(StoreError):
            self.leases.release(_lease(record))
        self._promoting_since.pop(record.id, None)

    def _show(self, record: CanaryRecord, view: CanaryView) -> CanaryRecord:
        """Posts the message the first time (after a restart too, if it never was), else
        updates it; the record with the message's ts."""
        if not record.message_ts:
            ts = self.publisher.post(record, view)
            if ts is not None:
                record = replace(record, message_ts=ts)
                self._save(record)
            return record
        self.publisher.update(record, view)
        return record

    def _save(self, record: CanaryRecord) -> None:
        try:
            self.registry.save(record)
        except StoreError:
            log.warning("could not record the state of a canary")

    def _audit(self, record: CanaryRecord, verdict: str, why: str) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(
                AuditEvent(
                    event="canary",
                    channel=record.channel,
                    action="canary",
                    cluster=record.context or self.service.rollouts.default_context,
                    namespace=record.namespace,
                    deployment=record.deployment,
                    outcome=verdict,
                    reason=why[:300],
                )
            )
        except StoreError:
            log.warning("could not audit the end of a canary")


def _lease(record: CanaryRecord) -> str:
    return "canary." + record.id


__all__ = ["INTERVAL", "CanaryMonitor", "CanaryPublisher", "Promote"]
