"""One registry from a command's type to what runs it (cosmicpython's ``COMMAND_HANDLERS``).

``CHANGES`` runs a change (``bot.services.execution``), ``READS`` answers a read
(``bot.services.commands``), ``PREVIEWS`` says what an approval card will change
(``bot.services.approvals``). No service matches over command types: a new verb adds its
command type here, once per role it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.domain import verbs as cmd
from bot.domain.targets import Actor, Change, Target
from bot.domain.views import ApprovalList, AuditList, Listing
from bot.services import previews
from bot.services.tools import Tools

if TYPE_CHECKING:
    from bot.services.commands import CommandService, Outcome
    from bot.services.rollouts import Rollouts

__all__ = ["CHANGES", "PREVIEWS", "READS", "Tools"]

Json = dict[str, Any]
#: (tools, command, target, actor, the approval's binding or None) -> what changed.
ChangeHandler = Callable[[Tools, Any, Target, Actor, "str | None"], Change]
#: (the command service, command, namespace, context, rollouts as the reader) -> the answer.
ReadHandler = Callable[["CommandService", Any, str, str, "Rollouts"], "Outcome"]
#: (tools, command, the object as it is now) -> mrkdwn.
PreviewHandler = Callable[[Tools, Any, Json], str]


def _reason(command: object) -> str | None:
    reason = getattr(command, "reason", None)
    return reason if isinstance(reason, str) else None


def _create(tools: Tools, c: cmd.Create, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.create(t, c.image, c.replicas, a, _reason(c))


def _set_image(tools: Tools, c: cmd.SetImage, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.set_image(t, c.images, a, c.reason, expect=expect)


def _scale(tools: Tools, c: cmd.Scale, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.scale(t, c.replicas, a, c.reason, expect=expect)


def _undo(tools: Tools, c: cmd.Undo, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.undo(t, c.to_revision or 0, a, c.reason, expect=expect)


def _pause(tools: Tools, c: cmd.Pause, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.pause(t, a, None, expect=expect)


def _resume(tools: Tools, c: cmd.Resume, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.resume(t, a, None, expect=expect)


def _restart(tools: Tools, c: cmd.Restart, t: Target, a: Actor, expect: str | None) -> Change:
    return tools.rollouts.restart(t, a, c.reason, expect=expect)


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


CHANGES: dict[type[cmd.CommandBase], ChangeHandler] = {
    cmd.Create: _create,
    cmd.SetImage: _set_image,
    cmd.Scale: _scale,
    cmd.Undo: _undo,
    cmd.Pause: _pause,
    cmd.Resume: _resume,
    cmd.Restart: _restart,
    cmd.Canary: _canary,
    cmd.CanaryPromote: _canary_promote,
    cmd.CanaryAbort: _canary_abort,
}


def _list(
    service: CommandService, c: cmd.ListDeployments, ns: str, ctx: str, rollouts: Rollouts
) -> Outcome:
    return Listing(ns, tuple(rollouts.list_deployments(ns, ctx)), ctx)


def _status(
    service: CommandService, c: cmd.Status, ns: str, ctx: str, rollouts: Rollouts
) -> Outcome:
    return rollouts.status(Target(ns, c.name, c.kind, ctx))


def _history(
    service: CommandService, c: cmd.History, ns: str, ctx: str, rollouts: Rollouts
) -> Outcome:
    return rollouts.history(Target(ns, c.name, c.kind, ctx), c.revision)


def _diff(service: CommandService, c: cmd.Diff, ns: str, ctx: str, rollouts: Rollouts) -> Outcome:
    return rollouts.diff(Target(ns, c.name, c.kind, ctx), c.rev, c.rev2)


def _approvals(
    service: CommandService, c: cmd.Approvals, ns: str, ctx: str, rollouts: Rollouts
) -> Outcome:
    return ApprovalList(ns, tuple(service.approvals.pending(ns, ctx or None)), ctx)


def _audit(service: CommandService, c: cmd.Audit, ns: str, ctx: str, rollouts: Rollouts) -> Outcome:
    # With several clusters the namespace is one cluster's: the entries are its.
    entries = service.audit.recent(c.limit, namespace=ns, deployment=c.name, cluster=ctx or None)
    subject = f"`{ns}/{c.name}`" if c.name else f"namespace `{ns}`"
    if ctx:
        subject += f" in cluster `{ctx}`"
    return AuditList(subject, tuple(entries))


def _canary_status(
    service: CommandService, c: cmd.CanaryStatus, ns: str, ctx: str, rollouts: Rollouts
) -> Outcome:
    if service.canaries is None:
        raise AssertionError(f"not a read: {c!r}")
    return service.canaries.status(Target(ns, c.name, context=ctx))


READS: dict[type[cmd.CommandBase], ReadHandler] = {
    cmd.ListDeployments: _list,
    cmd.Status: _status,
    cmd.History: _history,
    cmd.Diff: _diff,
    cmd.Approvals: _approvals,
    cmd.Audit: _audit,
    cmd.CanaryStatus: _canary_status,
}

PREVIEWS: dict[type[cmd.CommandBase], PreviewHandler] = {
    cmd.SetImage: previews.set_image,
    cmd.Undo: previews.undo,
    cmd.Scale: previews.scale,
    cmd.Pause: previews.pause,
    cmd.Resume: previews.resume,
    cmd.Restart: previews.restart,
    cmd.Canary: previews.canary,
    cmd.CanaryPromote: previews.canary,
}
