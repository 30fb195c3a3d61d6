"""What an approval card says a change will do, one function per verb (``registry.PREVIEWS``).

Images and the template diff from → to, in mrkdwn, computed from the object as it is now.
"""

from __future__ import annotations

from typing import Any

from bot.domain import verbs as cmd
from bot.domain.mrkdwn import code, escape
from bot.domain.targets import Target
from bot.domain.templates import TemplateDiff, template_diff
from bot.services.tools import Tools

Json = dict[str, Any]

# The preview is stored with the request so every replica can redraw the card; a section
# holds 3000 characters, and the card needs room for its other lines.
PREVIEW_LIMIT = 2400


def set_image(tools: Tools, command: cmd.SetImage, deployment: Json) -> str:
    current = deployment.get("spec", {}).get("template", {})
    plan = tools.rollouts.set_image_plan(deployment, command.images)
    if plan.patch is None:
        return "no image changes: the images are already set"
    lines = [f"• `{code(c.container)}`: `{code(c.old)}` → `{code(c.new)}`" for c in plan.changes]
    # kubectl's errors for the containers it cannot find; it changes the others.
    lines += [f"`{code(error)}`" for error in plan.errors]
    new_spec = _with_images(current, {c.container: c.new for c in plan.changes})
    diff = template_diff(current, new_spec, "current", "requested")
    return "\n".join(lines) + "\n" + code_block(diff)


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


def scale(tools: Tools, command: cmd.Scale, deployment: Json) -> str:
    before = deployment.get("spec", {}).get("replicas", 1)
    return f"replicas: {before} → {command.replicas}"


def pause(tools: Tools, command: cmd.Pause, deployment: Json) -> str:
    return "pause the rollout (template changes wait until resume)"


def resume(tools: Tools, command: cmd.Resume, deployment: Json) -> str:
    return "resume the rollout"


def restart(tools: Tools, command: cmd.Restart, deployment: Json) -> str:
    return "restart: replace every pod with a rolling update"


def canary(tools: Tools, command: cmd.Canary | cmd.CanaryPromote, deployment: Json) -> str:
    if tools.canaries is None:
        return command.action
    namespace = deployment.get("metadata", {}).get("namespace", "")
    target = Target(namespace, command.name, context=command.context or "")
    return tools.canaries.preview(command, deployment, target)


def code_block(diff: TemplateDiff) -> str:
    if not diff.changed:
        return ""
    text = escape(diff.text).replace("```", "'''")
    note = f"\n… {diff.lines_omitted} more diff lines" if diff.lines_omitted else ""
    budget = PREVIEW_LIMIT - 200
    if len(text) > budget:
        text = text[:budget] + "\n…"
    return f"```\n{text}{note}\n```"


def _with_images(template: Json, images: dict[str, str]) -> Json:
    spec = dict(template.get("spec", {}))
    for key in ("containers", "initContainers"):
        if key in spec:
            spec[key] = [
                {**c, "image": images.get(c.get("name", ""), c.get("image"))} for c in spec[key]
            ]
    return {**template, "spec": spec}
