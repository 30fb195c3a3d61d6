"""Running a mutation: the one path shared by a typed command and an approved request.

The audit entry for the execution is written *before* the cluster is touched: if Redis cannot
take it, `StoreUnavailable` propagates and nothing runs; with ROLLOUT_BOT_REDIS_MIN_REPLICAS,
that includes enough replicas confirming it (`NotDurable`). The outcome is audited afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from bot.domain import verbs as cmd
from bot.domain.approval import ApprovalRequest
from bot.domain.audit import AuditEvent, AuditEventKind
from bot.domain.errors import NotDurable, NotPermitted, RolloutBotError, StoreError
from bot.domain.targets import Actor, Change, Target
from bot.services.canary import CanaryService
from bot.services.ports import AuditLog
from bot.services.registry import change_role
from bot.services.rollouts import Rollouts
from bot.services.tools import Tools

if TYPE_CHECKING:
    from bot.domain.identity import KubeIdentity
    from bot.services.identity import Identities

log = logging.getLogger(__name__)


class Mutation(Protocol):
    """What every change command has (``is_mutation``): which one it is says nothing here,
    the registry (``bot.services.registry.change_role``) runs it by its type."""

    @property
    def action(self) -> cmd.Action: ...
    @property
    def needs_approval(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def context(self) -> str | None: ...


def target_of(command: Mutation, namespace: str, context: str | None = None) -> Target:
    """The object a mutation works on; ``context`` (else the command's ``--context``, else the
    default context) names its cluster."""
    return Target(
        namespace,
        command.name,
        getattr(command, "kind", "deployment"),
        context or command.context or "",
    )


def reason_of(command: object) -> str | None:
    reason = getattr(command, "reason", None)
    return reason if isinstance(reason, str) else None


def parameters_of(command: object) -> dict[str, str]:
    """Flat string parameters for the audit entry: the command as the grammar writes it, and
    the kind of workload it acts on (Deployment, StatefulSet or DaemonSet)."""
    kind = getattr(command, "kind", "deployment")
    return {"command": cmd.render_command(command), "kind": str(kind)}


def mutation_of(request: ApprovalRequest) -> Mutation | None:
    """The change an approval request holds, or None when its record is not one the bot can
    run (not a change, or not the one its sealed fields name)."""
    try:
        command = cmd.from_record(request.command)
    except ValueError:
        return None
    if not command.is_mutation or command.action != request.action:
        return None
    if getattr(command, "namespace", None) != request.namespace:
        return None
    # The record's `--context`, when it has one, is the request's (sealed) cluster.
    if getattr(command, "context", None) not in (None, request.cluster):
        return None
    mutation: Mutation = command  # type: ignore[assignment]
    return mutation if mutation.name == request.deployment else None


def audit_parameters(request: ApprovalRequest) -> dict[str, str]:
    mutation = mutation_of(request)
    return parameters_of(mutation) if mutation is not None else {"command": "(unreadable)"}


@dataclass
class Executor:
    rollouts: Rollouts
    audit: AuditLog
    #: The default context's name: what the audit records for a command without a context.
    cluster_name: str
    #: As whom changes are made (the policy's `identity`); None: always the bot itself.
    identities: Identities | None = None
    canaries: CanaryService | None = None

    def run(
        self,
        command: Mutation,
        namespace: str,
        actor: Actor,
        *,
        approval_id: str = "",
        expect: str | None = None,
        context: str | None = None,
        approvers: Sequence[str] = (),
        continued_by: str = "",
        acting_for: str = "",
    ) -> Change:
        """Runs the change as the bot, or in impersonate mode as the person it is for: the
        actor, or `acting_for` when the bot continues someone's change (`continued_by` says
        what of the bot does; `approvers` are an approved request's voters)."""
        target = target_of(command, namespace, context)
        person = acting_for or actor.user_id
        identity = None
        rollouts = self.rollouts
        if self.identities is not None:
            try:
                identity = self.identities.identity_for(
                    person, target.context, approvers=approvers, continued_by=continued_by
                )
            except NotPermitted:
                self.audit_denial(
                    command, namespace, actor, target.context, outcome="no Kubernetes identity"
                )
                raise
            rollouts = self.identities.rollouts_as(self.rollouts, identity, target.context)
        base: dict[str, Any] = {
            "user_id": actor.user_id,
            "user_name": actor.user_name,
            "channel": actor.channel_id,
            "action": command.action,
            "cluster": target.context or self.cluster_name,
            "namespace": namespace,
            "deployment": command.name,
            "parameters": {**parameters_of(command), **_identity_parameters(identity)},
            "reason": reason_of(command) or "",
            "approval_id": approval_id,
        }
        try:
            self.audit.append(AuditEvent(event=AuditEventKind.EXECUTION, **base))
        except NotDurable:
            # The entry may stand on the primary: say beside it that nothing ran.
            self._audit_outcome(base, "not run: the audit trail could not be made durable", None)
            raise
        try:
            change = self._dispatch(rollouts, command, target, actor, expect)
        except RolloutBotError as exc:
            self._audit_outcome(base, f"failed: {type(exc).__name__}", None)
            raise
        self._audit_outcome(base, "changed" if change.changed else "no change", change)
        return replace(change, requester=person)

    def audit_denial(
        self,
        command: cmd.Command | Mutation,
        namespace: str,
        actor: Actor,
        context: str | None = None,
        *,
        outcome: str = "denied by policy",
        identity: KubeIdentity | None = None,
    ) -> None:
        """A mutation the policy (or, as the person, Kubernetes RBAC) refused is recorded
        too (best effort: nothing ran)."""
        try:
            self.audit.append(
                AuditEvent(
                    event=AuditEventKind.DENIAL,
                    user_id=actor.user_id,
                    user_name=actor.user_name,
                    channel=actor.channel_id,
                    action=command.action,
                    cluster=context or getattr(command, "context", None) or self.cluster_name,
                    namespace=namespace,
                    deployment=str(getattr(command, "name", "") or ""),
                    parameters={**parameters_of(command), **_identity_parameters(identity)},
                    outcome=outcome,
                )
            )
        except StoreError:
            log.warning("could not audit a policy denial")

    def _dispatch(
        self,
        rollouts: Rollouts,
        command: Mutation,
        target: Target,
        actor: Actor,
        expect: str | None,
    ) -> Change:
        role = change_role(type(command))  # type: ignore[arg-type]
        if role is None:
            raise AssertionError(f"not a mutation: {command!r}")
        return role.apply(Tools(rollouts, self.canaries), command, target, actor, expect)

    def _audit_outcome(self, base: dict[str, Any], outcome: str, change: Change | None) -> None:
        extra: dict[str, Any] = {}
        if change is not None:
            extra = {
                "revision_before": change.revision_before,
                "images_before": dict(change.images_before),
                "images_after": dict(change.images_after),
            }
        try:
            self.audit.append(
                AuditEvent(event=AuditEventKind.OUTCOME, outcome=outcome, **base, **extra)
            )
        except StoreError:
            # The change already happened; losing the outcome line must not hide that from
            # the user. The execution entry before it records the attempt.
            log.warning("could not audit the outcome of %s", base.get("action"))


def _identity_parameters(identity: KubeIdentity | None) -> dict[str, str]:
    """The Kubernetes identity a change was made with, for the audit trail."""
    if identity is None:
        return {}
    recorded = {"kubernetes_user": identity.user}
    if identity.groups:
        recorded["kubernetes_groups"] = ",".join(identity.groups)
    return recorded
