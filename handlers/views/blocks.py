"""Block Kit builders: pure functions from views to messages that stay within Slack's limits.

Every builder returns a `Message` (fallback text plus blocks). Blocks are built with
`slack_sdk.models.blocks`, which raises on a per-field limit, and `_fit` enforces the rest
(at most 50 blocks, 3000 characters per section) by cutting with a note, never by failing.
User-supplied text is escaped so a reason cannot ping `<!channel>` or forge a link.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.domain import verbs
from bot.domain.approval import ApprovalRequest
from bot.domain.audit import AuditEntry
from bot.domain.mrkdwn import code as code
from bot.domain.mrkdwn import escape as escape
from bot.domain.status import RolloutStatus
from bot.domain.targets import Actor, Change, Target
from bot.domain.tracking import TrackedRollout
from bot.domain.views import DeploymentRow, DiffView, HistoryView, StatusView
from bot.services.progress.verdicts import command_verb as verb

MAX_BLOCKS = 50
# The cluster name when none was configured (ROLLOUT_BOT_CLUSTER_NAME): one cluster, not named.
DEFAULT_CLUSTER = "default"
SECTION_LIMIT = 3000
# Room left in a section for the ``` fences and a "… N more" note.
CODE_LIMIT = SECTION_LIMIT - 80


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]]


_USER_ID = re.compile(r"[UW][A-Z0-9]{1,20}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{1,20}")


def mention(principal: str) -> str:
    """A user (or user-group) id as a mention; anything else, as text that pings nobody."""
    if _USER_ID.fullmatch(principal):
        return f"<@{principal}>"
    if _GROUP_ID.fullmatch(principal):
        return f"<!subteam^{principal}>"
    return f"`{code(principal)}`"


_MENTION = re.compile(r"<(?:@[UW][A-Z0-9]+|!subteam\^S[A-Z0-9]+|#[CG][A-Z0-9]+)>")


def _fallback(text: str, rendered: list[dict[str, Any]]) -> str:
    """The notification text, escaped (`<!channel>` would ping there too); a mention the
    blocks make (the bot's own: outside text in them is escaped) pings there as well."""
    text = escape(text)
    for token in set(_MENTION.findall(json.dumps(rendered))):
        text = text.replace(escape(token), token)
    return text


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"\n… ({len(text) - limit} more characters)"
    return text[: limit - len(note)] + note


def _code(lines: Sequence[str], *, limit: int = CODE_LIMIT) -> str:
    """A code block that fits a section, cut at a line boundary with a count of what's left."""
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        line = escape(line).replace("```", "'''")
        if size + len(line) + 1 > limit:
            kept.append(f"… {len(lines) - index} more lines not shown")
            break
        kept.append(line)
        size += len(line) + 1
    return "```\n" + "\n".join(kept) + "\n```"


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_cut(text, SECTION_LIMIT)))


def _context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_cut(t, 2000)) for t in texts[:10]])


def _fit(text: str, blocks: Sequence[Block]) -> Message:
    rendered = [block.to_dict() for block in blocks]
    if len(rendered) > MAX_BLOCKS:
        dropped = len(rendered) - (MAX_BLOCKS - 1)
        rendered = rendered[: MAX_BLOCKS - 1]
        rendered.append(_context(f"… {dropped} more blocks not shown").to_dict())
    return Message(text=_cut(_fallback(text, rendered), 3000), blocks=rendered)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, like kubectl's tabwriter."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# What a Slack message pane shows of a code block's line without wrapping, about.
