"""A Slack message (fallback text plus Block Kit blocks) and the layout every view draws with.

Blocks are built with `slack_sdk.models.blocks`, which raises on a per-field limit, and `fit`
enforces the rest (at most 50 blocks, 3000 characters per section) by cutting with a note,
never by failing. User-supplied text is escaped so a reason cannot ping `<!channel>` or forge
a link.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.domain.mrkdwn import escape

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
# Room left in a section for the ``` fences and a "… N more" note.
CODE_LIMIT = SECTION_LIMIT - 80


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]]


_MENTION = re.compile(r"<(?:@[UW][A-Z0-9]+|!subteam\^S[A-Z0-9]+|#[CG][A-Z0-9]+)>")


def _fallback(text: str, rendered: list[dict[str, Any]]) -> str:
    """The notification text, escaped (`<!channel>` would ping there too); a mention the
    blocks make (the bot's own: outside text in them is escaped) pings there as well."""
    text = escape(text)
    for token in set(_MENTION.findall(json.dumps(rendered))):
        text = text.replace(escape(token), token)
    return text


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"\n… ({len(text) - limit} more characters)"
    return text[: limit - len(note)] + note


def code_block(lines: Sequence[str], *, limit: int = CODE_LIMIT) -> str:
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


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=cut(text, SECTION_LIMIT)))


def context_block(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=cut(t, 2000)) for t in texts[:10]])


def fit(text: str, blocks: Sequence[Block]) -> Message:
    rendered = [block.to_dict() for block in blocks]
    if len(rendered) > MAX_BLOCKS:
        dropped = len(rendered) - (MAX_BLOCKS - 1)
        rendered = rendered[: MAX_BLOCKS - 1]
        rendered.append(context_block(f"… {dropped} more blocks not shown").to_dict())
    return Message(text=cut(_fallback(text, rendered), 3000), blocks=rendered)


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


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def error_message(message: str, usage: str | None = None) -> Message:
    blocks: list[Block] = [section(f":no_entry: {message}")]
    if usage:
        blocks.append(section("Usage:\n" + code_block(usage.splitlines())))
    return fit(message, blocks)


def info_message(message: str) -> Message:
    return fit(message, [section(message)])


def with_note(kept: Sequence[dict[str, Any]], note: str, *, text: str) -> Message:
    """A message as it was, its buttons replaced by a note of what happened."""
    rendered = [*kept, context_block(f":information_source: {note}").to_dict()]
    kept = rendered[-MAX_BLOCKS:]
    return Message(text=cut(_fallback(text, kept), 3000), blocks=kept)
