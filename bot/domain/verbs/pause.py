"""``/rollout pause DEPLOY``: pause a rollout, so template changes wait until ``resume``.

kubectl's rule (its ObjectPauser): only a Deployment can be paused; a StatefulSet or DaemonSet
is refused in kubectl's words. Never a change-cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from bot.domain import kinds
from bot.domain.kinds import Kind
from bot.domain.readers import Json, go_quote, is_paused, name_of
from bot.domain.refusals import RolloutRefused
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    NAMESPACE,
    Action,
    Args,
    CommandBase,
    PatchPlan,
    PatchRule,
    VerbSpec,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(CommandBase):
    action: ClassVar[Action] = "pause"
    is_mutation: ClassVar[bool] = True
    name: str
    kind: Kind = "deployment"
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


def _parse(args: Args, max_replicas: int) -> Pause:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    return Pause(name=name, kind=kind, namespace=args.namespace())


def _render(command: Pause) -> list[str]:
    return ["pause", kinds.info(command.kind).word(command.name)]


def pause_patch() -> dict[str, Any]:
    return {"spec": {"paused": True}}


def check_pause(kind: str, obj: Json) -> None:
    """Refuse what kubectl's ObjectPauser refuses: another kind than a Deployment, or a
    Deployment already paused."""
    if not kinds.info(kind).pausable:
        raise RolloutRefused(
            "not_supported",
            f"{kinds.info(kind).group_resource} {go_quote(name_of(obj))} pausing is not supported",
        )
    if is_paused(obj):
        raise RolloutRefused(
            "already_paused", f"deployments.apps {go_quote(name_of(obj))} is already paused"
        )


def _plan(command: Pause, kind: Kind, obj: Json, now: datetime) -> PatchPlan:
    check_pause(kind, obj)
    # Never a change-cause; a paused object starts no rollout to follow.
    return PatchPlan(pause_patch(), "paused", starts_rollout=False)


def _preview(command: Pause, obj: Json) -> str:
    return "pause the rollout (template changes wait until resume)"


SPEC = VerbSpec(
    verb="pause",
    usage="/rollout pause DEPLOY [-n NS]",
    help="Pause a rollout: template changes wait until `resume`.",
    command=Pause,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE,),
    examples=("/rollout pause web -n prod",),
    patch=PatchRule(plan=_plan, check=check_pause, preview=_preview, bound_fields=("paused",)),
)
