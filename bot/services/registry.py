"""One registry from a command's type to what runs it (cosmicpython's ``COMMAND_HANDLERS``).

``change_role`` says how a change runs (``bot.services.execution``), what an approval card says
of it and what kubectl refuses before the card is posted (``bot.services.approvals``);
``ANSWERS`` answers any other command in a namespace, and ``UNSCOPED`` the ones that scope
themselves (``bot.services.commands``). No service matches over command types.

A verb that changes a workload with one patch declares a ``PatchRule`` in its own module
(``bot.domain.verbs``): its role here is the generic one, so such a verb adds nothing here.
Only the verbs with machinery of their own (create, undo, the canary's) have an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.domain import verbs as cmd
from bot.domain.errors import NotPermitted, Refused
from bot.domain.mrkdwn import code
from bot.domain.refusals import RolloutRefused
from bot.domain.targets import Actor, Change, Target
from bot.domain.verbs import PatchRule
from bot.domain.views import ApprovalList, AuditList, Listing
from bot.services import previews
from bot.services.tools import Tools
from bot.services.workload_access import refusal_to_error
from bot.services.writes import binding

if TYPE_CHECKING:
    from bot.services.commands import CommandService, Outcome
    from bot.services.freezes import FreezeService
    from bot.services.promotions import PromotionService
    from bot.services.rollouts import Rollouts

__all__ = ["ANSWERS", "UNSCOPED", "Answer", "ChangeRole", "Scope", "Tools", "change_role"]

Json = dict[str, Any]
#: (tools, command, target, actor, the approval's binding or None) -> what changed.
ApplyHandler = Callable[[Tools, Any, Target, Actor, "str | None"], Change]
#: (tools, command, target) -> (what the approval is bound to, the card's preview), after
#: kubectl's refusals: no card is posted for something that cannot run.
CardHandler = Callable[[Tools, Any, Target], tuple[str, str]]
#: (tools, command, the object as it is now) -> mrkdwn.
PreviewHandler = Callable[[Tools, Any, Json], str]
#: (tools, command, target, the object as it is now) -> None, or kubectl's refusal as Refused.
CheckHandler = Callable[[Tools, Any, Target, Json], None]


def _no_check(tools: Tools, command: Any, target: Target, obj: Json) -> None:
    """Nothing kubectl refuses before it plans (who else owns the object is still checked)."""


def _action_only(tools: Tools, command: Any, obj: Json) -> str:
    return str(command.action)


def object_card(check: CheckHandler, preview: PreviewHandler) -> CardHandler:
    """The card of a change to an existing object: kubectl's refusals (and `gitops: refuse`)
    answer at once; the approval is bound to the object as it is now; who else owns it goes
    first, so a long diff cannot cut it off."""

    def card(tools: Tools, command: Any, target: Target) -> tuple[str, str]:
        obj = tools.rollouts.get(target)
        check(tools, command, target, obj)
        tools.rollouts.check(target, obj, command.action)
        fingerprint = binding(obj, command.action)
        try:
            text = preview(tools, command, obj)
        except RolloutRefused as exc:  # e.g. set image of an unknown container
            raise Refused(exc.message) from None
        notices = tools.rollouts.ownership_notices(target, command.action, obj)
        return fingerprint, "\n".join([*notices, text])

    return card


@dataclass(frozen=True)
class ChangeRole:
    """How one kind of change runs, and what its approval card says."""

    apply: ApplyHandler
    card: CardHandler


def _patch_role(rule: PatchRule) -> ChangeRole:
    def apply(tools: Tools, c: Any, t: Target, a: Actor, expect: str | None) -> Change:
        return tools.rollouts.apply_patch(rule, c, t, a, expect=expect)

    def check(tools: Tools, c: Any, t: Target, obj: Json) -> None:
        refusal_to_error(lambda: rule.check(t.kind, obj))

    def preview(tools: Tools, c: Any, obj: Json) -> str:
        return rule.preview(c, obj)

    return ChangeRole(apply, object_card(check, preview))


def _reason(command: object) -> str | None:
    reason = getattr(command, "reason", None)
    return reason if isinstance(reason, str) else None


def _create(tools: Tools, c: cmd.Create, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.create(t, c.image, c.replicas, a, _reason(c))


def _create_card(tools: Tools, c: cmd.Create, t: Target) -> tuple[str, str]:
    # A new object: refused if it exists, and nothing there yet to bind the approval to.
    tools.rollouts.check_create(t)
    return "", f"create `{code(t)}` with image `{code(c.image)}`, {c.replicas} replicas"


def _undo(tools: Tools, c: cmd.Undo, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.undo(t, c.to_revision or 0, a, c.reason, expect=expect)


def _undo_check(tools: Tools, c: cmd.Undo, t: Target, obj: Json) -> None:
    tools.rollouts.undo_plan(t, obj, c.to_revision or 0)


def _canaries(tools: Tools) -> Any:
    assert tools.canaries is not None, "canary commands need the canary service"
    # As whom the change is made (impersonate mode): the same Rollouts as any change.
    return tools.canaries.through(tools.rollouts)


def _canary(tools: Tools, c: cmd.Canary, t: Target, a: Actor, expect: str | None) -> Change:
    change: Change = _canaries(tools).start(c, t, a, expect=expect)
    return change


def _canary_promote(
    tools: Tools, c: cmd.CanaryPromote, t: Target, a: Actor, expect: str | None
) -> Change:
    change: Change = _canaries(tools).promote(t, a, expect=expect)
    return change


def _canary_abort(
    tools: Tools, c: cmd.CanaryAbort, t: Target, a: Actor, expect: str | None
) -> Change:
    change: Change = _canaries(tools).abort(t, a, f"Aborted by <@{a.user_id}>.")
    return change


# The changes that are not one patch: each has machinery of its own.
_CHANGES: dict[type[cmd.CommandBase], ChangeRole] = {
    cmd.Create: ChangeRole(_create, _create_card),
    cmd.Undo: ChangeRole(_undo, object_card(_undo_check, previews.undo)),
    cmd.Canary: ChangeRole(_canary, object_card(_no_check, previews.canary)),
    cmd.CanaryPromote: ChangeRole(_canary_promote, object_card(_no_check, previews.canary)),
    cmd.CanaryAbort: ChangeRole(_canary_abort, object_card(_no_check, _action_only)),
}


def change_role(command_type: type[cmd.CommandBase]) -> ChangeRole | None:
    """How a change of this type runs: its own entry, else its verb's ``PatchRule``; None
    for a command that is not a change."""
    role = _CHANGES.get(command_type)
    if role is not None:
        return role
    spec = cmd.spec_of(command_type)
    if spec is None or spec.patch is None:
        return None
    return _patch_role(spec.patch)


@dataclass(frozen=True)
class Scope:
    """Where an answer is asked for, once the policy has let it through."""

    actor: Actor
    namespace: str
    #: The context (cluster) resolved for the command; "" with one cluster.
    context: str
    #: The cluster's name as the policy and the audit know it.
    label: str
    #: Whether `-n` named the namespace (else it is the channel's).
    named: bool
    #: The cluster access to read with (as the person, in impersonate mode).
    rollouts: Rollouts


#: (the command service, command, where) -> the answer.
AnswerHandler = Callable[["CommandService", Any, Scope], "Outcome"]
#: (the command service, command, actor) -> the answer, for a command that is not scoped to
#: one namespace of one cluster by the channel (it checks the policy itself).
UnscopedHandler = Callable[["CommandService", Any, Actor], "Outcome"]
#: (the command service, command, actor, the context `--context` named or None) -> the answer
#: over every namespace the user may see, for a command given without `-n`.
EverywhereHandler = Callable[["CommandService", Any, Actor, "str | None"], "Outcome"]


@dataclass(frozen=True)
class Answer:
    """How a command that changes no workload is answered."""

    answer: AnswerHandler
    #: Whether it reads the cluster: in impersonate mode it does so as the person.
    reads_cluster: bool = False
    #: Without `-n`: the answer over every namespace, before the policy's check (each item is
    #: checked); None: the channel's namespace, like any command.
    everywhere: EverywhereHandler | None = None


def _list(service: CommandService, c: cmd.ListDeployments, where: Scope) -> Outcome:
    ns, ctx = where.namespace, where.context
    return Listing(ns, tuple(where.rollouts.list_deployments(ns, ctx)), ctx)


def _status(service: CommandService, c: cmd.Status, where: Scope) -> Outcome:
    return where.rollouts.status(Target(where.namespace, c.name, c.kind, where.context))


def _history(service: CommandService, c: cmd.History, where: Scope) -> Outcome:
    target = Target(where.namespace, c.name, c.kind, where.context)
    return where.rollouts.history(target, c.revision)


def _diff(service: CommandService, c: cmd.Diff, where: Scope) -> Outcome:
    target = Target(where.namespace, c.name, c.kind, where.context)
    return where.rollouts.diff(target, c.rev, c.rev2)


def _approvals(service: CommandService, c: cmd.Approvals, where: Scope) -> Outcome:
    ns, ctx = where.namespace, where.context
    return ApprovalList(ns, tuple(service.approvals.pending(ns, ctx or None)), ctx)


def _approvals_everywhere(
    service: CommandService, c: cmd.Approvals, actor: Actor, context: str | None
) -> Outcome:
    """Every waiting request this user may see from this channel (of one cluster when
    `--context` names one)."""
    visible = tuple(
        request
        for request in service.approvals.pending(context=context)
        if service.access.may(
            actor.user_id,
            actor.channel_id,
            "approvals",
            request.namespace,
            request.cluster or service.contexts.default,
        )
    )
    return ApprovalList(None, visible, context or "")


def _audit(service: CommandService, c: cmd.Audit, where: Scope) -> Outcome:
    ns, ctx = where.namespace, where.context
    # With several clusters the namespace is one cluster's: the entries are its.
    entries = service.audit.recent(c.limit, namespace=ns, deployment=c.name, cluster=ctx or None)
    subject = f"`{ns}/{c.name}`" if c.name else f"namespace `{ns}`"
    if ctx:
        subject += f" in cluster `{ctx}`"
    return AuditList(subject, tuple(entries))


def _canary_status(service: CommandService, c: cmd.CanaryStatus, where: Scope) -> Outcome:
    if service.canaries is None:
        raise AssertionError(f"not a read: {c!r}")
    return service.canaries.status(Target(where.namespace, c.name, context=where.context))


def _freezes(service: CommandService) -> FreezeService:
    if service.freezes is None:
        raise NotPermitted("Freezes are not available in this bot. Nothing was changed.")
    return service.freezes


def _freeze(service: CommandService, c: cmd.Freeze, where: Scope) -> Outcome:
    freezes = _freezes(service)
    return freezes.freeze(c, where.namespace, where.label, where.actor, where.context)


def _unfreeze(service: CommandService, c: cmd.Unfreeze, where: Scope) -> Outcome:
    freezes = _freezes(service)
    return freezes.unfreeze(where.namespace, where.label, where.actor, where.context)


def _freeze_list(service: CommandService, c: cmd.Freezes, where: Scope) -> Outcome:
    freezes = _freezes(service)
    if not where.named:
        # `freezes` without `-n`: every namespace (of one cluster when `--context` names one).
        return freezes.overview(None, where.label if where.context else None)
    return freezes.overview(where.namespace, where.label)


ANSWERS: dict[type[cmd.CommandBase], Answer] = {
    cmd.ListDeployments: Answer(_list, reads_cluster=True),
    cmd.Status: Answer(_status, reads_cluster=True),
    cmd.History: Answer(_history, reads_cluster=True),
    cmd.Diff: Answer(_diff, reads_cluster=True),
    cmd.Approvals: Answer(_approvals, everywhere=_approvals_everywhere),
    cmd.Audit: Answer(_audit),
    cmd.Freeze: Answer(_freeze),
    cmd.Unfreeze: Answer(_unfreeze),
    cmd.Freezes: Answer(_freeze_list),
    cmd.CanaryStatus: Answer(_canary_status),
}


def _promotions(service: CommandService) -> PromotionService:
    if service.promotions is None:
        raise NotPermitted("Promotions are not available in this bot. Nothing was changed.")
    return service.promotions


def _promote(service: CommandService, c: cmd.Promote, actor: Actor) -> Outcome:
    # A pipeline names its own clusters and namespaces: the service checks each.
    return _promotions(service).run(c, actor)


def _promotion_list(service: CommandService, c: cmd.Promotions, actor: Actor) -> Outcome:
    promotions = _promotions(service)
    namespace = service.access.namespace_for(actor.channel_id, None)
    service.access.check(actor.user_id, actor.channel_id, "promotions", namespace)
    return promotions.overview()


UNSCOPED: dict[type[cmd.CommandBase], UnscopedHandler] = {
    cmd.Promote: _promote,
    cmd.Promotions: _promotion_list,
}
