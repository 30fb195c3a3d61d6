"""Promotion as a use case: plan it, start it, open its gates, halt and resume it
(`bot.domain.promotion` has the states; `bot.services.promotion_driver` drives the waves).

    PromotionService.run(promote, actor)      /rollout promote NAME: the plan (--dry-run), a
                                              promotion started, or one resumed (--resume)
    PromotionService.overview()               /rollout promotions
    PromotionService.approve / halt           the gate's Approve and Halt buttons
    PromotionService.step()                   the driver: every live promotion one step on
                                              (a background loop of the main process)

Every change is a target's own `set image`, made through the bot's normal path (`Executor`:
audited, change-cause, kubectl's semantics) as the person who promoted, and followed by the
progress engine in the promotion message's thread. Freezes and permissions apply to every
target as if that person had typed the change there. The state lives in Redis, sealed, and
is written by compare-and-set; one replica at a time drives a promotion (a step lock), so a
restart, a second replica or a cluster outage never runs a wave twice or skips a gate.
"""

from __future__ import annotations

import logging

from bot.domain import verbs as cmd
from bot.domain.errors import (
    ClusterUnavailable,
    NotPermitted,
    RolloutBotError,
)
from bot.domain.errors import StoreConflict as Conflict
from bot.domain.policy import Pipeline, PipelineTarget
from bot.domain.promotion import (
    PlanRefused,
    PromotionState,
    describe_soak,
    images_of,
    new_promotion,
    target_change,
)
from bot.domain.promotion_outcomes import (
    GateDecision,
    PromotionList,
    PromotionPlan,
    PromotionStarted,
)
from bot.domain.targets import Actor
from bot.services.promotion_driver import (
    CAS_ATTEMPTS,
    PromotionBoard,
    PromotionDriver,
    status_of,
    with_wave,
)

log = logging.getLogger(__name__)


