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
    PatchPlan,
    PatchRule,
    VerbSpec,
    WorkloadChange,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(WorkloadChange):
    action: ClassVar[Action] = "pause"


def _parse(args: Args, max_replicas: int) -> Pause:
    kind, name = values.only_workload(args)
    return Pause(name=name, kind=kind, namespace=args.namespace())


def _render(command: Pause) -> list[str]:
    return ["pause", kinds.info(command.kind).word(command.name)]


def pause_patch() -> dict[str, Any]:
    return {"spec": {"paused": True}}


def refuse_unless_pausable(kind: str, obj: Json, doing: str) -> None:
    """kubectl's ObjectPauser and ObjectResumer refuse any kind but a Deployment in the same
    words, `doing` being `pausing` or `resuming`."""
    if not kinds.info(kind).pausable:
        raise RolloutRefused(
            "not_supported",
            f"{kinds.info(kind).group_resource} {go_quote(name_of(obj))} {doing} is not supported",
        )


def check_pause(kind: str, obj: Json) -> None:
    """Refuse what kubectl's ObjectPauser refuses: another kind than a Deployment, or a
    Deployment already paused."""
    refuse_unless_pausable(kind, obj, "pausing")
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
