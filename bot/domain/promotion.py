"""A promotion: a pipeline's source images rolled out to its targets, wave after wave.

    plan(...)                     the image change of every target (current -> new, per
                                  container), or PlanRefused saying why not
    PromotionState                everything a promotion is: stored sealed in Redis, so every
                                  replica and a restarted bot see the same step

The steps (`PromotionState.status` and each `WaveState.state`)::

    running   wave i:  gate  -> start -> rolling -> soaking -> done
                        |        (targets claimed one by one: waiting -> starting -> rolling
                        |         -> succeeded | failed | unchanged; rolled_back after a failure
                        |         with on_failure: rollback)
                        `- the first wave has a gate only when approval rules cover its targets;
                           later waves with `gate: approval`
    halted    a target failed, a freeze or a person stopped it; `--resume` continues
    finished  every wave done;  superseded: a new promotion of the pipeline replaced a halted one

A target is claimed (`starting`) in Redis before its change is made, and the change is
idempotent (`set image` to the images it already runs changes nothing), so a bot killed in the
middle of a wave finishes that wave's changes without making any twice, and never starts a
wave whose gate has not opened.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.policy import Pipeline, PipelineTarget

PROMOTION_SEAL = "promotion"

Status = Literal["running", "halted", "finished", "superseded"]
WaveStep = Literal["gate", "start", "rolling", "soaking", "done", "failed"]
TargetStep = Literal[
    "waiting", "starting", "rolling", "succeeded", "failed", "unchanged", "rolled_back"
]
#: What a live promotion still holds: its pipeline, and the driver's attention.
LIVE: tuple[str, ...] = ("running", "halted")


class PlanRefused(Exception):
    """The promotion cannot start; ``message`` says why and what to do (Slack mrkdwn)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetState(_State):
    context: str
    namespace: str
    kind: str
    name: str
    #: container -> image, as the target ran when the promotion was planned
    before: dict[str, str]
    #: container -> image the promotion sets (only the containers it changes)
    after: dict[str, str]
    step: TargetStep = "waiting"
    #: The generation the change produced (its rollout is judged from it on).
    generation: int = 0
    #: When its change was made (epoch seconds).
    started_at: float = 0.0
    #: Why the target waits or failed, for the promotion message ("" when nothing to say).
    detail: str = ""

    @property
    def where(self) -> str:
        workload = self.name if self.kind == "deployment" else f"{self.kind}/{self.name}"
        return f"{self.context}/{self.namespace}/{workload}"

    @property
    def changes(self) -> list[tuple[str, str, str]]:
        """(container, current, new) for every container the promotion sets."""
        return [(c, self.before.get(c, "?"), image) for c, image in sorted(self.after.items())]


class WaveState(_State):
    targets: list[TargetState]
    step: WaveStep = "gate"
    #: Who approved this wave's gate (user ids), in order.
    approvals: list[str] = Field(default_factory=list)
    #: When every target was first seen healthy in a row (epoch seconds), for the soak.
    healthy_since: float | None = None
    #: When the gate opened (epoch seconds), for the gate-to-complete figure.
    opened_at: float | None = None
    finished_at: float | None = None


class PromotionState(_State):
    id: str
    pipeline: str
    requester_id: str
    requester_name: str
    channel: str
    #: The promotion message; every per-target message is in its thread.
    message_ts: str = ""
    created_at: float
    gate: Literal["approval", "auto"]
    soak_seconds: int
    on_failure: Literal["halt", "rollback"]
    status: Status = "running"
    wave: int = 0
    waves: list[WaveState]
    #: Why it halted (or "" while running).
    halted_reason: str = ""
    finished_at: float | None = None
    #: Bumped by every write; a write based on an older version is refused (compare-and-set).
    version: int = 0
    seal: str = ""

    def sealed_content(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"seal"})

    @property
    def current(self) -> WaveState:
        return self.waves[min(self.wave, len(self.waves) - 1)]

    @property
    def live(self) -> bool:
        return self.status in LIVE

    def all_targets(self) -> Iterable[TargetState]:
        for wave in self.waves:
            yield from wave.targets


@dataclass(frozen=True)
class GateRule:
    """Who may open a gate: the approval rules covering the wave's targets, all at once."""

    #: One principal list per rule (a user must be in every one); empty: anyone permitted to
    #: change every target of the wave (the policy names no approvers for them).
    approver_sets: tuple[tuple[str, ...], ...]
    required: int

    def names(self) -> str:
        if not self.approver_sets:
            return "anyone allowed to *set-image* on every target of the wave"
        return " and ".join(
            " or ".join(_principal(p) for p in approvers) for approvers in self.approver_sets
        )


def _principal(principal: str) -> str:
    return f"<!subteam^{principal}>" if principal.startswith("S") else f"<@{principal}>"


def new_id() -> str:
    return "p-" + secrets.token_hex(4)


def images_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """container -> image of a workload's pod template (init containers are not promoted)."""
    spec = obj.get("spec", {}).get("template", {}).get("spec", {}) or {}
    return {
        str(c.get("name", "")): str(c.get("image", ""))
        for c in spec.get("containers", []) or []
        if isinstance(c, Mapping)
    }


def target_change(
    target: PipelineTarget,
    current: Mapping[str, str],
    wanted: Mapping[str, str],
    *,
    named: bool,
) -> TargetState:
    """The change of one target. ``named``: the images were named with ``--image``, so each must
    be a container of the target; otherwise the source's containers that the target has too."""
    if named:
        missing = sorted(set(wanted) - set(current))
        if missing:
            raise PlanRefused(
                f"`{target.where()}` has no container `{missing[0]}` (it has "
                f"{', '.join(f'`{c}`' for c in sorted(current)) or 'none'}). Nothing was changed."
            )
    shared = {c: image for c, image in wanted.items() if c in current}
    if not shared:
        raise PlanRefused(
            f"`{target.where()}` shares no container name with the source (it has "
            f"{', '.join(f'`{c}`' for c in sorted(current)) or 'none'}), so there is nothing to "
            "promote to it. Nothing was changed; name the images with `--image CONTAINER=IMAGE`."
        )
    after = {c: image for c, image in shared.items() if current[c] != image}
    return TargetState(
        context=target.context,
        namespace=target.namespace,
        kind=target.kind,
        name=target.name,
        before={c: current[c] for c in shared},
        after=after,
        step="waiting" if after else "unchanged",
    )


def new_promotion(
    name: str,
    pipeline: Pipeline,
    waves: Sequence[Sequence[TargetState]],
    *,
    requester_id: str,
    requester_name: str,
    channel: str,
    now: float,
    first_gate: bool,
) -> PromotionState:
    return PromotionState(
        id=new_id(),
        pipeline=name,
        requester_id=requester_id,
        requester_name=requester_name,
        channel=channel,
        created_at=now,
        gate=pipeline.gate,
        soak_seconds=int(pipeline.soak.total_seconds()),
        on_failure=pipeline.on_failure,
        waves=[
            WaveState(
                targets=list(targets),
                step="gate"
                if (first_gate if index == 0 else pipeline.gate == "approval")
                else "start",
            )
            for index, targets in enumerate(waves)
        ],
    )


def describe_soak(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
