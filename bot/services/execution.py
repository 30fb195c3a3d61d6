"""Running a mutation: the one path shared by a typed command and an approved request.

The audit entry for the execution is written *before* the cluster is touched: if Redis cannot
take it, `StoreUnavailable` propagates and nothing runs; with ROLLOUT_BOT_REDIS_MIN_REPLICAS,
that includes enough replicas confirming it (`NotDurable`). The outcome is audited afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bot.domain import commands as cmd
from bot.domain.audit import AuditEvent, AuditEventKind
from bot.domain.errors import NotDurable, NotPermitted, RolloutBotError, StoreError
from bot.services.canary import CanaryService
from bot.services.ports import AuditLog
from bot.services.rollouts import Actor, Change, Rollouts, Target

if TYPE_CHECKING:
    from bot.domain.identity import KubeIdentity
    from bot.services.identity import Identities

log = logging.getLogger(__name__)

Mutation = (
    cmd.Create
    | cmd.SetImage
    | cmd.Scale
    | cmd.Undo
    | cmd.Pause
    | cmd.Resume
    | cmd.Restart
    | cmd.Canary
    | cmd.CanaryPromote
    | cmd.CanaryAbort
)


def target_of(command: Mutation, namespace: str, context: str | None = None) -> Target:
    """The object a mutation works on; ``context`` (else the command's ``--context``, else the
    default context) names its cluster."""
    return Target(
        namespace,
        command.deployment,
        getattr(command, "kind", "deployment"),
        context or command.context or "",
    )


def reason_of(command: cmd.Command) -> str | None:
    reason = getattr(command, "reason", None)
    return reason if isinstance(reason, str) else None


def parameters_of(command: cmd.Command) -> dict[str, str]:
    """Flat string parameters for the audit entry: the command as the grammar writes it, and
    the kind of workload it acts on (Deployment, StatefulSet or DaemonSet)."""
    kind = getattr(command, "kind", "deployment")
    return {"command": cmd.render_command(command), "kind": str(kind)}


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
            "deployment": command.deployment,
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
        command: cmd.Command,
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
                    deployment=str(getattr(command, "deployment", "") or ""),
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
        reason = reason_of(command)
        match command:
            case cmd.Create():
                return rollouts.create(target, command.image, command.replicas, actor, reason)
            case cmd.SetImage():
                return rollouts.set_image(target, command.images, actor, reason, expect=expect)
            case cmd.Scale():
                return rollouts.scale(target, command.replicas, actor, reason, expect=expect)
            case cmd.Undo():
                return rollouts.undo(target, command.to_revision or 0, actor, reason, expect=expect)
            case cmd.Pause():
                return rollouts.pause(target, actor, reason, expect=expect)
            case cmd.Resume():
                return rollouts.resume(target, actor, reason, expect=expect)
            case cmd.Restart():
                return rollouts.restart(target, actor, reason, expect=expect)
            case cmd.Canary() | cmd.CanaryPromote() | cmd.CanaryAbort():
                return self._canary(rollouts, command, target, actor, expect)
        raise AssertionError(f"not a mutation: {command!r}")

    def _canary(
        self,
        rollouts: Rollouts,
        command: cmd.Canary | cmd.CanaryPromote | cmd.CanaryAbort,
        target: Target,
        actor: Actor,
        expect: str | None,
    ) -> Change:
        assert self.canaries is not None, "canary commands need the canary service"
        # As whom the change is made (impersonate mode): the same Rollouts as any change.
        canaries = self.canaries.through(rollouts)
        match command:
            case cmd.Canary():
                return canaries.start(command, target, actor, expect=expect)
            case cmd.CanaryPromote():
                return canaries.promote(target, actor, expect=expect)
        return canaries.abort(target, actor, f"Aborted by <@{actor.user_id}>.")

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
