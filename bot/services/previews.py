"""What an approval card says an undo or a canary will do (``bot.services.registry``): they
need the cluster or the canary service to say it. A verb that changes the object with one
patch says it in its own module (``PatchRule.preview``).

The template diff from → to, in mrkdwn, computed from the object as it is now.
"""

from __future__ import annotations

from typing import Any

from bot.domain import verbs as cmd
from bot.domain.mrkdwn import escape
from bot.domain.targets import Target
from bot.domain.templates import template_diff
from bot.domain.verbs.previews import PREVIEW_LIMIT, code_block
from bot.services.tools import Tools

Json = dict[str, Any]

__all__ = ["PREVIEW_LIMIT", "canary", "code_block", "undo"]


def undo(tools: Tools, command: cmd.Undo, deployment: Json) -> str:
    current = deployment.get("spec", {}).get("template", {})
    target = Target(
        deployment.get("metadata", {}).get("namespace", ""),
        command.name,
        command.kind,
        command.context or "",
    )
    number, template, skipped, message = tools.rollouts.undo_plan(
        target, deployment, command.to_revision or 0
    )
    if skipped:
        return escape(message)
    diff = template_diff(current, template, "current", f"revision {number}")
    return f"roll back to revision {number}\n" + code_block(diff)


def canary(tools: Tools, command: cmd.Canary | cmd.CanaryPromote, deployment: Json) -> str:
    if tools.canaries is None:
        return command.action
    namespace = deployment.get("metadata", {}).get("namespace", "")
    target = Target(namespace, command.name, context=command.context or "")
    return tools.canaries.preview(command, deployment, target)
