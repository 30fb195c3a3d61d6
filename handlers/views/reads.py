"""What the read commands answer: help, the workload list, status, history and diff, drawn as
kubectl prints them, within Slack's limits.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.domain import kinds, verbs
from bot.domain.mrkdwn import code, escape
from bot.domain.status import RolloutStatus
from bot.domain.views import DeploymentRow, DiffView, HistoryView, StatusView
from handlers.views.message import (
    PANE_WIDTH,
    Message,
    clip,
    code_block,
    context_block,
    fit,
    info_message,
    section,
    table,
)
from handlers.views.text import age, flags, image_list, in_cluster, short_time, word


def help_message(verb: str | None = None) -> Message:
    if verb is not None:
        # The purpose, the usage, an example or two, and what else a first use needs.
        text = f"*{verb}* — {verbs.HELP_TEXT[verb]}\n" + code_block([verbs.USAGE[verb]])
        text += "\nExample:\n" + code_block(list(verbs.EXAMPLES.get(verb, ())))
        if verb in verbs.HELP_NOTES:
            text += "\n" + verbs.HELP_NOTES[verb]
        return fit(verbs.USAGE[verb], [section(text)])
    lines = [f"{verbs.USAGE[v]}" for v in verbs.VERBS]
    blocks: list[Block] = [
        section(
            "*rollout-bot* drives Kubernetes Deployment, StatefulSet and DaemonSet rollouts as "
            "`kubectl` would.\n" + code_block(lines)
        ),
        context_block(
            "`DEPLOY` is `NAME` (a Deployment), `deploy/NAME`, `sts/NAME` or `ds/NAME`; without "
            "`-n` the channel's namespace applies. `/rollout help VERB` explains one command. "
            'During a freeze a change can take `--break-glass "why"`.'
        ),
    ]
    return fit("rollout-bot commands", blocks)


def _verdict_emoji(status: RolloutStatus) -> str:
    if status.failed:
        return ":x:"
    if status.done:
        return ":white_check_mark:"
    if status.paused:
        return ":double_vertical_bar:"
    return ":hourglass_flowing_sand:"


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
                kinds.info(r.kind).display,
                r.name,
                r.ready,
                str(r.updated),
                str(r.available),
                str(r.revision) if r.revision is not None else "-",
                image_list(r.images),
            )
            for r in rows
        ]
    )
    blocks = [
        section(
            f"*Workloads in `{code(namespace)}`*{in_cluster(context)} ({len(rows)})\n"
            + code_block(lines)
        )
    ]
    where = f" ({context})" if context else ""
    return fit(f"{len(rows)} workloads in {namespace}{where}", blocks)


def status_message(view: StatusView) -> Message:
    status = view.status
    blocks: list[Block] = [
        section(
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
    blocks.append(context_block(" · ".join(facts)))
    if view.paused_template_pending or status.paused:
        blocks.append(
            section(
                ":double_vertical_bar: The Deployment is *paused*: template changes will not roll "
                f"out until `/rollout resume {word(view.target)} {flags(view.target)}`."
            )
        )
    if view.replica_sets:
        in_replica_sets = kinds.info(view.target.kind).revisions_in_replica_sets
        owned = "REPLICASET" if in_replica_sets else "CONTROLLERREVISION"
        counted = "DESIRED" if in_replica_sets else "PODS"
        rs_lines = table(
            [(owned, "REVISION", counted, "READY", "IMAGES")]
            + [
                (
                    s.name + (" (current)" if current else ""),
                    str(s.revision) if s.revision is not None else "-",
                    str(s.desired),
                    str(s.ready),
                    image_list(s.images),
                )
                for s, current in view.replica_sets
            ]
        )
        heading = "ReplicaSets" if in_replica_sets else "ControllerRevisions"
        blocks.append(section(f"*{heading}*\n" + code_block(rs_lines)))
    if view.pods:
        pod_lines = table(
            [("POD", "READY", "STATUS", "RESTARTS", "AGE")]
            + [
                (p.name, p.ready, p.phase_or_reason, str(p.restarts), age(p.age_seconds))
                for p in view.pods
            ]
        )
        blocks.append(section("*Pods*\n" + code_block(pod_lines)))
    if view.warnings:
        blocks.append(section("*Recent warnings*\n" + code_block(list(view.warnings))))
    return fit(f"{view.target}: {status.message}", blocks)


def history_message(view: HistoryView) -> Message:
    if not view.revisions and view.requested:
        # kubectl's header for the revision asked for, then its words.
        header = f"{view.target.ref} with revision #{view.requested}"
        return fit(
            f"{header}: No rollout history found.",
            [section(f"*{header}*{in_cluster(view.target.context)}\nNo rollout history found.")],
        )
    if not view.revisions:
        # kubectl's own words, then which object.
        return fit(
            f"No rollout history found. ({view.target})",
            [
                section("No rollout history found."),
                context_block(f"`{code(view.target)}`{in_cluster(view.target.context)}"),
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
        blocks: list[Block] = [section(title + "\n" + code_block(view.described.splitlines()))]
        return fit(f"{view.target} revision {detail.number}", blocks)
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
            (number, short_time(revision.created), "" if named else image_list(revision.images))
        )
        causes.append(cause or "<none>")
    # Two lines a revision, so the table fits a message pane (about 80 characters): the
    # change-cause, in kubectl's words, goes under its revision.
    lines: list[str] = []
    indent = max(len(row[0]) for row in rows) + 2
    for line, cause in zip(table(rows), causes, strict=True):
        lines.append(clip(line, PANE_WIDTH))
        lines.append(" " * indent + cause)
    blocks = [
        section(
            f"*Rollout history of `{code(view.target)}`*{in_cluster(view.target.context)}\n"
            + code_block(lines)
        ),
        context_block(
            "`*` marks the current revision. `/rollout history "
            f"{word(view.target)} --revision=N {flags(view.target)}` shows one in full."
        ),
    ]
    return fit(f"Rollout history of {view.target}", blocks)


def diff_message(view: DiffView) -> Message:
    if not view.diff.changed:
        return info_message(
            f"Revisions {view.old} and {view.new} of `{code(view.target)}`"
            f"{in_cluster(view.target.context)} have the same pod template."
        )
    lines = view.diff.text.splitlines()
    blocks: list[Block] = [
        section(
            f"*Diff of `{code(view.target)}`{in_cluster(view.target.context)}: revision "
            f"{view.old} → "
            f"{view.new}*\n" + code_block(lines)
        )
    ]
    if view.diff.lines_omitted:
        blocks.append(context_block(f"{view.diff.lines_omitted} more diff lines were left out."))
    return fit(f"Diff of {view.target}: revision {view.old} → {view.new}", blocks)
