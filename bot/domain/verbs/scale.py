"""``/rollout scale DEPLOY --replicas=N``: change the number of replicas.

kubectl's rule: the replicas field only (never the change-cause, which labels template
changes); a DaemonSet has no scale subresource, so kubectl's answer for it is the API
server's NotFound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from bot.domain import kinds
from bot.domain.kinds import Kind
from bot.domain.refusals import RolloutRefused
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    NAMESPACE,
    REASON,
    REPLICAS,
    Action,
    Args,
    PatchPlan,
    PatchRule,
    VerbSpec,
    WorkloadChange,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale(WorkloadChange):
    action: ClassVar[Action] = "scale"
    replicas: int
    reason: str | None = None


def _parse(args: Args, max_replicas: int) -> Scale:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    replicas = args.flag("replicas")
    if replicas is None:
        args.fail("`scale` needs `--replicas=N`.")
    return Scale(
        name=name,
        kind=kind,
        replicas=values.replicas(args, replicas, max_replicas),
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _render(command: Scale) -> list[str]:
    word = kinds.info(command.kind).word(command.name)
    return ["scale", word, f"--replicas={command.replicas}"]


def check_scale(kind: str, name: str) -> None:
    """A DaemonSet runs one pod per eligible node and has no scale subresource: kubectl scale
    fails with the API server's NotFound for it, in these words."""
    if not kinds.info(kind).scalable:
        raise RolloutRefused(
            "not_scalable",
            "Error from server (NotFound): the server could not find the requested resource",
        )


def scale_patch(replicas: int) -> dict[str, Any]:
    """The effect of `kubectl scale`: replicas only."""
    return {"spec": {"replicas": replicas}}


def _plan(command: Scale, kind: Kind, obj: dict[str, Any], now: datetime) -> PatchPlan:
    check_scale(kind, command.name)
    current = obj.get("spec", {}).get("replicas", 1)
    if current == command.replicas:
        # kubectl sends a patch the server finds empty and prints its usual line; the bot
        # sends nothing (the cluster ends the same) and says there was nothing to do.
        details = (f"already at {command.replicas} replicas: nothing changed",)
        return PatchPlan(None, "scaled", details=details)
    # The effect of `kubectl scale`: replicas only. The change-cause is kubectl's record of
    # template changes (it labels revisions), so scaling leaves it alone; who scaled and why
    # is in the audit trail. Pods come and go, so the channel gets the same progress message
    # to follow.
    return PatchPlan(
        scale_patch(command.replicas),
        "scaled",
        details=(f"replicas: {current} → {command.replicas}",),
    )


def _check(kind: Kind, obj: dict[str, Any]) -> None:
    check_scale(kind, "")


def _preview(command: Scale, obj: dict[str, Any]) -> str:
    before = obj.get("spec", {}).get("replicas", 1)
    return f"replicas: {before} → {command.replicas}"


SPEC = VerbSpec(
    verb="scale",
    usage="/rollout scale DEPLOY --replicas=N [-n NS] [--reason=TEXT]",
    help="Change the number of replicas.",
    command=Scale,
    parse=_parse,
    render=_render,
    flags=(REPLICAS, NAMESPACE, REASON),
    examples=('/rollout scale web --replicas=5 -n prod --reason="launch traffic"',),
    hints=("replicas",),
    patch=PatchRule(
        plan=_plan,
        check=_check,
        preview=_preview,
        field_manager="kubectl-scale",
        bound_fields=("replicas",),
        autoscaled=True,
    ),
)