PANE_WIDTH = 80


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_time(stamp: str) -> str:
    """`2026-12-07T03:08:12Z` as `12-07 03:08`: the year and seconds only widen a table."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp or "-"
    return moment.astimezone(UTC).strftime("%m-%d %H:%M")


def _informative_outcome(event: str, outcome: str) -> str:
    """The outcome, unless it repeats the event (`approval` / `approved`, `expiry` /
    `expired`)."""
    if not outcome or outcome == "-":
        return ""
    if " " not in outcome and outcome[:4] == event[:4]:
        return ""
    return outcome


def _images(images: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name}={image}" for name, image in images) or "-"


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- generic ---------------------------------------------------------------------------------


def error_message(message: str, usage: str | None = None) -> Message:
    blocks: list[Block] = [_section(f":no_entry: {message}")]
    if usage:
        blocks.append(_section("Usage:\n" + _code(usage.splitlines())))
    return _fit(message, blocks)


def info_message(message: str) -> Message:
    return _fit(message, [_section(message)])


def help_message(verb: str | None = None) -> Message:
    if verb is not None:
        # The purpose, the usage, an example or two, and what else a first use needs.
        text = f"*{verb}* — {verbs.HELP_TEXT[verb]}\n" + _code([verbs.USAGE[verb]])
        text += "\nExample:\n" + _code(list(verbs.EXAMPLES.get(verb, ())))
        if verb in verbs.HELP_NOTES:
            text += "\n" + verbs.HELP_NOTES[verb]
        return _fit(verbs.USAGE[verb], [_section(text)])
    lines = [f"{verbs.USAGE[v]}" for v in verbs.VERBS]
    blocks: list[Block] = [
        _section(
            "*rollout-bot* drives Kubernetes Deployment, StatefulSet and DaemonSet rollouts as "
            "`kubectl` would.\n" + _code(lines)
        ),
        _context(
            "`DEPLOY` is `NAME` (a Deployment), `deploy/NAME`, `sts/NAME` or `ds/NAME`; without "
            "`-n` the channel's namespace applies. `/rollout help VERB` explains one command. "
            'During a freeze a change can take `--break-glass "why"`.'
        ),
    ]
    return _fit("rollout-bot commands", blocks)


# -- reads -----------------------------------------------------------------------------------


def _verdict_emoji(status: RolloutStatus) -> str:
    if status.failed:
        return ":x:"
    if status.done:
        return ":white_check_mark:"
    if status.paused:
        return ":double_vertical_bar:"
    return ":hourglass_flowing_sand:"


_KIND_COLUMN = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}


def word(target: Any) -> str:
    """The target as typed in a command: `NAME` for a Deployment, `sts/NAME`, `ds/NAME`."""
    short = {"statefulset": "sts", "daemonset": "ds"}.get(target.kind)
    return code(f"{short}/{target.name}" if short else str(target.name))


def in_cluster(context: str) -> str:
    """` in cluster `east``: said only when several clusters are served (a target's context is
    "" with one, and today's text stays as it was)."""
    return f" in cluster `{escape(context)}`" if context else ""


def _flags(target: Any) -> str:
    """`-n NS`, and `--context NAME` for a target in one of several clusters."""
    context = getattr(target, "context", "")
    return code(f"-n {target.namespace}" + (f" --context {context}" if context else ""))


def deployments_message(
    namespace: str, rows: Sequence[DeploymentRow], context: str = ""
) -> Message:
    """Deployments, StatefulSets and DaemonSets, with a KIND column."""
    if not rows:
        return info_message(
            "No Deployments, StatefulSets or DaemonSets found in namespace "
            f"`{code(namespace)}`{in_cluster(context)}."
        )
    lines = table(
        [("KIND", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "REV", "IMAGES")]
        + [
            (
                _KIND_COLUMN.get(r.kind, r.kind),
                r.name,
                r.ready,
                str(r.updated),
                str(r.available),
                str(r.revision) if r.revision is not None else "-",
                _images(r.images),
            )
            for r in rows
        ]
    )
    blocks = [
        _section(
            f"*Workloads in `{code(namespace)}`*{in_cluster(context)} ({len(rows)})\n"
            + _code(lines)
        )
    ]
    where = f" ({context})" if context else ""
    return _fit(f"{len(rows)} workloads in {namespace}{where}", blocks)


def status_message(view: StatusView) -> Message:
    status = view.status
    blocks: list[Block] = [
        _section(
            f"{_verdict_emoji(status)} *{escape(view.target)}*{in_cluster(view.target.context)} — "
            f"{escape(status.message)}"
        ),
    ]
    facts = [
        f"desired {status.desired if status.desired is not None else '-'}",
        f"updated {status.updated}",
        f"ready {status.ready}",
        f"available {status.available}",
    ]
    if status.terminating:
        facts.append(f"terminating {status.terminating}")
    if status.revision is not None:
        facts.append(f"revision {status.revision}")
    blocks.append(_context(" · ".join(facts)))
    if view.paused_template_pending or status.paused:
        blocks.append(
            _section(
                ":double_vertical_bar: The Deployment is *paused*: template changes will not roll "
                f"out until `/rollout resume {word(view.target)} {_flags(view.target)}`."
            )
        )
    if view.replica_sets:
        owned = "REPLICASET" if view.target.kind == "deployment" else "CONTROLLERREVISION"
        counted = "DESIRED" if view.target.kind == "deployment" else "PODS"
        rs_lines = table(
            [(owned, "REVISION", counted, "READY", "IMAGES")]
            + [
                (
                    s.name + (" (current)" if current else ""),
                    str(s.revision) if s.revision is not None else "-",
                    str(s.desired),
                    str(s.ready),
                    _images(s.images),
                )
                for s, current in view.replica_sets
            ]
        )
        heading = "ReplicaSets" if view.target.kind == "deployment" else "ControllerRevisions"
        blocks.append(_section(f"*{heading}*\n" + _code(rs_lines)))
    if view.pods:
        pod_lines = table(
            [("POD", "READY", "STATUS", "RESTARTS", "AGE")]
            + [
                (p.name, p.ready, p.phase_or_reason, str(p.restarts), _age(p.age_seconds))
                for p in view.pods
            ]
        )
        blocks.append(_section("*Pods*\n" + _code(pod_lines)))
    if view.warnings:
        blocks.append(_section("*Recent warnings*\n" + _code(list(view.warnings))))
    return _fit(f"{view.target}: {status.message}", blocks)


def history_message(view: HistoryView) -> Message:
    if not view.revisions and view.requested:
        # kubectl's header for the revision asked for, then its words.
        header = f"{view.target.ref} with revision #{view.requested}"
        return _fit(
            f"{header}: No rollout history found.",
            [_section(f"*{header}*{in_cluster(view.target.context)}\nNo rollout history found.")],
        )
    if not view.revisions:
        # kubectl's own words, then which object.
        return _fit(
            f"No rollout history found. ({view.target})",
            [
                _section("No rollout history found."),
                _context(f"`{code(view.target)}`{in_cluster(view.target.context)}"),
            ],
        )
    if view.detail is not None and view.described is not None:
        detail = view.detail
        # kubectl's header: `statefulset.apps/web with revision #2`.
        title = (
            f"*{escape(view.target.ref)}* with revision #{detail.number}"
            + (" (current)" if detail.is_current else "")
            + in_cluster(view.target.context)
        )
        blocks: list[Block] = [_section(title + "\n" + _code(view.described.splitlines()))]
        return _fit(f"{view.target} revision {detail.number}", blocks)
    rows = [("REVISION", "CREATED", "IMAGES")]
    causes = ["CHANGE-CAUSE"]
    for revision in view.revisions:
        number = str(revision.number) + (" *" if revision.is_current else "")
        if revision.revision_history:
            number += " (was " + ",".join(str(n) for n in revision.revision_history) + ")"
        cause = revision.change_cause
        # The images once: not beside a change-cause that already names them.
        named = bool(cause) and all(image in str(cause) for _, image in revision.images)
        rows.append(
            (number, _short_time(revision.created), "" if named else _images(revision.images))
        )
        causes.append(cause or "<none>")
    # Two lines a revision, so the table fits a message pane (about 80 characters): the
    # change-cause, in kubectl's words, goes under its revision.
    lines: list[str] = []
    indent = max(len(row[0]) for row in rows) + 2
    for line, cause in zip(table(rows), causes, strict=True):
        lines.append(_clip(line, PANE_WIDTH))
        lines.append(" " * indent + cause)
    blocks = [
        _section(
            f"*Rollout history of `{code(view.target)}`*{in_cluster(view.target.context)}\n"
            + _code(lines)
        ),
        _context(
            "`*` marks the current revision. `/rollout history "
            f"{word(view.target)} --revision=N {_flags(view.target)}` shows one in full."
        ),
    ]
    return _fit(f"Rollout history of {view.target}", blocks)


def diff_message(view: DiffView) -> Message:
    if not view.diff.changed:
        return info_message(
            f"Revisions {view.old} and {view.new} of `{code(view.target)}`"
            f"{in_cluster(view.target.context)} have the same pod template."
        )
    lines = view.diff.text.splitlines()
    blocks: list[Block] = [
        _section(
            f"*Diff of `{code(view.target)}`{in_cluster(view.target.context)}: revision "
            f"{view.old} → "
            f"{view.new}*\n" + _code(lines)
        )
    ]
    if view.diff.lines_omitted:
        blocks.append(_context(f"{view.diff.lines_omitted} more diff lines were left out."))
    return _fit(f"Diff of {view.target}: revision {view.old} → {view.new}", blocks)


# -- mutations -------------------------------------------------------------------------------


def cluster_note(cluster: str, *, several: bool = False) -> str | None:
    """Which cluster, only when one is named: the default single cluster goes unsaid. With
    ``several`` clusters served, every one is named, one called `default` too."""
    if not cluster or (cluster == DEFAULT_CLUSTER and not several):
        return None
    return f"cluster `{escape(cluster)}`"


def change_message(
    change: Change, actor: Actor, reason: str | None, approved_by: Sequence[str] = ()
) -> Message:
    """The in-channel announcement: who did what, where, and who approved it."""
    approval = (
        " · approved by " + ", ".join(f"{mention(user)}" for user in approved_by)
        if approved_by
        else ""
    )
    # kubectl's stderr beside its line, as kubectl prints it.
    warnings = [f"`{code(warning)}`" for warning in change.warnings]
    if not change.changed:
        # Where kubectl prints nothing (an image already set), only the bot's note is said.
        said = f"`{code(change.summary)}`" if change.summary else escape("; ".join(change.details))
        text = (
            f":information_source: {said}{in_cluster(change.target.context)} "
            f"(requested by {mention(actor.user_id)}{approval})"
        )
        if change.summary:
            text = "\n".join([text, *(f"• {escape(d)}" for d in change.details)])
        text = "\n".join([text, *warnings])
        return _fit(change.summary or "; ".join(change.details), [_section(text)])
    lines = [
        f":rocket: {mention(actor.user_id)} ran `{verb(change.action)}` on `{code(change.target)}`"
        + in_cluster(change.target.context)
        + approval,
        f"`{code(change.summary)}`",
    ]
    lines.extend(f"• {escape(detail)}" for detail in change.details)
    lines.extend(warnings)
    lines.extend(escape(notice) for notice in change.notices)
    if reason:
        lines.append(f"Reason: {escape(reason)}")
    blocks: list[Block] = [_section("\n".join(lines))]
    # The images once: set image lists each container's change above already.
    if change.images_before != change.images_after and change.action != "set-image":
        if change.images_before:
            images = f"images: {escape(_images(change.images_before))} → "
        else:
            images = "images: "
        blocks.append(_context(images + escape(_images(change.images_after))))
    return _fit(
        f"{actor.user_name} ran {verb(change.action)} on {change.target}"
        + (f" ({change.target.context})" if change.target.context else "")
        + f": {change.summary}",
        blocks,
    )


# -- approvals -------------------------------------------------------------------------------

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


def _when(moment: datetime) -> str:
    """A Slack date token: each reader sees their own time zone."""
    stamp = int(moment.timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{moment.isoformat()}>"


def _time_of_day(moment: datetime) -> str:
    """A Slack time token (`03:08 AM` in each reader's zone), for something that just happened."""
    stamp = int(moment.timestamp())
    return f"<!date^{stamp}^{{time}}|{moment.strftime('%H:%M UTC')}>"


def time_of_day_now() -> str:
    return _time_of_day(datetime.now(UTC))


def with_note(kept: Sequence[dict[str, Any]], note: str, *, text: str) -> Message:
    """A message as it was, its buttons replaced by a note of what happened."""
    rendered = [*kept, _context(f":information_source: {note}").to_dict()]
    kept = rendered[-MAX_BLOCKS:]
    return Message(text=_cut(_fallback(text, kept), 3000), blocks=kept)


def request_command(request: ApprovalRequest) -> str:
    """The command the request runs, as the grammar writes it."""
    try:
        command = verbs.from_record(request.command)
    except ValueError:
        return "(unreadable command)"
    return verbs.render_command(command)


def approval_card(request: ApprovalRequest) -> Message:
    """The card for one approval request, in whatever state it is in (redrawn in place)."""
    from slack_sdk.models.blocks import (
        ActionsBlock,
        ButtonElement,
        ConfirmObject,
        InputBlock,
        PlainTextInputElement,
    )

    state = str(request.state)
    fields = request.command.get("fields") if isinstance(request.command, dict) else None
    kind = fields.get("kind", "deployment") if isinstance(fields, dict) else "deployment"
    name = request.deployment if kind == "deployment" else f"{kind}/{request.deployment}"
    target = f"{request.namespace}/{name}"
    # A request of a bot serving several clusters records its `--context`.
    several = isinstance(fields, dict) and bool(fields.get("context"))
    cluster = cluster_note(str(request.cluster or ""), several=several)
    if state != "pending":
        return _finished_card(request, state, target, cluster)
    lines = [
        f"{_STATE_LINES.get(state, state)} · request `{code(request.id)}`",
        f"{mention(request.requester_id)} wants to run *{verb(request.action)}* on "
        f"`{code(target)}`",
        "```\n" + escape(request_command(request)).replace("```", "'''") + "\n```",
    ]
    if request.reason:
        lines.append(f"Reason: {escape(request.reason)}")
    glass = fields.get("break_glass") if isinstance(fields, dict) else None
    if isinstance(glass, str):
        # Through a freeze: the card says so first, with the reason; the requester never counts.
        lines.insert(1, f":fire_extinguisher: *Break-glass* during a freeze: {escape(glass)}")
    blocks: list[Block] = [_section("\n".join(lines))]
    preview = request.preview
    if preview:
        # Composed by the bot, its outside parts escaped; escaped again (it changes nothing
        # then) because it comes back from Redis.
        blocks.append(_section("*What will change*\n" + escape(preview)))
    approvers = ", ".join(mention(a) for a in request.approvers)
    facts = [f"needs {request.required} of: {approvers}", f"expires {_when(request.expires_at)}"]
    if cluster:
        facts.insert(0, cluster)
    if request.approvals:
        facts.append(
            "approved by "
            + ", ".join(f"{mention(a.user_id)} {_when(a.at)}" for a in request.approvals)
        )
    blocks.append(_context(*facts))
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
                            text=_cut(
                                f"{escape(verb(request.action))} on {escape(target)} will run "
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
            _context(
                f"Approve or Reject: {approvers} · Cancel: {mention(request.requester_id)} "
                "(the requester's own approval does not count)"
            )
        )
    return _fit(
        f"Approval {state}: {verb(request.action)} on {target} by {request.requester_name}",
        blocks,
    )


def _result(request: ApprovalRequest) -> str:
    """How the request ended, from Redis: escaped, except that a void reason may name the
    requester (the bot writes it so), who is mentioned."""
    text = escape(request.result_message)
    if str(request.state) == "voided" and _USER_ID.fullmatch(request.requester_id):
        text = text.replace(f"&lt;@{request.requester_id}&gt;", f"<@{request.requester_id}>")
    return text


def _finished_card(
    request: ApprovalRequest, state: str, target: str, cluster: str | None
) -> Message:
    """A decided request collapsed to what happened: no pending words, no buttons."""
    lines = [
        f"{_STATE_LINES.get(state, state)} · request `{code(request.id)}`",
        f"*{verb(request.action)}* on `{code(target)}`"
        + (f" ({cluster})" if cluster else "")
        + f", requested by {mention(request.requester_id)}",
    ]
    if request.reason:
        lines.append(f"Reason: {escape(request.reason)}")
    if request.approvals:
        lines.append(
            "Approved by "
            + ", ".join(f"{mention(a.user_id)} {_when(a.at)}" for a in request.approvals)
        )
    when = _when(request.decided_at) if request.decided_at else ""
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
        lines.append(f"Expired {_when(request.expires_at)}; nothing was changed")
    # Done says what changed in the announcement in the thread; said here too, it repeats.
    if state in ("failed", "voided") and request.result_message:
        lines.append(_result(request))
    if state in ("running", "done") and request.message_ts:
        lines.append("_What changed and the rollout's progress: in this thread._")
    return _fit(
        f"Approval {state}: {verb(request.action)} on {target} by {request.requester_name}",
        [_section("\n".join(lines))],
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
                verb(r.action),
                (f"{r.cluster}:" if several else "") + f"{r.namespace}/{r.deployment}",
                r.requester_name or r.requester_id,
                f"{len(r.approvals)}/{r.required}",
                r.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            )
        )
    return _fit(
        f"{len(requests)} approval requests waiting",
        [_section(f"*Approval requests waiting{where}*\n" + _code(table(rows)))],
    )


def audit_message(entries: Sequence[AuditEntry], what: str) -> Message:
    if not entries:
        return info_message(f"No audit entries for {escape(what)}.")
    rows = [("TIME (UTC)", "USER", "EVENT")]
    details = ["  ACTION TARGET → OUTCOME"]
    # Entries of several clusters: the target says which.
    several = len({e.cluster for e in entries if e.cluster}) > 1
    for e in entries:
        target = f"{e.namespace}/{e.deployment}".strip("/") or "-"
        user = e.user_name or e.user_id or "-"
        rows.append((e.time.strftime("%m-%d %H:%M:%S"), _clip(user, 24), e.event))
        detail = f"  {verb(e.action) if e.action else '-'} "
        detail += f"{e.cluster}:{target}" if several and e.cluster else target
        outcome = _informative_outcome(e.event, e.outcome or "")
        details.append(detail + (f" → {outcome}" if outcome else "") + _as_kubernetes_user(e))
    # Two short lines an entry: who and what happened, then to what and with which outcome
    # (unless the event already says it: "approval" / "approved"). It fits a message pane,
    # and a narrow one (a phone) wraps the second line only.
    lines: list[str] = []
    for line, detail in zip(table(rows), details, strict=True):
        lines += [_clip(line, PANE_WIDTH), _clip(detail, PANE_WIDTH)]
    return _fit(
        f"Audit trail for {what}",
        [_section(f"*Audit trail for {escape(what)}* (newest first)\n" + _code(lines))],
    )


def _as_kubernetes_user(entry: AuditEntry) -> str:
    """The Kubernetes user a change was made as (impersonate mode), on the entry's second line:
    an email does not fit the USER column."""
    kubernetes_user = entry.parameters.get("kubernetes_user")
    return f" · as {kubernetes_user}" if kubernetes_user else ""


# -- progress --------------------------------------------------------------------------------

ROLLBACK_ACTION = "progress_rollback"
PAUSE_ACTION = "progress_pause"
BAR_WIDTH = 20


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    if total <= 0:
        return "▓" * width
    filled = max(0, min(width, round(width * done / total)))
    return "▓" * filled + "░" * (width - filled)


def _coarse(seconds: float) -> float:
    """Elapsed time while running, in 5 s steps: the clock alone should not cause an update."""
    return seconds - seconds % 5


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_message(
    tracked: TrackedRollout,
    status: RolloutStatus,
    now: float,
    *,
    verdict: str | None = None,
    reasons: Sequence[str] = (),
    warnings: Sequence[str] = (),
    revision: int | None = None,
) -> Message:
    """One rollout's progress: bar, counts, kubectl's sentence, elapsed vs deadline, verdict.
    A failed rollout offers Roll back and Pause, tied to ``revision`` (none when unknown)."""
    from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ConfirmObject

    desired = status.desired if status.desired is not None else 0
    elapsed = now - tracked.started_at
    kind = tracked.kind
    target = (
        f"{tracked.namespace}/{tracked.deployment}"
        if kind == "deployment"
        else f"{tracked.namespace}/{kind}/{tracked.deployment}"
    )
    # Until the controller has observed the change, the counts are the previous revision's.
    starting = not verdict and status.observed_generation < status.generation
    if verdict == "succeeded":
        head = (
            f":white_check_mark: *{escape(tracked.title)}* — rollout *succeeded* in "
            f"{_duration(elapsed)}"
        )
    elif verdict == "failed":
        head = f":x: *{escape(tracked.title)}* — rollout *failed* after {_duration(elapsed)}"
    elif verdict:
        head = f":grey_question: *{escape(tracked.title)}* — {verdict}"
    elif status.paused:
        head = f":double_vertical_bar: *{escape(tracked.title)}* — paused"
    elif starting:
        head = f":hourglass_flowing_sand: *{escape(tracked.title)}* — starting"
    else:
        head = f":hourglass_flowing_sand: *{escape(tracked.title)}* — rolling out"
    counts = (
        f"`{progress_bar(status.updated, desired)}` {status.updated}/{desired} updated · "
        f"{status.ready} ready · {status.available} available"
    )
    old = status.total - status.updated
    if old > 0:
        counts += f" · {old} old still running"
    if status.terminating:
        counts += f" · {status.terminating} terminating"
    lines = [head, counts, f"_{escape(status.message)}_"]
    if starting:
        lines = [
            head,
            "_The rollout is starting: the controller has not picked up the change yet._",
        ]
    if not verdict:
        lines.append(
            f"elapsed {_duration(_coarse(elapsed))} of the {tracked.deadline_seconds}s "
            + ("progress deadline" if kind == "deployment" else "limit the bot waits")
        )
    if reasons:
        lines.append("Pods are waiting on: " + ", ".join(f"`{escape(r)}`" for r in reasons))
    blocks_: list[Block] = [_section("\n".join(lines))]
    if warnings:
        blocks_.append(_section("*Recent warnings*\n" + _code(list(warnings))))
    if verdict == "failed" and tracked.automatic:
        # The bot does not undo its own undo: a person decides, Pause is at hand.
        if revision is not None:
            blocks_.append(_pause_actions(tracked, revision))
    elif verdict == "failed" and tracked.on_failure == "rollback":
        # The bot rolls it back by itself: a Roll back button would offer it a second time.
        blocks_.append(
            _context(
                ":rewind: Rolling back automatically (the approval rule's `on_failure: "
                "rollback`); what it does follows in this thread."
            )
        )
        if kind == "deployment" and revision is not None:
            blocks_.append(_pause_actions(tracked, revision))
    elif verdict == "failed" and revision is None:
        pass  # a button not tied to a revision could act on a later one: none is offered
    elif verdict == "failed":
        value = button_value(tracked, revision)
        blocks_.append(
            ActionsBlock(
                block_id=f"failed:{tracked.id}"[:255],
                elements=[
                    ButtonElement(
                        text="Roll back",
                        action_id=ROLLBACK_ACTION,
                        value=value,
                        style="danger",
                        confirm=ConfirmObject(
                            title="Roll back?",
                            text=_cut(
                                f"Undo {escape(target)} to its previous revision "
                                "(same policy and approvals as a typed undo).",
                                300,
                            ),
                            confirm="Roll back",
                            deny="Back",
                        ),
                    ),
                    *(
                        [ButtonElement(text="Pause", action_id=PAUSE_ACTION, value=value)]
                        if kind == "deployment"
                        else []
                    ),
                ],
            )
        )
    summary = "starting" if starting else status.message
    text = f"{tracked.title}: {verdict or summary}"
    if reasons:
        text += " (" + ", ".join(reasons) + ")"
    return _fit(text, blocks_)


def button_value(tracked: TrackedRollout, revision: int | None) -> str:
    """What a Roll back or Pause button carries: the same object (its kind and, with several
    clusters, its context: `CONTEXT|NAMESPACE/KIND/NAME`) and the revision it was posted for
    (`@7`), so a click after a newer deploy does not act on that one."""
    target = (
        f"{tracked.namespace}/{tracked.deployment}"
        if tracked.kind == "deployment"
        else f"{tracked.namespace}/{tracked.kind}/{tracked.deployment}"
    )
    value = f"{tracked.context}|{target}" if tracked.context else target
    return f"{value}@{revision}" if revision is not None else value


def _pause_actions(tracked: TrackedRollout, revision: int | None) -> Block:
    from slack_sdk.models.blocks import ActionsBlock, ButtonElement

    value = button_value(tracked, revision)
    return ActionsBlock(
        block_id=f"person:{tracked.id}"[:255],
        elements=[ButtonElement(text="Pause", action_id=PAUSE_ACTION, value=value)],
    )


def needs_person_message(tracked: TrackedRollout, revision: int | None = None) -> Message:
    """The automatic rollback failed too: the bot stops here and asks for a person (Pause is
    offered while the workload is at ``revision``)."""
    target = f"{tracked.namespace}/{tracked.deployment}"
    text = (
        f":sos: The automatic rollback of `{code(target)}` failed too, so the bot stops here and "
        "rolls nothing back again: *a person is needed*. Pause it to keep it from changing "
        "while you look, then fix it with `/rollout set image` or `/rollout undo`."
    )
    actions = [_pause_actions(tracked, revision)] if revision is not None else []
    return _fit(
        f"The automatic rollback of {target} failed too: a person is needed",
        [_section(text), *actions],
    )


def outside_change_message(
    target: Target,
    revision: int,
    *,
    who: str,
    images_before: Sequence[tuple[str, str]],
    images_after: Sequence[tuple[str, str]],
    previous_revision: int | None,
    changed_at: datetime | None = None,
) -> Message:
    """`who` is what the cluster recorded (a field manager such as `kubectl-set`), never a
    Slack user: the bot cannot know who ran kubectl."""
    at = f" at {_time_of_day(changed_at)}" if changed_at is not None else ""
    lines = [
        f":eyes: `{code(target)}`{in_cluster(target.context)} got revision *{revision}* from "
        "outside the bot",
        f"Changed by: field manager `{escape(who)}`{at}",
    ]
    if images_before != images_after:
        lines.append(f"Images: {escape(_images(images_before))} → {escape(_images(images_after))}")
    if previous_revision is not None:
        lines.append(
            f"See the diff: `/rollout diff {word(target)} {previous_revision} {revision} "
            f"{_flags(target)}`"
        )
    return _fit(
        f"{target} got revision {revision} from outside the bot", [_section("\n".join(lines))]
    )
