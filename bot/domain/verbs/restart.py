"""``/rollout restart DEPLOY``: replace every pod with a rolling update.

kubectl's rule (its ObjectRestarter, alike for the three kinds): stamp the pod template with
``kubectl.kubernetes.io/restartedAt``; a paused Deployment is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from bot.domain import kinds
from bot.domain.annotations import RESTARTED_AT_ANNOTATION
from bot.domain.kinds import Kind
from bot.domain.readers import Json, as_map, as_str, go_quote, is_paused, name_of, template_of
from bot.domain.refusals import RolloutRefused
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    NAMESPACE,
    REASON,
    Action,
    Args,
    PatchPlan,
    PatchRule,
    VerbSpec,
    WorkloadChange,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart(WorkloadChange):
    action: ClassVar[Action] = "restart"
    reason: str | None = None


def _parse(args: Args, max_replicas: int) -> Restart:
    kind, name = values.only_workload(args)
    return Restart(name=name, kind=kind, namespace=args.namespace(), reason=args.reason())


def _render(command: Restart) -> list[str]:
    return ["restart", kinds.info(command.kind).word(command.name)]


def _rfc3339(moment: datetime) -> str:
    """Go's ``time.Format(time.RFC3339)``: to the second, ``Z`` for a zero offset."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    offset = moment.utcoffset()
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not offset:
        return stamp + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{stamp}{sign}{hours:02d}:{mins:02d}"


def restart_patch(now: datetime) -> dict[str, Any]:
    """kubectl rollout restart: stamp the template. A naive ``now`` is taken as local time;
    an aware one is written in its own offset (kubectl writes the machine's local time)."""
    annotations = {RESTARTED_AT_ANNOTATION: _rfc3339(now)}
    return {"spec": {"template": {"metadata": {"annotations": annotations}}}}


def check_restart(deployment: Json, now: datetime | None = None) -> None:
    """Refuse a restart kubectl would refuse. With ``now``, also refuse a second restart within
    the same second, which kubectl reports because its patch would be empty."""
    name = name_of(deployment)
    if is_paused(deployment):
        raise RolloutRefused(
            "paused",
            f"deployments.apps {go_quote(name)} can't restart paused deployment (run rollout "
            "resume first)",
        )
    if now is not None:
        current = as_str(
            as_map(as_map(template_of(deployment).get("metadata")).get("annotations")).get(
                RESTARTED_AT_ANNOTATION
            )
        )
        if current == _rfc3339(now):
            raise RolloutRefused(
                "restart_too_soon",
                f"failed to create patch for {name}: if restart has already been triggered "
                "within the past second, please wait before attempting to trigger another",
            )


def _plan(command: Restart, kind: Kind, obj: Json, now: datetime) -> PatchPlan:
    check_restart(obj, now)
    return PatchPlan(restart_patch(now), "restarted", cause="restart")


def _check(kind: Kind, obj: Json) -> None:
    check_restart(obj)


def _preview(command: Restart, obj: Json) -> str:
    return "restart: replace every pod with a rolling update"


SPEC = VerbSpec(
    verb="restart",
    usage="/rollout restart DEPLOY [-n NS] [--reason=TEXT]",
    help="Replace every pod of a Deployment with a rolling update.",
    command=Restart,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE, REASON),
    examples=('/rollout restart web -n prod --reason="pick up the new ConfigMap"',),
    hints=("redeploy",),
    patch=PatchRule(plan=_plan, check=_check, preview=_preview),
)
