"""The audit trail as `/rollout audit` shows it: two short lines an entry, fit for a phone."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.action_words import command_verb
from bot.domain.audit import AuditEntry
from bot.domain.mrkdwn import escape
from handlers.views.message import (
    PANE_WIDTH,
    Message,
    clip,
    code_block,
    fit,
    info_message,
    section,
    table,
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
        rows.append((e.time.strftime("%m-%d %H:%M:%S"), clip(user, 24), e.event))
        detail = f"  {command_verb(e.action) if e.action else '-'} "
        detail += f"{e.cluster}:{target}" if several and e.cluster else target
        outcome = _informative_outcome(e.event, e.outcome or "")
        details.append(detail + (f" → {outcome}" if outcome else "") + _as_kubernetes_user(e))
    # Two short lines an entry: who and what happened, then to what and with which outcome
    # (unless the event already says it: "approval" / "approved"). It fits a message pane,
    # and a narrow one (a phone) wraps the second line only.
    lines: list[str] = []
    for line, detail in zip(table(rows), details, strict=True):
        lines += [clip(line, PANE_WIDTH), clip(detail, PANE_WIDTH)]
    return fit(
        f"Audit trail for {what}",
        [section(f"*Audit trail for {escape(what)}* (newest first)\n" + code_block(lines))],
    )


def _informative_outcome(event: str, outcome: str) -> str:
    """The outcome, unless it repeats the event (`approval` / `approved`, `expiry` /
    `expired`)."""
    if not outcome or outcome == "-":
        return ""
    if " " not in outcome and outcome[:4] == event[:4]:
        return ""
    return outcome


def _as_kubernetes_user(entry: AuditEntry) -> str:
    """The Kubernetes user a change was made as (impersonate mode), on the entry's second line:
    an email does not fit the USER column."""
    kubernetes_user = entry.parameters.get("kubernetes_user")
    return f" · as {kubernetes_user}" if kubernetes_user else ""
