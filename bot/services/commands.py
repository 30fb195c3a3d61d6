"""The one entry for a typed command: run it for an actor, return what happened.

    CommandService.run(command, actor) -> Outcome

    Listing | Status | History | DiffView     a read, answered to the actor only
    ApprovalList | AuditList                  a read of the bot's own records
    ApprovalRequested                         the policy wants approvers first; nothing ran
    Changed                                   the change ran (or needed nothing)

The policy is applied here (the channel's context and namespace, permissions, approvals);
with several clusters the command's context (`--context`, else the channel's, else the
default) is part of every check, target and outcome. Refusals are
raised as `NotPermitted` with a message for the user, and audited when they refused a change.
The Slack surface only parses, acknowledges, renders the outcome and, for a change that starts
a rollout, hands it to the progress engine with the message it was announced in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeAlias, cast

from bot.domain import kinds
from bot.domain import verbs as cmd
from bot.domain.approval import ApprovalRequest
from bot.domain.canary_view import CanaryView
from bot.domain.errors import Forbidden, NotPermitted, Refused
from bot.domain.freeze_outcomes import FreezeLifted, FreezeList, FreezeSet
from bot.domain.policy import ApprovalRule
from bot.domain.promotion_outcomes import PromotionList, PromotionPlan, PromotionStarted
from bot.domain.targets import Actor, Change, Target
from bot.domain.views import ApprovalList, AuditList, DiffView, HistoryView, Listing, StatusView
from bot.services.access import Access
from bot.services.approvals import ApprovalFlow
from bot.services.audit_trail import AuditTrail
from bot.services.canary import CanaryService
from bot.services.clusters import Contexts, single
from bot.services.execution import Executor, Mutation, target_of
from bot.services.freezes import FreezeService
from bot.services.identity import Identities
from bot.services.promotions import PromotionService
from bot.services.registry import ANSWERS, UNSCOPED, Scope
from bot.services.rollouts import Rollouts, binding


@dataclass(frozen=True)
class ApprovalRequested:
    request: ApprovalRequest
    rule: ApprovalRule
    target: Target


@dataclass(frozen=True)
class Changed:
    change: Change
    reason: str | None


Outcome: TypeAlias = (
    Listing
    | StatusView
    | HistoryView
    | DiffView
    | ApprovalList
    | AuditList
    | ApprovalRequested
    | Changed
    | FreezeSet
    | FreezeLifted
    | FreezeList
    | CanaryView
    | PromotionPlan
    | PromotionStarted
    | PromotionList
)


class CommandService:
    def __init__(
        self,
        access: Access,
        rollouts: Rollouts,
        executor: Executor,
        approvals: ApprovalFlow,
        audit: AuditTrail,
        contexts: Contexts | None = None,
        identities: Identities | None = None,
        freezes: FreezeService | None = None,
        canaries: CanaryService | None = None,
        promotions: PromotionService | None = None,
    ) -> None:
        self.contexts = contexts or single(executor.cluster_name)
        #: As whom the bot acts in Kubernetes (None: always itself).
        self.identities = identities
        self.access = access
        self.rollouts = rollouts
        self.executor = executor
        self.approvals = approvals
        self.audit = audit
        #: Change windows; None: nothing is ever frozen (and the freeze verbs are refused).
        self.freezes = freezes
        self.canaries = canaries
        #: Promotion pipelines; None: `promote` and `promotions` are refused.
        self.promotions = promotions

    def run(self, command: cmd.Command, actor: Actor, *, at_revision: int | None = None) -> Outcome:
        """``at_revision``: the change was asked for by a button posted for that revision of
        the workload, and runs only while the workload is still at it."""
        if isinstance(command, cmd.Help):
            raise ValueError("help is answered by the grammar, not run")
        unscoped = UNSCOPED.get(type(command))
        if unscoped is not None:
            return unscoped(self, command, actor)
        # "" with one cluster; with several, the context named, the channel's, or the default.
        context = self.contexts.resolve(
            command.context, self.access.policy.default_context(actor.channel_id)
        )
        label = self.contexts.label(context)
        answer = ANSWERS.get(type(command))
        named = command.namespace is not None
        if answer is not None and answer.everywhere is not None and not named:
            return answer.everywhere(self, command, actor, context if command.context else None)
        namespace = self.access.namespace_for(actor.channel_id, command.namespace)
        try:
            self.access.check(actor.user_id, actor.channel_id, command.action, namespace, label)
        except NotPermitted:
            if command.is_mutation:
                self.executor.audit_denial(command, namespace, actor, label)
            raise
        command = dataclasses.replace(command, namespace=namespace, context=context or None)
        if command.is_mutation:
            mutation = cast(Mutation, command)
            self._check_as_person(mutation, namespace, actor, label)
            return self._mutate(mutation, namespace, actor, at_revision)
        if answer is None:
            raise AssertionError(f"not a read: {command!r}")
        rollouts = self.rollouts
        if self.identities is not None and answer.reads_cluster:
            rollouts = self.identities.reader(rollouts, actor.user_id, context)
        where = Scope(actor, namespace, context, label, named, rollouts)
        return answer.answer(self, command, where)

    def _check_as_person(self, command: Mutation, namespace: str, actor: Actor, label: str) -> None:
        """In impersonate mode, Kubernetes RBAC's answer for the person, before an approval
        card is posted or anything is sent; a refusal is audited with the identity."""
        if self.identities is None:
            return
        context = command.context or ""
        try:
            identity = self.identities.identity_for(actor.user_id, context)
        except NotPermitted:
            self.executor.audit_denial(
                command, namespace, actor, label, outcome="no Kubernetes identity"
            )
            raise
        if identity is None:
            return
        try:
            self.identities.check_change(identity, command.action, target_of(command, namespace))
        except Forbidden:
            self.executor.audit_denial(
                command, namespace, actor, label, outcome="denied by RBAC", identity=identity
            )
            raise

    def _mutate(
        self, command: Mutation, namespace: str, actor: Actor, at_revision: int | None
    ) -> Outcome:
        label = self.contexts.label(command.context or "")
        expect = None
        if at_revision is not None:
            expect = self._still_at(command, namespace, at_revision)
        glass = None
        # A change that only removes what the bot added (aborting a canary) waits for no
        # approver and no freeze.
        if self.freezes is not None and command.needs_approval:
            # During a freeze: refused, or (with --break-glass) the break-glass approvers' card.
            glass = self.freezes.gate(
                cast(cmd.Command, command), namespace, label, actor, multi=self.contexts.multi
            )
        rule = glass or (
            self.access.policy.approval_rule_for(command.action, namespace, label)
            if command.needs_approval
            else None
        )
        if rule is not None:
            # The request is bound to the object as it is now (checked just above).
            request = self.approvals.request(command, namespace, actor, rule)
            return ApprovalRequested(request, rule, target_of(command, namespace))
        change = self.executor.run(command, namespace, actor, expect=expect)
        return Changed(change, getattr(command, "reason", None))

    def _still_at(self, command: Mutation, namespace: str, revision: int) -> str:
        """Refuses a button's change unless the workload is still at the revision the button
        was posted for; else what the write is pinned to (`binding`), so a deploy landing
        between this read and the write refuses it too."""
        target = target_of(command, namespace)
        obj = self.rollouts.get(target)
        now = self.rollouts.current_revision(target, obj)
        if now != revision:
            button = "Roll back" if command.action == "undo" else "Pause"
            at = f"revision {now}" if now is not None else "a revision the bot cannot read"
            raise Refused(
                f"This {button} button was for revision {revision}; `{target.name}` is now at "
                f"{at}, so it did nothing. Nothing was changed: `/rollout history "
                f"{kinds.info(target.kind).typed(target.name)} -n {target.namespace}` shows what "
                f"changed since."
            )
        return binding(obj, command.action)
