"""The in-channel announcement of a change: who ran what, where, and who approved it."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.domain.action_words import command_verb
from bot.domain.mrkdwn import code, escape
from bot.domain.targets import Actor, Change
from handlers.views.message import Message, context_block, fit, section
from handlers.views.text import image_list, in_cluster, mention


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
        return fit(change.summary or "; ".join(change.details), [section(text)])
    lines = [
        f":rocket: {mention(actor.user_id)} ran `{command_verb(change.action)}` on "
        f"`{code(change.target)}`" + in_cluster(change.target.context) + approval,
        f"`{code(change.summary)}`",
    ]
    lines.extend(f"• {escape(detail)}" for detail in change.details)
    lines.extend(warnings)
    lines.extend(escape(notice) for notice in change.notices)
    if reason:
        lines.append(f"Reason: {escape(reason)}")
    blocks: list[Block] = [section("\n".join(lines))]
    # The images once: set image lists each container's change above already.
    if change.images_before != change.images_after and change.action != "set-image":
        if change.images_before:
            images = f"images: {escape(image_list(change.images_before))} → "
        else:
            images = "images: "
        blocks.append(context_block(images + escape(image_list(change.images_after))))
    return fit(
        f"{actor.user_name} ran {command_verb(change.action)} on {change.target}"
        + (f" ({change.target.context})" if change.target.context else "")
        + f": {change.summary}",
        blocks,
    )
