"""The canary message (and `/rollout canary status`): one view, pure, within Slack's limits.

:hatching_chick: Canary of prod/web — analysing: healthy for 1m10s of 10m
web-canary: 1 pod with app=nginx:1.27 beside 3 of web (app=nginx:1.25)
Services routing to it: web
NAME                        READY  STATUS   RESTARTS  AGE
web-canary-7d9c8f-x2kq      yes    Running  0         1m
[Promote] [Abort]
"""

from __future__ import annotations

import re

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject

from bot.domain.canary_view import CanaryView, images_text
from bot.domain.mrkdwn import escape
from handlers.views.message import Message, code_block, context_block, cut, fit, section, table
from handlers.views.text import age, duration, in_cluster, mention

_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]+)&gt;")

PROMOTE_ACTION = "canary_promote"
ABORT_ACTION = "canary_abort"

_HEADS = {
    "starting": ":hatching_chick: *Canary of `{}`*{} — starting: waiting for its pods to be Ready",
    "analysing": ":hatching_chick: *Canary of `{}`*{} — analysing",
    "ready": ":white_check_mark: *Canary of `{}`*{} — healthy: *ready to promote*",
    "promoting": ":arrows_counterclockwise: *Canary of `{}`*{} — promoting: `{}` rolls out",
    "promoted": ":white_check_mark: *Canary of `{}`*{} — *promoted*",
    "aborted": ":x: *Canary of `{}`*{} — *aborted*",
    "gone": ":grey_question: *Canary of `{}`*{} — ended",
}


def button_value(view: CanaryView) -> str:
    """NAMESPACE/NAME, after CONTEXT| when several clusters are served (as Roll back's)."""
    value = f"{view.target.namespace}/{view.target.name}"
    return f"{view.target.context}|{value}" if view.target.context else value


def canary_message(view: CanaryView) -> Message:
    target = view.target
    head = _HEADS.get(view.state, _HEADS["gone"]).format(
        escape(str(target)), in_cluster(target.context), escape(target.name)
    )
    if view.state == "analysing" and view.healthy_for is not None:
        head += (
            f": healthy for {duration(view.healthy_for - view.healthy_for % 5)} of "
            f"{duration(view.analysis_seconds)}"
        )
    lines = [head]
    if view.why:
        # Bot-written, but it quotes what the cluster reports: escaped, mentions kept.
        lines.append(_MENTION.sub(r"<@\1>", escape(view.why)))
    if view.images:
        pods = view.health.desired if view.health is not None else None
        size = f"{pods} pod(s)" if pods is not None else "pods"
        lines.append(
            f"`{view.canary}`: {size} with `{escape(images_text(view.images))}` beside "
            f"{view.web_replicas} of `{escape(target.name)}` "
            f"(`{escape(images_text(view.web_images))}`)"
        )
    if not view.finished and view.images:
        lines.append(
            "Services routing to it: "
            + (
                ", ".join(f"`{escape(s)}`" for s in view.services)
                or "none (no Service selects its pods)"
            )
        )
        if view.autoscaler:
            lines.append(
                f"`{escape(target.name)}` is scaled by HorizontalPodAutoscaler "
                f"`{escape(view.autoscaler)}`; the canary keeps its fixed replicas."
            )
        if view.state == "ready":
            lines.append(
                "Promoting automatically (`--auto-promote`)."
                if view.auto_promote
                else f"Healthy for the whole {duration(view.analysis_seconds)} analysis: "
                "Promote sets these images on the Deployment."
            )
        elif view.state in ("starting", "analysing"):
            lines.append(
                "Aborted automatically if a pod restarts, fails its readiness or is stuck."
                + (" Promotes itself when the analysis passes." if view.auto_promote else "")
            )
    blocks: list[Block] = [section("\n".join(lines))]
    if view.health is not None and view.health.pods and not view.finished:
        rows = [("NAME", "READY", "STATUS", "RESTARTS", "AGE")]
        rows += [
            (
                p.name,
                "yes" if p.ready else "no",
                p.status,
                str(p.restarts),
                age(None if p.age_seconds is None else _coarse_age(p.age_seconds)),
            )
            for p in view.health.pods
        ]
        blocks.append(section(code_block(table(rows))))
    if view.requester_id and not view.finished:
        blocks.append(context_block(f"started by {mention(view.requester_id)}"))
    if not view.finished and view.state != "promoting":
        blocks.append(_buttons(view))
    elif view.state == "promoting" and view.why:
        blocks.append(_buttons(view, promote=False))
    text = f"Canary of {target}: {view.state}"
    if view.why:
        text += f" ({cut(view.why, 200)})"
    return fit(text, blocks)


def _coarse_age(seconds: int) -> int:
    """Ages in steps, so the clock alone rarely changes the message."""
    return seconds - seconds % 10 if seconds < 60 else seconds - seconds % 60


def _buttons(view: CanaryView, *, promote: bool = True) -> Block:
    value = button_value(view)
    elements = []
    if promote:
        elements.append(
            ButtonElement(
                text="Promote",
                action_id=PROMOTE_ACTION,
                value=value,
                style="primary",
                confirm=ConfirmObject(
                    title="Promote the canary?",
                    text=cut(
                        f"Set {view.target} to {images_text(view.images)} (same policy and "
                        "approvals as a typed set image), then remove the canary.",
                        300,
                    ),
                    confirm="Promote",
                    deny="Back",
                ),
            )
        )
    elements.append(
        ButtonElement(
            text="Abort",
            action_id=ABORT_ACTION,
            value=value,
            style="danger",
            confirm=ConfirmObject(
                title="Abort the canary?",
                text=cut(f"Delete {view.canary}; {view.target} stays as it is.", 300),
                confirm="Abort",
                deny="Back",
            ),
        )
    )
    return ActionsBlock(block_id=f"canary:{value}"[:255], elements=elements)
