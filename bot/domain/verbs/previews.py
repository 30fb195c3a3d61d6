"""What an approval card shows of a change: mrkdwn with the template diff in a code block.

The preview is stored with the request so every replica can redraw the card; the verbs'
``PatchRule.preview`` functions build theirs with these.
"""

from __future__ import annotations

from typing import Any, Final

from bot.domain.mrkdwn import escape
from bot.domain.templates import TemplateDiff

__all__ = ["PREVIEW_LIMIT", "code_block", "with_images"]

# A section holds 3000 characters, and the card needs room for its other lines.
PREVIEW_LIMIT: Final = 2400


def code_block(diff: TemplateDiff) -> str:
    if not diff.changed:
        return ""
    text = escape(diff.text).replace("```", "'''")
    note = f"\n… {diff.lines_omitted} more diff lines" if diff.lines_omitted else ""
    budget = PREVIEW_LIMIT - 200
    if len(text) > budget:
        text = text[:budget] + "\n…"
    return f"```\n{text}{note}\n```"


def with_images(template: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """The pod template with these containers' images replaced."""
    spec = dict(template.get("spec", {}))
    for key in ("containers", "initContainers"):
        if key in spec:
            spec[key] = [
                {**c, "image": images.get(c.get("name", ""), c.get("image"))} for c in spec[key]
            ]
    return {**template, "spec": spec}
