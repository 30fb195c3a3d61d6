"""Slack mrkdwn: text from outside the bot (the cluster, Redis, a user) made inert in a message.

Slack reads `<…>` as a mention, a broadcast or a link anywhere in a message, inside code spans
too, so `<!channel>` in an image name or an annotation would ping a channel and
`<https://evil|click>` would forge a link. Every piece of outside text goes through `escape`
where it enters a message; `code` also keeps it inside its backticks.

    escape(text)   `&`, `<` and `>` as entities; an entity already there is left alone, so
                   text escaped once is not escaped again (it shows the same either way)
    code(text)     `escape`d, with backticks made quotes: for an inline code span
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["code", "escape"]

# `&` that does not already start one of the three entities Slack knows.
_BARE_AMPERSAND: Final = re.compile(r"&(?!(?:amp|lt|gt);)")


def escape(text: object) -> str:
    """Slack's three control characters as entities."""
    return _BARE_AMPERSAND.sub("&amp;", str(text)).replace("<", "&lt;").replace(">", "&gt;")


def code(text: object) -> str:
    """For inside `…`: escaped, and a backtick (which would end the span early) as `'`."""
    return escape(text).replace("`", "'")