class PromotionService(PromotionDriver):
    """The promotion use cases: plan and start, overview, open or halt a gate, resume."""

    # -- /rollout promote --------------------------------------------------------------------------

    def run(self, command: cmd.Promote, actor: Actor) -> PromotionPlan | PromotionStarted:
        if command.context is not None:
            raise NotPermitted(
                "`promote` takes no `--context`: the pipeline names the cluster of its source "
                "and of every target. Nothing was changed."
            )
        name = command.pipeline
        pipeline = self.access.policy.pipelines.get(name)
        if pipeline is None:
            known = ", ".join(f"`{n}`" for n in sorted(self.access.policy.pipelines)) or "none"
            raise NotPermitted(
                f"The policy has no pipeline `{name}` (pipelines: {known}). Nothing was changed; "
                "pipelines are defined under `pipelines:` in the bot's policy file."
            )
        self._check_allowed(pipeline, actor)
        if command.resume:
            return self._resume(name, actor)
        try:
            state = self._plan(name, pipeline, dict(command.images), actor)
        except PlanRefused as exc:
            raise NotPermitted(exc.message) from None
        gates = self.gates(state)
        live = self.store.live_of(name)
        if live is not None and live.status == "running":
            raise NotPermitted(
                f"Promotion `{live.id}` of `{name}` is still running (wave {live.wave + 1} of "
                f"{len(live.waves)}), and a pipeline runs one promotion at a time. Nothing was "
                "changed; wait for it, or Halt it on its message first."
            )
        if command.dry_run:
            return PromotionPlan(state, gates)
        if not gates[0] and self.freezes is not None:
            # A first wave without a gate starts now: a freeze refuses it now, as it would the
            # same `set image` typed there.
            for target in state.waves[0].targets:
                if target.step == "waiting":
                    self.freezes.gate(
                        self._set_image(state, target, 0),
                        target.namespace,
                        target.context,
                        actor,
                        multi=True,
                    )
        ts = self.board.post(state, gates)
        state = state.model_copy(update={"message_ts": ts or ""})
        try:
            self.store.create(state, replacing=live)
        except Conflict:
            raise NotPermitted(
                f"Another promotion of `{name}` started at the same moment. Nothing was changed "
                "by this one; see `/rollout promotions`."
            ) from None
        self._audit(state, "started", actor, outcome=f"{len(state.waves)} waves")
        if gates[0] is not None:
            self._audit(state, "gate opened", None, wave=0)
        return PromotionStarted(state, resumed=False, posted=ts is not None)

    def overview(self) -> PromotionList:
        return PromotionList(tuple(self.store.recent()))

    def _check_allowed(self, pipeline: Pipeline, actor: Actor) -> None:
        """Promote at the source; set-image at every target, as if typed there."""
        source = pipeline.source
        self.access.check(
            actor.user_id, actor.channel_id, "promote", source.namespace, source.context
        )
        for wave in pipeline.waves:
            for target in wave:
                try:
                    self.access.check(
                        actor.user_id,
                        actor.channel_id,
                        "set-image",
                        target.namespace,
                        target.context,
                    )
                except NotPermitted as exc:
                    raise NotPermitted(
                        f"A promotion changes `{target.where()}` as you: {exc.user_message}"
                    ) from None

    def _plan(
        self, name: str, pipeline: Pipeline, images: dict[str, str], actor: Actor
    ) -> PromotionState:
        source = pipeline.source
        obj = self._read(source)
        status = status_of(source.kind, obj)
        healthy = status.done and not status.failed and not status.paused
        if not healthy:
            raise PlanRefused(
                f"The source `{source.where()}` is not fully rolled out and healthy, so there "
                f"is nothing proven to promote: {status.message or 'it is still rolling out'}. "
                "Nothing was changed; promote once `/rollout status` there says it is rolled out."
            )
        wanted = images or images_of(obj)
        waves = [
            [target_change(t, images_of(self._read(t)), wanted, named=bool(images)) for t in wave]
            for wave in pipeline.waves
        ]
        if all(t.step == "unchanged" for wave in waves for t in wave):
            raise PlanRefused(
                f"Every target of `{name}` already runs these images; there is nothing to "
                "promote. Nothing was changed."
            )
        first_gate = any(self._rule(t) is not None for t in waves[0] if t.step == "waiting")
        return new_promotion(
            name,
            pipeline,
            waves,
            requester_id=actor.user_id,
            requester_name=actor.user_name,
            channel=actor.channel_id,
            now=self._now(),
            first_gate=first_gate,
        )

    def _read(self, target: PipelineTarget) -> dict[str, object]:
        context = self._context(target.context)
        try:
            return dict(
                self.rollouts.on(context).get_workload(target.kind, target.namespace, target.name)
            )
        except ClusterUnavailable:
            raise PlanRefused(
                f"Cluster `{target.context}` does not answer, so `{target.where()}` cannot be "
                "read. Nothing was changed; try again when it is back."
            ) from None
        except RolloutBotError as exc:
            raise PlanRefused(f"`{target.where}`: {exc.user_message}") from None

    def _context(self, name: str) -> str:
        """The Rollouts key of a pipeline's context name ("" for the only cluster)."""
        try:
            return self.contexts.resolve(name)
        except RolloutBotError as exc:
            raise PlanRefused(
                f"The pipeline names context `{name}`, which this bot does not serve. "
                f"{exc.user_message}"
            ) from None

    def _may_approve(self, state: PromotionState, index: int, actor: Actor) -> bool:
        rule = self.gate_rule(state, index)
        if rule.approver_sets:
            groups: frozenset[str] = frozenset()
            if any(p.startswith("S") for s in rule.approver_sets for p in s):
                groups = self.access.groups_of(actor.user_id)
            return all(
                actor.user_id in approvers or not groups.isdisjoint(approvers)
                for approvers in rule.approver_sets
            )
        return all(
            self.access.policy.is_allowed(
                actor.user_id,
                self.access.groups_of(actor.user_id),
                "set-image",
                t.namespace,
                t.context,
            )
            for t in state.waves[index].targets
        )

    def approve(self, promotion_id: str, index: int, actor: Actor) -> GateDecision:
        for _ in range(CAS_ATTEMPTS):
            state = self.store.get(promotion_id)
            if state is None:
                return GateDecision("not_found")
            wave = state.waves[index] if 0 <= index < len(state.waves) else None
            if (
                state.status != "running"
                or state.wave != index
                or wave is None
                or wave.step != "gate"
            ):
                return GateDecision("not_open", state)
            if actor.user_id == state.requester_id:
                self._audit(state, "gate approval refused", actor, wave=index, outcome="requester")
                return GateDecision("requester", state)
            if not self._may_approve(state, index, actor):
                return GateDecision("not_approver", state)
            if actor.user_id in wave.approvals:
                return GateDecision("duplicate", state)
            rule = self.gate_rule(state, index)
            approvals = [*wave.approvals, actor.user_id]
            opened = len(approvals) >= rule.required
            new_wave = wave.model_copy(
                update={"approvals": approvals, "step": "start" if opened else "gate"}
            )
            try:
                state = self.store.save(with_wave(state, index, new_wave))
            except Conflict:
                continue
            self._audit(
                state,
                "gate approved" if opened else "gate approval recorded",
                actor,
                wave=index,
                outcome=f"{len(approvals)} of {rule.required}",
            )
            self._show(state)
            return GateDecision("opened" if opened else "recorded", state)
        return GateDecision("not_open", self.store.get(promotion_id))

    def halt(self, promotion_id: str, actor: Actor) -> GateDecision:
        for _ in range(CAS_ATTEMPTS):
            state = self.store.get(promotion_id)
            if state is None:
                return GateDecision("not_found")
            if state.status != "running":
                return GateDecision("halted" if state.status == "halted" else "not_open", state)
            allowed = actor.user_id == state.requester_id or self._may_approve(
                state, state.wave, actor
            )
            if not allowed:
                pipeline = self.access.policy.pipelines.get(state.pipeline)
                allowed = pipeline is not None and self.access.may(
                    actor.user_id,
                    actor.channel_id,
                    "promote",
                    pipeline.source.namespace,
                    pipeline.source.context,
                )
            if not allowed:
                return GateDecision("not_permitted", state)
            halted = state.model_copy(
                update={"status": "halted", "halted_reason": f"halted by <@{actor.user_id}>"}
            )
            try:
                state = self.store.save(halted)
            except Conflict:
                continue
            self._audit(state, "halted", actor, wave=state.wave, outcome="halted by a person")
            self._show(state)
            return GateDecision("halted", state)
        return GateDecision("not_open", self.store.get(promotion_id))

    def _resume(self, name: str, actor: Actor) -> PromotionStarted:
        for _ in range(CAS_ATTEMPTS):
            state = self.store.live_of(name)
            if state is None or state.status != "halted":
                what = "is running" if state is not None else "has no halted promotion"
                raise NotPermitted(
                    f"`{name}` {what}, so there is nothing to resume. Nothing was changed; "
                    "`/rollout promotions` lists what runs."
                )
            index = state.wave
            wave = state.waves[index]
            if wave.step == "failed":
                # A person fixed what failed: the wave's targets that did not succeed go again
                # (those that did are unchanged by a second `set image`).
                targets = [
                    t.model_copy(update={"step": "waiting", "detail": ""})
                    if t.step not in ("succeeded", "unchanged")
                    else t
                    for t in wave.targets
                ]
                wave = wave.model_copy(
                    update={"targets": targets, "step": "start", "healthy_since": None}
                )
            resumed = with_wave(state, index, wave).model_copy(
                update={"status": "running", "halted_reason": ""}
            )
            try:
                state = self.store.save(resumed)
            except Conflict:
                continue
            self._audit(state, "resumed", actor, wave=index)
            self._show(state)
            return PromotionStarted(state, resumed=True)
        raise NotPermitted(
            "The promotion changed while resuming it. Nothing was changed; try again."
        )


__all__ = [
    "GateDecision",
    "PromotionBoard",
    "PromotionList",
    "PromotionPlan",
    "PromotionService",
    "PromotionStarted",
    "describe_soak",
]
