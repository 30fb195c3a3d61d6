"""The canary use cases: start, promote, abort and look at the canary of a Deployment.

    start(command, target, actor)   create `web-canary` beside `web` (bot.domain.canary)
    promote(target, actor)          `set image` on `web` with the canary's images, through the
                                    same `Rollouts.set_image` a typed command uses (change-cause,
                                    ownership, conflicts); the canary goes once `web` rolled out
    abort(target, why)              delete `web-canary`; `web` is not touched
    status(target)                  a `CanaryView` of what is running now
    follow(change, channel, ts)     remember where the canary's message goes: the monitor
                                    (bot.services.canary_monitor) posts and updates it

The policy (permissions, approvals, GitOps rules) is applied by `CommandService` before any of
these run, exactly as for `set image` on `web`: every canary command's action is `set-image`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from bot.domain import canary as rules
from bot.domain import ownership
from bot.domain import verbs as cmd
from bot.domain.canary import CanaryRecord
from bot.domain.canary_view import CanaryView
from bot.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Refused,
    RolloutBotError,
    StoreError,
    failure_name,
)
from bot.domain.refusals import RolloutRefused
from bot.domain.revisions import revision_of
from bot.domain.selectors import selector_string
from bot.domain.targets import Actor, Change, ChangeAction, Target
from bot.domain.verbs.set_image import plan_set_image
from bot.services.ports import CanaryStore, Json
from bot.services.rollouts import Rollouts, binding, change_cause

log = logging.getLogger(__name__)

CANARY_ACTION: ChangeAction = "canary"


def no_canary(target: Target) -> Refused:
    return Refused(
        f"No canary of `{target}` is running. Start one with "
        f"`/rollout canary deploy/{target.name} --image CONTAINER=IMAGE -n {target.namespace}`."
    )


class CanaryService:
    def __init__(
        self,
        rollouts: Rollouts,
        registry: CanaryStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rollouts = rollouts
        self.registry = registry
        self._clock = clock

    def through(self, rollouts: Rollouts) -> CanaryService:
        """The same canaries, their changes made through `rollouts` (as a person, in
        impersonate mode)."""
        if rollouts is self.rollouts:
            return self
        return CanaryService(rollouts, self.registry, self._clock)

    # -- reads -----------------------------------------------------------------------------------

    def canary_of(self, target: Target) -> Json | None:
        try:
            return self.rollouts.on(target.context).get_workload(
                "deployment", target.namespace, rules.canary_name(target.name)
            )
        except NotFound:
            return None

    def status(self, target: Target) -> CanaryView:
        web = self.rollouts.get(target)
        canary = self.canary_of(target)
        if canary is None or rules.settings_of(canary) is None:
            raise no_canary(target)
        record = self.registry.find(target.context, target.namespace, target.name)
        pods = self.pods_of(target, canary)
        seen = frozenset(record.seen_ready) if record else frozenset()
        health = rules.judge(canary, pods, datetime.now(UTC), seen_ready=seen)
        ready_since = record.ready_since if record else None
        return self.view(target, web, canary, health, ready_since)

    def pods_of(self, target: Target, canary: Json) -> list[Json]:
        return self.rollouts.on(target.context).list_pods(target.namespace, selector_string(canary))

    def view(
        self,
        target: Target,
        web: Json | None,
        canary: Json,
        health: rules.Health | None,
        ready_since: float | None,
        *,
        state: str | None = None,
        why: str = "",
    ) -> CanaryView:
        settings = rules.settings_of(canary)
        assert settings is not None
        healthy_for = (
            int(self._clock() - ready_since)
            if ready_since is not None and health is not None and health.all_ready
            else None
        )
        if state is None:
            if settings.promoting:
                state = "promoting"
            elif healthy_for is not None and healthy_for >= settings.analysis_seconds:
                state = "ready"
            elif healthy_for is not None:
                state = "analysing"
            else:
                state = "starting"
        return CanaryView(
            target=target,
            canary=rules.canary_name(target.name),
            state=state,
            images=rules.images_of(canary),
            web_images=rules.images_of(web) if web else (),
            web_replicas=int((web or {}).get("spec", {}).get("replicas", 0) or 0),
            health=health,
            services=self._services_for(target, canary),
            analysis_seconds=settings.analysis_seconds,
            healthy_for=healthy_for,
            auto_promote=settings.auto_promote,
            autoscaler=self._autoscaler(target),
            requester_id=settings.requester_id,
            why=why,
        )

    def _services_for(self, target: Target, canary: Json) -> tuple[str, ...]:
        labels = rules.pod_labels(canary)
        try:
            services = self.rollouts.on(target.context).list_services(target.namespace)
        except (Forbidden, NotFound):
            return ()
        return tuple(sorted(s["metadata"]["name"] for s in services if rules.routes_to(s, labels)))

    def _autoscaler(self, target: Target) -> str | None:
        try:
            autoscalers = self.rollouts.on(target.context).list_autoscalers(target.namespace)
        except (Forbidden, NotFound):
            return None
        hpa = ownership.autoscaler_for("deployment", target.name, autoscalers)
        return hpa.name if hpa is not None else None

    def preview(self, command: cmd.Canary | cmd.CanaryPromote, web: Json, target: Target) -> str:
        """The approval card's description of what will run."""
        if isinstance(command, cmd.Canary):
            images = ", ".join(f"`{c}={i}`" for c, i in command.images)
            size = (
                f"{command.replicas} replica(s)"
                if command.replicas is not None
                else f"about {command.weight}% of the pods"
                if command.weight is not None
                else "1 replica"
            )
            return (
                f"start canary `{rules.canary_name(target.name)}` beside `{target.name}` "
                f"({size}) with {images}; analysis "
                f"{rules.describe_duration(command.analysis_seconds)}"
                + (", then promote automatically" if command.auto_promote else "")
            )
        canary = self.canary_of(target)
        if canary is None:
            raise no_canary(target)
        plan = plan_set_image(web, rules.images_of(canary))
        lines = [f"• `{c.container}`: `{c.old}` → `{c.new}`" for c in plan.changes]
        head = f"promote canary `{rules.canary_name(target.name)}`: set image on `{target.name}`"
        return "\n".join([head, *lines])

    # -- start -----------------------------------------------------------------------------------

    def start(
        self, command: cmd.Canary, target: Target, actor: Actor, *, expect: str | None = None
    ) -> Change:
        web = self.rollouts.get(target)
        if expect is not None and binding(web, "set-image") != expect:
            raise Refused(
                f"`{target.name}` changed since this was requested (its pod template is "
                "different now). Nothing was changed; request the canary again."
            )
        # `gitops: refuse` and kubectl's refusals, as for set image on the Deployment.
        self.rollouts.check(target, web, "set-image")
        existing = self.canary_of(target)
        if existing is not None:
            settings = rules.settings_of(existing)
            if settings is not None and settings.of == target.name:
                raise Refused(
                    f"A canary of `{target}` is already running "
                    f"(`{rules.canary_name(target.name)}`). "
                    f"Promote or abort it first: `/rollout canary status {target.name} "
                    f"-n {target.namespace}`."
                )
            raise Refused(
                f"A Deployment named `{rules.canary_name(target.name)}` already exists and the bot "
                "did not make it as a canary. Nothing was changed."
            )
        web_replicas = int(web.get("spec", {}).get("replicas", 1) or 0)
        if command.replicas is not None:
            replicas = command.replicas
        elif command.weight is not None:
            replicas = rules.replicas_for_weight(command.weight, web_replicas)
        else:
            replicas = 1
        description = "canary " + " ".join(f"{c}={i}" for c, i in command.images)
        try:
            manifest, changes = rules.canary_manifest(
                web,
                command.images,
                replicas,
                base=binding(web, "set-image"),
                analysis_seconds=command.analysis_seconds,
                auto_promote=command.auto_promote,
                requester_id=actor.user_id,
                requester_name=actor.user_name,
                change_cause=change_cause(description, actor, None),
            )
        except rules.CanaryRefused as exc:
            raise Refused(exc.message + " Nothing was changed.") from None
        except RolloutRefused as exc:
            raise Refused(exc.message) from None
        try:
            created = self.rollouts.on(target.context).create_deployment(target.namespace, manifest)
        except Conflict:
            raise Refused(
                f"`{rules.canary_name(target.name)}` was created by someone else a moment ago. "
                "Nothing was changed."
            ) from None
        details = [f"{c.container}: {c.old} → {c.new}" for c in changes]
        details.append(
            f"{replicas} canary pod(s) beside {web_replicas} of `{target.name}`"
            + (f" (--weight {command.weight}%)" if command.weight is not None else "")
        )
        hpa = self._autoscaler(target)
        if hpa is not None:
            details.append(
                f"`{target.name}` is scaled by HorizontalPodAutoscaler `{hpa}`: the canary keeps "
                f"a fixed {replicas} replica(s)."
            )
        owner = ownership.gitops_owner(web)
        return Change(
            target=target,
            action=CANARY_ACTION,
            summary=f"deployment.apps/{rules.canary_name(target.name)} created",
            changed=True,
            starts_rollout=False,
            revision_before=revision_of(web),
            images_before=rules.images_of(web),
            images_after=rules.images_of(created),
            details=tuple(details),
            deployment=created,
            notices=() if owner is None else (ownership.gitops_notice(owner),),
        )

    def follow(self, change: Change, channel: str, thread_ts: str) -> None:
        """The canary a change started gets its message in `thread_ts` (posted by the monitor,
        which every replica and a restarted bot find in Redis)."""
        meta = change.deployment.get("metadata", {})
        record = CanaryRecord(
            id=str(meta.get("uid", "")),
            context=change.target.context,
            namespace=change.target.namespace,
            deployment=change.target.name,
            channel=channel,
            thread_ts=thread_ts,
            started_at=self._clock(),
        )
        try:
            self.registry.save(record)
        except StoreError as exc:
            # The canary runs; without its record nobody watches it: say how to end it.
            log.warning("could not record a canary to follow: %s", failure_name(exc))
            raise Refused(
                f"`{rules.canary_name(change.target.name)}` was created, but the bot's state "
                "store did not answer, so it cannot watch it. Check it with `/rollout canary "
                f"status {change.target.name} -n {change.target.namespace}` and end it with "
                "`/rollout canary abort`."
            ) from None

    # -- promote and abort -----------------------------------------------------------------------

    def _own_canary(self, target: Target, web: Json) -> tuple[Json, rules.Settings]:
        canary = self.canary_of(target)
        settings = rules.settings_of(canary) if canary is not None else None
        if canary is None or settings is None or settings.of != target.name:
            raise no_canary(target)
        if settings.of_uid and settings.of_uid != web.get("metadata", {}).get("uid"):
            raise Refused(
                f"`{rules.canary_name(target.name)}` belongs to an earlier `{target.name}` (it was "
                "deleted and created again). Abort the canary; nothing was changed."
            )
        return canary, settings

    def promote(self, target: Target, actor: Actor, *, expect: str | None = None) -> Change:
        web = self.rollouts.get(target)
        canary, _ = self._own_canary(target, web)
        # Marked first, so the monitor reads `web`'s new template as the promotion's and not
        # as a change made under the canary.
        self._set_phase(target, canary, rules.PROMOTING)
        try:
            change = self.rollouts.set_image(
                target,
                rules.images_of(canary),
                actor,
                f"promoted from canary {rules.canary_name(target.name)}",
                expect=expect,
            )
        except RolloutBotError:
            self._set_phase(target, canary, None)
            raise
        return change

    def _set_phase(self, target: Target, canary: Json, phase: str | None) -> None:
        # null removes the annotation (strategic merge).
        patch = {"metadata": {"annotations": {rules.PHASE_ANNOTATION: phase}}}
        self.rollouts.on(target.context).patch_deployment(
            target.namespace, canary["metadata"]["name"], patch, field_manager="rollout-bot"
        )

    def abort(self, target: Target, actor: Actor | None, why: str) -> Change:
        """Deletes the canary (`web` is not touched) and records why, for its message."""
        canary = self.canary_of(target)
        settings = rules.settings_of(canary) if canary is not None else None
        if canary is None or settings is None or settings.of != target.name:
            raise no_canary(target)
        uid = str(canary["metadata"].get("uid", ""))
        self.registry.end(uid, "aborted", why)
        self.delete(target, canary)
        return Change(
            target=target,
            action="canary abort",
            summary=f"deployment.apps/{rules.canary_name(target.name)} deleted",
            changed=True,
            starts_rollout=False,
            revision_before=None,
            images_before=rules.images_of(canary),
            images_after=(),
            details=(f"`{target.name}` is left as it was.",),
            deployment=canary,
        )

    def delete(self, target: Target, canary: Json) -> None:
        # Already gone, or another object has the name now: nothing of ours is left.
        with contextlib.suppress(NotFound, Conflict):
            self.rollouts.on(target.context).delete_deployment(
                target.namespace,
                canary["metadata"]["name"],
                uid=str(canary["metadata"].get("uid", "")),
            )


def ended(record: CanaryRecord, verdict: str, why: str) -> CanaryRecord:
    return replace(record, verdict=verdict, why=why, finished=True)
