"""Messages about promotions: the promotion message (waves, each target's image change and
step, the gate and who may open it, Approve / Halt buttons), the plan of a dry run, and the
list of promotions."""

from __future__ import annotations

from datetime import UTC, datetime

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject

from bot.domain.mrkdwn import escape
from bot.domain.promotion import GateRule, PromotionState, TargetState, describe_soak
from bot.domain.promotion_outcomes import PromotionList, PromotionPlan
from handlers.views.message import Message, context_block, fit, section
from handlers.views.text import mention

PROMOTION_APPROVE_ACTION = "promotion_approve"
PROMOTION_HALT_ACTION = "promotion_halt"

_TARGET_ICONS = {
    "waiting": ":white_circle:",
    "starting": ":arrows_counterclockwise:",
    "rolling": ":arrows_counterclockwise:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "unchanged": ":heavy_minus_sign:",
    "rolled_back": ":rewind:",
}
_STATUS = {
    "running": ":rocket: running",
    "halted": ":octagonal_sign: halted",
    "finished": ":checkered_flag: finished",
    "superseded": ":wastebasket: superseded by a newer promotion",
}


def button_value(state: PromotionState, wave: int) -> str:
    """`p-1a2b3c4d:2`: the promotion and the wave whose gate the button opens (0-based)."""
    return f"{state.id}:{wave}"


def read_button_value(value: str) -> tuple[str, int] | None:
    promotion_id, _, wave = value.rpartition(":")
    if not promotion_id.startswith("p-") or not wave.isdigit() or len(promotion_id) > 40:
        return None
    return promotion_id, int(wave)


def _target_line(target: TargetState) -> str:
    icon = _TARGET_ICONS.get(target.step, "")
    changes = ", ".join(
        f"`{escape(c)}` `{escape(old)}` → `{escape(new)}`" for c, old, new in target.changes
    )
    if target.step == "unchanged":
        changes = "already runs these images"
    detail = f" — {escape(target.detail)}" if target.detail else ""
    return f"{icon} `{escape(target.where)}`: {changes}{detail}"


def _wave_heading(state: PromotionState, index: int, gate: GateRule | None, now: float) -> str:
    wave = state.waves[index]
    title = f"*Wave {index + 1}*"
    if wave.step == "gate":
        needed = gate.required if gate else 1
        got = len(wave.approvals)
        who = gate.names() if gate else "an approver"
        waiting = (
            "waiting for approval"
            if index == state.wave and state.status == "running"
            else "gate: approval"
        )
        return f"{title} — {waiting} by {who} ({got} of {needed}; not the requester)"
    if wave.step == "soaking" and wave.healthy_since is not None:
        left = max(0, int(state.soak_seconds - (now - wave.healthy_since)))
        return f"{title} — healthy, soaking ({describe_soak(left)} left)"
    if wave.step == "start" and index > state.wave:
        return f"{title} — starts on its own after wave {index} (gate: auto)"
    words = {
        "start": "starting",
        "rolling": "rolling out",
        "done": "done",
        "failed": "failed",
        "soaking": "soaking",
    }
    return f"{title} — {words.get(wave.step, wave.step)}"


def promotion_message(
    state: PromotionState,
    gates: list[GateRule | None],
    *,
    now: float | None = None,
    plan: bool = False,
) -> Message:
    now = now if now is not None else datetime.now(UTC).timestamp()
    heading = (
        f"*Plan of promotion* `{state.pipeline}` (dry run: nothing was changed)"
        if plan
        else f"*Promotion `{state.id}`* of `{state.pipeline}` by {mention(state.requester_id)}: "
        f"{_STATUS[state.status]}"
    )
    blocks: list[Block] = [section(heading)]
    if state.halted_reason:
        blocks.append(
            section(
                f":octagonal_sign: {state.halted_reason}. Fix it, then "
                f"`/rollout promote {state.pipeline} --resume`."
            )
        )
    for index, wave in enumerate(state.waves):
        gate = gates[index] if index < len(gates) else None
        lines = [_wave_heading(state, index, gate, now)]
        lines += [_target_line(t) for t in wave.targets]
        blocks.append(section("\n".join(lines)))
    blocks.append(
        context_block(
            f"Gates: {state.gate}; each wave stays healthy {describe_soak(state.soak_seconds)} "
            f"first; on failure: {state.on_failure}. Progress of each target is in the thread."
        )
    )
    if not plan and state.status == "running":
        elements = []
        wave = state.current
        if wave.step == "gate":
            elements.append(
                ButtonElement(
                    text=f"Approve wave {state.wave + 1}",
                    action_id=PROMOTION_APPROVE_ACTION,
                    value=button_value(state, state.wave),
                    style="primary",
                )
            )
        elements.append(
            ButtonElement(
                text="Halt",
                action_id=PROMOTION_HALT_ACTION,
                value=button_value(state, state.wave),
                style="danger",
                confirm=ConfirmObject(
                    title="Halt the promotion?",
                    text="No further wave starts until someone resumes it.",
                    confirm="Halt",
                    deny="Cancel",
                ),
            )
        )
        blocks.append(ActionsBlock(elements=elements))
    text = f"Promotion {state.id} of {state.pipeline}: {state.status}"
    return fit(text, blocks)


def plan_message(plan: PromotionPlan) -> Message:
    return promotion_message(plan.state, plan.gates, plan=True)


def promotions_message(listing: PromotionList) -> Message:
    if not listing.promotions:
        return fit("No promotions", [section("No promotion has run yet.")])
    lines = []
    for p in listing.promotions:
        started = datetime.fromtimestamp(p.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        where = f"wave {p.wave + 1} of {len(p.waves)}"
        lines.append(
            f"`{p.id}` `{p.pipeline}` {_STATUS[p.status]} ({where}), by {mention(p.requester_id)} "
            f"at {started}"
        )
    return fit("Promotions", [section("*Promotions*\n" + "\n".join(lines))])
