"""Messages about change windows: a freeze set or lifted, the list of freezes, and the
announcement of a break-glass change."""

from __future__ import annotations

from datetime import datetime

from bot.domain.approval import ApprovalRequest
from bot.domain.freeze_outcomes import FreezeLifted, FreezeList, FreezeSet, break_glass_reason
from bot.domain.freezes import ActiveFreeze, describe_until, format_short
from bot.domain.mrkdwn import code, escape
from bot.domain.targets import Change
from handlers.views.cards import request_command
from handlers.views.message import Message, info_message
from handlers.views.text import in_cluster, mention


def _where(namespace: str, context: str) -> str:
    return f"`{namespace}`{in_cluster(context)}"


def freeze_set_message(outcome: FreezeSet) -> Message:
    """The announcement in the channel (and the namespace's own channels)."""
    freeze = outcome.freeze
    verb = "froze again" if outcome.replaced else "froze"
    return info_message(
        f":snowflake: {mention(freeze.set_by)} {verb} {_where(outcome.namespace, outcome.context)} "
        f"{describe_until(freeze.ends_at, freeze.timezone, outcome.now)}: "
        f"{escape(freeze.reason)}\n"
        "Changes there are refused except `undo` and `pause`; reads work. It ends on its own, "
        f"or with `/rollout unfreeze -n {outcome.namespace}`."
    )


def freeze_lifted_message(outcome: FreezeLifted, user_id: str) -> Message:
    where = _where(outcome.namespace, outcome.context)
    if outcome.lifted is None:
        text = f"No freeze set from Slack is in force on {where}; nothing was changed."
    else:
        reason = escape(outcome.lifted.reason)
        text = f":sunny: {mention(user_id)} lifted the freeze on {where} ({reason})."
    for freeze in outcome.still_frozen:
        text += (
            f"\nThe policy's *{escape(freeze.name)}* still freezes it "
            f"{describe_until(freeze.ends_at, freeze.timezone, outcome.now)}."
        )
    return info_message(text)


def _line(freeze: ActiveFreeze, now: datetime, upcoming: bool) -> str:
    source = "policy" if freeze.source == "policy" else f"set by {mention(freeze.set_by)}"
    reason = f": {escape(freeze.reason)}" if freeze.reason else ""
    when = (
        f"from {format_short(freeze.starts_at, freeze.timezone, now)} "
        f"{describe_until(freeze.ends_at, freeze.timezone, freeze.starts_at)}"
        if upcoming
        else describe_until(freeze.ends_at, freeze.timezone, now)
    )
    allow = ", ".join(f"`{a}`" for a in freeze.allow) or "nothing"
    return (
        f"• *{escape(freeze.name)}* on `{code(freeze.scope)}` ({source}){reason}, {when}; "
        f"allows {allow}"
    )


def freezes_message(outcome: FreezeList) -> Message:
    scope = f" in `{outcome.namespace}`" if outcome.namespace else ""
    lines = [f"*Freezes in force{scope}*"]
    lines += [_line(f, outcome.now, False) for f in outcome.in_force] or ["• none"]
    lines.append(f"*Coming next{scope}*")
    lines += [_line(f, outcome.now, True) for f in outcome.upcoming] or ["• none scheduled"]
    if outcome.break_glass:
        lines.append(
            'A change that cannot wait: add `--break-glass "why"` to it; the break-glass '
            "approvers decide."
        )
    return info_message("\n".join(lines))


def break_glass_message(request: ApprovalRequest, change: Change) -> Message:
    """The channel is told that a change went through a freeze, why, and who let it."""
    approvers = ", ".join(mention(vote.user_id) for vote in request.approvals) or "nobody"
    return info_message(
        f":fire_extinguisher: *Break-glass*: {mention(request.requester_id)}'s "
        f"`{code(request_command(request))}` ran during a freeze"
        f"{in_cluster(change.target.context)}, "
        f"approved by {approvers}.\nReason: {escape(break_glass_reason(request))}"
    )
