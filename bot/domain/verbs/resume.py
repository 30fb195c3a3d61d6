"""``/rollout resume DEPLOY``: resume a paused rollout.

kubectl's rule (its ObjectResumer): only a Deployment can be resumed; a StatefulSet or DaemonSet
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
from bot.domain.verbs.pause import refuse_unless_pausable


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(WorkloadChange):
    action: ClassVar[Action] = "resume"


def _parse(args: Args, max_replicas: int) -> Resume:
    kind, name = values.only_workload(args)
    return Resume(name=name, kind=kind, namespace=args.namespace())


def _render(command: Resume) -> list[str]:
    return ["resume", kinds.info(command.kind).word(command.name)]


def resume_patch() -> dict[str, Any]:
    # kubectl's computed patch is {"spec":{"paused":null}} (paused is omitempty). An explicit
    # false is equivalent on the server and cannot be lost by a serializer that drops None.
    return {"spec": {"paused": False}}


def check_resume(kind: str, obj: Json) -> None:
    """Refuse what kubectl's ObjectResumer refuses: another kind than a Deployment, or a
    Deployment that is not paused."""
    refuse_unless_pausable(kind, obj, "resuming")
    if not is_paused(obj):
        raise RolloutRefused(
            "not_paused", f"deployments.apps {go_quote(name_of(obj))} is not paused"
        )


def _plan(command: Resume, kind: Kind, obj: Json, now: datetime) -> PatchPlan:
    check_resume(kind, obj)
    return PatchPlan(resume_patch(), "resumed")


def _preview(command: Resume, obj: Json) -> str:
    return "resume the rollout"


SPEC = VerbSpec(
    verb="resume",
    usage="/rollout resume DEPLOY [-n NS]",
    help="Resume a paused rollout.",
    command=Resume,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE,),
    examples=("/rollout resume web -n prod",),
    hints=("unpause",),
    patch=PatchRule(plan=_plan, check=check_resume, preview=_preview, bound_fields=("paused",)),
)
