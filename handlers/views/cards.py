"""Approval cards: one request's card in whatever state it is in (redrawn in place, with its
Approve / Reject / Cancel buttons while it waits), and the list of requests waiting.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    InputBlock,
    PlainTextInputElement,
)

from bot.domain import verbs
from bot.domain.action_words import command_verb
from bot.domain.approval import ApprovalRequest
from bot.domain.mrkdwn import code, escape
from handlers.views.message import (
    Message,
    code_block,
    context_block,
    cut,
    fit,
    info_message,
    section,
    table,
)
from handlers.views.text import (
    USER_ID,
    cluster_note,
    date_token,
    in_cluster,
    mention,
    workload_path,
)

APPROVE_ACTION = "rollout_approve"
REJECT_ACTION = "rollout_reject"
CANCEL_ACTION = "rollout_cancel"
REJECT_REASON_BLOCK = "reject_reason"
REJECT_REASON_ACTION = "reject_reason_input"
_STATE_LINES = {
    "pending": ":hourglass_flowing_sand: *Waiting for approval*",
    "approved": ":white_check_mark: *Approved*",
    "running": ":gear: *Approved — running*",
    "done": ":white_check_mark: *Done*",
    "failed": ":x: *Failed*",
    "rejected": ":no_entry_sign: *Rejected*",
    "expired": ":alarm_clock: *Expired* — it can no longer run; request it again",
    "cancelled": ":wastebasket: *Cancelled by the requester*",
    "voided": ":warning: *Voided*",
}


def request_command(request: ApprovalRequest) -> str:
    """The command the request runs, as the grammar writes it."""
    try:
        command = verbs.from_record(request.command)
    except ValueError:
        return "(unreadable command)"
    return verbs.render_command(command)


def approval_card(request: ApprovalRequest) -> Message:
    """The card for one approval request, in whatever state it is in (redrawn in place)."""
    state = str(request.state)
    fields = request.command.get("fields") if isinstance(request.command, dict) else None
    kind = fields.get("kind", "deployment") if isinstance(fields, dict) else "deployment"
    target = workload_path(request.namespace, kind, request.deployment)
    # A request of a bot serving several clusters records its `--context`.
    several = isinstance(fields, dict) and bool(fields.get("context"))
    cluster = cluster_note(str(request.cluster or ""), several=several)
    if state != "pending":
        return _finished_card(request, state, target, cluster)
    lines = [
        f"{_STATE_LINES.get(state, state)} · request `{code(request.id)}`",
        f"{mention(request.requester_id)} wants to run *{command_verb(request.action)}* on "
        f"`{code(target)}`",
        "```\n" + escape(request_command(request)).replace("```", "'''") + "\n```",
    ]
    if request.reason:
        lines.append(f"Reason: {escape(request.reason)}")
    glass = fields.get("break_glass") if isinstance(fields, dict) else None
    if isinstance(glass, str):
        # Through a freeze: the card says so first, with the reason; the requester never counts.
        lines.insert(1, f":fire_extinguisher: *Break-glass* during a freeze: {escape(glass)}")
    blocks: list[Block] = [section("\n".join(lines))]
    preview = request.preview
    if preview:
        # Composed by the bot, its outside parts escaped; escaped again (it changes nothing
        # then) because it comes back from Redis.
        blocks.append(section("*What will change*\n" + escape(preview)))
    approvers = ", ".join(mention(a) for a in request.approvers)
    facts = [
        f"needs {request.required} of: {approvers}",
        f"expires {date_token(request.expires_at)}",
    ]
    if cluster:
        facts.insert(0, cluster)
    if request.approvals:
        facts.append(
            "approved by "
            + ", ".join(f"{mention(a.user_id)} {date_token(a.at)}" for a in request.approvals)
        )
    blocks.append(context_block(*facts))
    if state == "pending":
        # Reject reads its reason from this field (the click's `state.values`).
        blocks.append(
            InputBlock(
                block_id=REJECT_REASON_BLOCK,
                label="Reason for rejecting (optional)",
                optional=True,
                element=PlainTextInputElement(action_id=REJECT_REASON_ACTION, max_length=300),
            )
        )
        blocks.append(
            ActionsBlock(
                block_id=f"approval:{request.id}",
                elements=[
                    ButtonElement(
                        text="Approve",
                        action_id=APPROVE_ACTION,
                        value=request.id,
                        style="primary",
                        confirm=ConfirmObject(
                            title="Approve this change?",
                            text=cut(
                                f"{escape(command_verb(request.action))} on {escape(target)} "
                                "will run "
                                "as soon as "
                                + (
                                    "one approver agrees."
                                    if request.required == 1
                                    else f"{request.required} approvers agree."
                                ),
                                300,
                            ),
                            confirm="Approve",
                            deny="Back",
                        ),
                    ),
                    ButtonElement(
                        text="Reject",
                        action_id=REJECT_ACTION,
                        value=request.id,
                        style="danger",
                        confirm=ConfirmObject(
                            title="Reject this change?",
                            text="The requester will be told.",
                            confirm="Reject",
                            deny="Back",
                        ),
                    ),
                    ButtonElement(
                        text="Cancel (requester)", action_id=CANCEL_ACTION, value=request.id
                    ),
                ],
            )
        )
        # Slack shows a channel message's buttons to everyone alike: say whose they are.
        blocks.append(
            context_block(
                f"Approve or Reject: {approvers} · Cancel: {mention(request.requester_id)} "
                "(the requester's own approval does not count)"
            )
        )
    return fit(
        f"Approval {state}: {command_verb(request.action)} on {target} by {request.requester_name}",
        blocks,
    )


def _result(request: ApprovalRequest) -> str:
    """How the request ended, from Redis: escaped, except that a void reason may name the
    requester (the bot writes it so), who is mentioned."""
    text = escape(request.result_message)
    if str(request.state) == "voided" and USER_ID.fullmatch(request.requester_id):
        text = text.replace(f"&lt;@{request.requester_id}&gt;", f"<@{request.requester_id}>")
    return text


def _finished_card(
    request: ApprovalRequest, state: str, target: str, cluster: str | None
) -> Message:
    """A decided request collapsed to what happened: no pending words, no buttons."""
    lines = [
        f"{_STATE_LINES.get(state, state)} · request `{code(request.id)}`",
        f"*{command_verb(request.action)}* on `{code(target)}`"
        + (f" ({cluster})" if cluster else "")
        + f", requested by {mention(request.requester_id)}",
    ]
    if request.reason:
        lines.append(f"Reason: {escape(request.reason)}")
    if request.approvals:
        lines.append(
            "Approved by "
            + ", ".join(f"{mention(a.user_id)} {date_token(a.at)}" for a in request.approvals)
        )
    when = date_token(request.decided_at) if request.decided_at else ""
    if state == "rejected":
        by = f" by {mention(request.decided_by)}" if request.decided_by else ""
        note = f"Rejected{by} {when}".rstrip()
        if request.reject_reason:
            note += f": {escape(request.reject_reason)}"
        lines.append(note)
    elif state == "cancelled":
        lines.append(
            f"Cancelled by {mention(request.requester_id)} {when}; nothing was changed".strip()
        )
    elif state == "expired":
        lines.append(f"Expired {date_token(request.expires_at)}; nothing was changed")
    # Done says what changed in the announcement in the thread; said here too, it repeats.
    if state in ("failed", "voided") and request.result_message:
        lines.append(_result(request))
    if state in ("running", "done") and request.message_ts:
        lines.append("_What changed and the rollout's progress: in this thread._")
    return fit(
        f"Approval {state}: {command_verb(request.action)} on {target} by {request.requester_name}",
        [section("\n".join(lines))],
    )


def approvals_list_message(
    namespace: str | None, requests: Sequence[ApprovalRequest], context: str = ""
) -> Message:
    where = (f" in `{code(namespace)}`" if namespace else "") + in_cluster(context)
    if not requests:
        return info_message(f"No approval requests are waiting{where}.")
    # Requests of several clusters: the target says which.
    several = len({r.cluster for r in requests}) > 1
    rows = [("ID", "ACTION", "TARGET", "REQUESTER", "APPROVALS", "EXPIRES")]
    for r in requests:
        rows.append(
            (
                r.id,
                command_verb(r.action),
                (f"{r.cluster}:" if several else "") + f"{r.namespace}/{r.deployment}",
                r.requester_name or r.requester_id,
                f"{len(r.approvals)}/{r.required}",
                r.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            )
        )
    return fit(
        f"{len(requests)} approval requests waiting",
        [section(f"*Approval requests waiting{where}*\n" + code_block(table(rows)))],
    )
