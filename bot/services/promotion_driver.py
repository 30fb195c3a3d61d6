"""The promotion driver: every live promotion one step on, wave by wave.

A step starts a wave (each target's own `set image` through the `Executor`), judges it by
kubectl's verdicts, soaks, opens the next gate, or rolls the wave back and halts. One replica
at a time drives a promotion (the store's step lock) and every write is compare-and-set, so a
restart or a second replica never runs a wave twice. The use cases that start, open and halt
promotions (`bot.services.promotions`) build on this class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from bot.domain import kinds
from bot.domain import verbs as cmd
from bot.domain.audit import AuditEvent
from bot.domain.errors import (
    ClusterUnavailable,
    NotPermitted,
    RolloutBotError,
    StoreError,
)
from bot.domain.errors import StoreConflict as Conflict
from bot.domain.promotion import (
    GateRule,
    PromotionState,
    TargetState,
)
from bot.domain.status import RolloutStatus, workload_status
from bot.domain.targets import Actor, Change
from bot.services.access import Access
from bot.services.clusters import Contexts
from bot.services.execution import Executor
from bot.services.freezes import FreezeService
from bot.services.ports import AuditLog, PromotionStore
from bot.services.progress.publishing import Tracking
from bot.services.rollouts import Rollouts

log = logging.getLogger(__name__)

PROMOTION_EVENT = "promotion"
# Targets of one wave are changed together, this many at a time.
WAVE_PARALLELISM = 8
# StatefulSets and DaemonSets have no progress deadline: a wave gives up on one after this.
WORKLOAD_DEADLINE_SECONDS = 600
# A write that lost a compare-and-set is tried again this many times.
CAS_ATTEMPTS = 5


class PromotionBoard(Protocol):
    """The promotion message, kept up to date in place (the Slack surface implements it)."""

    def post(self, state: PromotionState, gates: list[GateRule | None]) -> str | None: ...

    def update(self, state: PromotionState, gates: list[GateRule | None]) -> None: ...

    def note(self, state: PromotionState, text: str, *, error: bool = False) -> None: ...


class PromotionDriver:
    """Collaborators, gates and the driver shared by every promotion use case."""

    def __init__(
        self,
        access: Access,
        rollouts: Rollouts,
        executor: Executor,
        store: PromotionStore,
        audit: AuditLog,
        board: PromotionBoard,
        *,
        contexts: Contexts,
        freezes: FreezeService | None = None,
        progress: Tracking | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.access = access
        self.rollouts = rollouts
        self.executor = executor
        self.store = store
        self.audit = audit
        self.board = board
        self.contexts = contexts
        self.freezes = freezes
        #: Follows each target's rollout in the promotion's thread (None: nobody follows).
        self.progress = progress
        self._now = clock

    # -- gates -----------------------------------------------------------------------------------

    def _rule(self, target: TargetState) -> GateRule | None:
        rule = self.access.policy.approval_rule_for("set-image", target.namespace, target.context)
        if rule is None:
            return None
        return GateRule((tuple(rule.approvers),), rule.required)

    def gate_rule(self, state: PromotionState, index: int) -> GateRule:
        """Who may open the gate before wave ``index``: every approval rule covering its
        targets at once (the strictest count); without any, anyone permitted there."""
        rules = [r for r in (self._rule(t) for t in state.waves[index].targets) if r]
        sets = tuple(dict.fromkeys(s for r in rules for s in r.approver_sets))
        return GateRule(sets, max((r.required for r in rules), default=1))

    def gates(self, state: PromotionState) -> list[GateRule | None]:
        return [
            self.gate_rule(state, index) if wave.step == "gate" or wave.approvals else None
            for index, wave in enumerate(state.waves)
        ]

    # -- the driver --------------------------------------------------------------------------------

    def step(self) -> None:
        """Every live promotion one step on (several transitions when nothing waits)."""
        try:
            ids = self.store.live_ids()
        except StoreError:
            return
        for promotion_id in ids:
            try:
                with self.store.stepping(promotion_id) as mine:
                    if mine:
                        self._drive(promotion_id)
            except (StoreError, Conflict) as exc:
                log.warning("promotion %s step deferred: %s", promotion_id, type(exc).__name__)

    def _drive(self, promotion_id: str) -> None:
        for _ in range(8):
            state = self.store.get(promotion_id)
            if state is None or state.status != "running":
                return
            wave = state.current
            match wave.step:
                case "start":
                    new = self._start_wave(state)
                case "rolling":
                    new = self._judge_wave(state)
                case "soaking":
                    new = self._soak(state)
                case "done":
                    new = self._next_wave(state)
                case _:
                    return
            if new is None:
                return

    def _start_wave(self, state: PromotionState) -> PromotionState | None:
        index = state.wave
        wave = state.current
        requester = Actor(state.requester_id, state.requester_name, state.channel)
        waiting = [i for i, t in enumerate(wave.targets) if t.step in ("waiting", "starting")]
        if self.freezes is not None:
            for i in waiting:
                target = wave.targets[i]
                try:
                    self.freezes.gate(
                        self._set_image(state, target, index),
                        target.namespace,
                        target.context,
                        requester,
                        multi=True,
                    )
                except NotPermitted as exc:
                    return self._halt_for(state, f"`{target.where}`: {exc.user_message}")
        # Claimed before any change is made: a bot killed now makes the claimed changes again
        # on restart (a second identical `set image` changes nothing), never a later wave's.
        claimed = [
            t.model_copy(update={"step": "starting"}) if i in waiting else t
            for i, t in enumerate(wave.targets)
        ]
        if claimed != wave.targets:
            state = self.store.save(
                with_wave(state, index, wave.model_copy(update={"targets": claimed}))
            )
        if any(t.step == "waiting" for t in wave.targets):
            self._audit(state, "wave started", requester, wave=index)
        results: dict[int, TargetState] = {}
        with ThreadPoolExecutor(max_workers=min(WAVE_PARALLELISM, max(1, len(waiting)))) as pool:
            futures = {i: pool.submit(self._change, state, claimed[i], index) for i in waiting}
            for i, future in futures.items():
                results[i] = future.result()
        targets = [results.get(i, t) for i, t in enumerate(claimed)]
        step = "rolling" if all(t.step != "starting" for t in targets) else "start"
        if step == "start" and targets == claimed:
            return None  # a cluster still does not answer: nothing new to store or show
        new_wave = state.current.model_copy(update={"targets": targets, "step": step})
        state = self.store.save(with_wave(state, index, new_wave))
        self._show(state)
        return state if step == "rolling" else None

    def _change(self, state: PromotionState, target: TargetState, index: int) -> TargetState:
        requester = Actor(state.requester_id, state.requester_name, state.channel)
        command = self._set_image(state, target, index)
        try:
            change = self.executor.run(
                command,
                target.namespace,
                requester,
                context=self.contexts.resolve(target.context),
            )
        except ClusterUnavailable:
            return target.model_copy(
                update={"detail": f"waiting for cluster `{target.context}` to answer"}
            )
        except RolloutBotError as exc:
            return target.model_copy(update={"step": "failed", "detail": exc.user_message})
        except StoreError:
            return target.model_copy(update={"detail": "waiting for Redis to take the audit entry"})
        generation = int(change.deployment.get("metadata", {}).get("generation", 0) or 0)
        self._follow(state, change, index)
        return target.model_copy(
            update={
                "step": "rolling",
                "generation": generation,
                "started_at": self._now(),
                "detail": "",
            }
        )

    def _follow(self, state: PromotionState, change: Change, index: int) -> None:
        if self.progress is None or not change.starts_rollout or not state.message_ts:
            return
        try:
            self.progress.track(
                change,
                state.channel,
                state.message_ts,
                title=f"promotion {state.id} wave {index + 1}: set image {change.target}",
            )
        except Exception as exc:  # following is a courtesy; the wave is judged here
            log.warning("could not follow a promotion's rollout: %s", type(exc).__name__)

    def _set_image(self, state: PromotionState, target: TargetState, index: int) -> cmd.SetImage:
        return cmd.SetImage(
            name=target.name,
            kind=kinds.as_kind(target.kind),
            images=tuple(sorted(target.after.items())),
            namespace=target.namespace,
            context=target.context,
            reason=f"promotion {state.id} of {state.pipeline}, wave {index + 1}",
        )

    def _judge_wave(self, state: PromotionState) -> PromotionState | None:
        index = state.wave
        wave = state.current
        targets = self._judge_all(wave.targets, "rolling")
        failed = [t for t in targets if t.step == "failed"]
        if failed:
            state = self.store.save(
                with_wave(
                    state, index, wave.model_copy(update={"targets": targets, "step": "failed"})
                )
            )
            for target in failed:
                self._audit(
                    state, "target failed", None, wave=index, target=target, outcome=target.detail
                )
            if state.on_failure == "rollback":
                state = self._roll_back(state)
            reason = f"`{failed[0].where}` failed: {failed[0].detail}"
            return self._halt_for(state, reason)
        if all(t.step in ("succeeded", "unchanged") for t in targets):
            new_wave = wave.model_copy(
                update={"targets": targets, "step": "soaking", "healthy_since": self._now()}
            )
            state = self.store.save(with_wave(state, index, new_wave))
            self._audit(state, "wave healthy", None, wave=index)
            self._show(state)
            return state
        if targets != wave.targets:
            state = self.store.save(
                with_wave(state, index, wave.model_copy(update={"targets": targets}))
            )
            self._show(state)
        return None

    def _judge_all(self, targets: list[TargetState], step: str) -> list[TargetState]:
        """Each target at ``step`` judged again from the cluster: one LIST per namespace holding
        several of them (a wave of many targets costs a few requests a step), else one GET."""
        groups: dict[tuple[str, str, str], list[int]] = {}
        for i, target in enumerate(targets):
            if target.step == step:
                groups.setdefault((target.context, target.namespace, target.kind), []).append(i)
        judged = list(targets)
        for (context, namespace, kind), members in groups.items():
            try:
                cluster = self.rollouts.on(self.contexts.resolve(context))
                if len(members) > 1:
                    listed = cluster.list_workloads(kind, namespace)
                    found = {str(o.get("metadata", {}).get("name", "")): o for o in listed}
                else:
                    name = targets[members[0]].name
                    found = {name: cluster.get_workload(kind, namespace, name)}
            except ClusterUnavailable:
                for i in members:
                    judged[i] = targets[i].model_copy(
                        update={"detail": f"waiting for cluster `{context}` to answer"}
                    )
                continue
            except RolloutBotError as exc:
                for i in members:
                    judged[i] = targets[i].model_copy(
                        update={"step": "failed", "detail": exc.user_message}
                    )
                continue
            for i in members:
                obj = found.get(targets[i].name)
                if obj is None:
                    judged[i] = targets[i].model_copy(
                        update={"step": "failed", "detail": "the workload no longer exists"}
                    )
                else:
                    judged[i] = self._judge(targets[i], obj)
        return judged

    def _judge(self, target: TargetState, obj: Mapping[str, object]) -> TargetState:
        status = status_of(target.kind, obj)
        now = self._now()
        if status.done and int(status.observed_generation) >= target.generation:
            return target.model_copy(update={"step": "succeeded", "detail": ""})
        # Only a Deployment gives up by itself; for the others the wave sets the deadline.
        overdue = (
            not kinds.has_progress_deadline(target.kind)
            and now - target.started_at > WORKLOAD_DEADLINE_SECONDS
        )
        if (status.failed and status.generation == target.generation) or overdue:
            return target.model_copy(
                update={"step": "failed", "detail": status.message or "the rollout failed"}
            )
        return target.model_copy(update={"detail": status.message})

    def _roll_back(self, state: PromotionState) -> PromotionState:
        """Undoes the failed wave's targets once: each goes back to the images it ran before,
        claimed (`rolled_back`) before the change so it is never made twice."""
        index = state.wave
        wave = state.current
        changed = [
            i for i, t in enumerate(wave.targets) if t.step in ("rolling", "succeeded", "failed")
        ]
        targets = [
            t.model_copy(update={"step": "rolled_back"}) if i in changed else t
            for i, t in enumerate(wave.targets)
        ]
        state = self.store.save(
            with_wave(state, index, wave.model_copy(update={"targets": targets}))
        )
        requester = Actor(state.requester_id, state.requester_name, state.channel)
        for i in changed:
            target = wave.targets[i]
            undo = cmd.SetImage(
                name=target.name,
                kind=kinds.as_kind(target.kind),
                images=tuple(sorted((c, target.before[c]) for c in target.after)),
                namespace=target.namespace,
                context=target.context,
                reason=f"promotion {state.id} failed: rollback of wave {index + 1}",
            )
            try:
                change = self.executor.run(
                    undo, target.namespace, requester, context=self.contexts.resolve(target.context)
                )
            except (RolloutBotError, StoreError) as exc:
                text = exc.user_message if isinstance(exc, RolloutBotError) else exc.message
                self.board.note(state, f"Could not roll back `{target.where}`: {text}", error=True)
                continue
            self._audit(state, "target rolled back", None, wave=index, target=target)
            if self.progress is not None and change.starts_rollout and state.message_ts:
                try:
                    self.progress.track(
                        change,
                        state.channel,
                        state.message_ts,
                        title=f"rollback of {change.target} (promotion {state.id})",
                        automatic=True,
                    )
                except Exception as exc:
                    log.warning("could not follow a rollback: %s", type(exc).__name__)
        return state

    def _soak(self, state: PromotionState) -> PromotionState | None:
        index = state.wave
        wave = state.current
        now = self._now()
        judged = self._judge_all(wave.targets, "succeeded")
        if any(
            t.step != "succeeded"
            for t, was in zip(judged, wave.targets, strict=True)
            if was.step == "succeeded"
        ):
            # No longer healthy: the soak starts again once it is (a failure halts as usual).
            targets = [
                t.model_copy(update={"step": "rolling"})
                if t.step == "succeeded" or t.step == "rolling"
                else t
                for t in judged
            ]
            new_wave = wave.model_copy(
                update={"targets": targets, "step": "rolling", "healthy_since": None}
            )
            state = self.store.save(with_wave(state, index, new_wave))
            self._show(state)
            return None
        if now - (wave.healthy_since or now) < state.soak_seconds:
            return None
        new_wave = wave.model_copy(update={"step": "done", "finished_at": now})
        state = self.store.save(with_wave(state, index, new_wave))
        self._audit(state, "wave finished", None, wave=index)
        return state

    def _next_wave(self, state: PromotionState) -> PromotionState | None:
        now = self._now()
        if state.wave + 1 >= len(state.waves):
            state = self.store.save(
                state.model_copy(update={"status": "finished", "finished_at": now})
            )
            self._audit(state, "finished", None, wave=state.wave)
            self._show(state)
            return None
        index = state.wave + 1
        wave = state.waves[index].model_copy(update={"opened_at": now})
        state = self.store.save(with_wave(state, index, wave).model_copy(update={"wave": index}))
        if wave.step == "gate":
            self._audit(state, "gate opened", None, wave=index)
        self._show(state)
        return state if wave.step == "start" else None

    def _halt_for(self, state: PromotionState, reason: str) -> PromotionState | None:
        state = self.store.save(
            state.model_copy(update={"status": "halted", "halted_reason": reason})
        )
        self._audit(state, "halted", None, wave=state.wave, outcome=reason[:300])
        self._show(state)
        self.board.note(state, f"Promotion `{state.id}` halted: {reason}", error=True)
        return None

    # -- shared --------------------------------------------------------------------------------

    def _show(self, state: PromotionState) -> None:
        try:
            self.board.update(state, self.gates(state))
        except Exception as exc:  # the message is a view; the state in Redis is the truth
            log.warning("could not update promotion %s: %s", state.id, type(exc).__name__)

    def _audit(
        self,
        state: PromotionState,
        step: str,
        actor: Actor | None,
        *,
        wave: int | None = None,
        target: TargetState | None = None,
        outcome: str = "",
    ) -> None:
        parameters = {"promotion": state.id, "pipeline": state.pipeline, "step": step}
        if wave is not None:
            parameters["wave"] = str(wave + 1)
        try:
            self.audit.append(
                AuditEvent(
                    event=PROMOTION_EVENT,
                    user_id=actor.user_id if actor else "",
                    user_name=actor.user_name if actor else "",
                    channel=state.channel,
                    action="promote",
                    cluster=target.context if target else "",
                    namespace=target.namespace if target else "",
                    deployment=target.name if target else "",
                    parameters=parameters,
                    outcome=outcome or step,
                    images_before=dict(target.before) if target else {},
                    images_after=dict(target.after) if target else {},
                )
            )
        except StoreError:
            log.warning("could not audit promotion %s: %s", state.id, step)


def with_wave(state: PromotionState, index: int, wave: object) -> PromotionState:
    waves = list(state.waves)
    waves[index] = wave  # type: ignore[call-overload]
    return state.model_copy(update={"waves": waves})


def status_of(kind: str, obj: Mapping[str, object]) -> RolloutStatus:
    """kubectl's verdict on a workload (`rollout status`), for any kind."""
    return workload_status(kind, dict(obj))


__all__ = [
    "CAS_ATTEMPTS",
    "PROMOTION_EVENT",
    "PromotionBoard",
    "PromotionDriver",
    "status_of",
    "with_wave",
]
