"""Typed text as Slack delivers it, made plain again, and the flag spellings read from it.

Slack and autocorrect change what people type before the bot sees it:

* Slack markup: ``<@U1|bob>`` becomes ``@bob`` and a link becomes the text the user typed.
  Slack turns anything that looks like a domain (``registry.example.com/app:1``,
  ``deployment.apps/web``) into ``<http://…|…>``; then the entities ``&amp; &lt; &gt;``.
* Curly quotes become straight ones, except U+2019 between two letters: that is an apostrophe
  (``don't`` as autocorrect writes it), left alone so it does not open a quote.
* Every Unicode space becomes a plain space; zero-width spaces are dropped.
* Long dashes at the start of a flag: ``—replicas=3`` is ``--replicas=3``, and ``-n prod``
  written with an en dash is ``-n prod``. Autocorrect, not the user, picks the kind of dash,
  so for a flag written with one the name decides: a single letter is a short flag, a longer
  name a long one (``—n`` is ``-n``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final

__all__ = ["as_flag", "has_control_characters", "join_or", "looks_like_flag", "normalise", "show"]

_QUOTES: Final = {
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
}
_APOSTROPHE: Final = "\u2019"
# Zero-width space, word joiner, byte-order mark: invisible, never meaningful in a command.
_INVISIBLE: Final = frozenset("\u200b\u2060\ufeff")
# Hyphen-like characters and how many ASCII hyphens each stands for.
DASHES: Final = {
    "-": 1,
    "\u2010": 1,  # hyphen
    "\u2011": 1,  # non-breaking hyphen
    "\u2012": 1,  # figure dash
    "\u2013": 1,  # en dash
    "\u2212": 1,  # minus sign
    "\u2014": 2,  # em dash
    "\u2015": 2,  # horizontal bar
}
# Explicit direction marks and overrides can make text read differently from what it is.
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

_SLACK_MARKUP: Final = re.compile(r"<([^<>]*)>")
_SLACK_ENTITY: Final = re.compile(r"&(?:amp|lt|gt);")
_ENTITIES: Final = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def _unwrap_markup(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if target.startswith(("@", "#")):  # <@U123|bob>, <#C123|deploys>
        return target[0] + (label or target[1:])
    if target.startswith("!"):  # <!here>, <!subteam^S123|@sre>
        return label or "@" + target[1:]
    return label or target  # a link: the label is what the user typed


def normalise(text: str) -> str:
    text = _SLACK_MARKUP.sub(_unwrap_markup, text)
    text = _SLACK_ENTITY.sub(lambda match: _ENTITIES[match.group(0)], text)
    out: list[str] = []
    last = len(text) - 1
    for i, char in enumerate(text):
        if char in _INVISIBLE:
            continue
        if char.isspace():
            out.append(" ")
        elif (
            char == _APOSTROPHE and 0 < i < last and text[i - 1].isalnum() and text[i + 1].isalnum()
        ):
            out.append(char)
        else:
            out.append(_QUOTES.get(char, char))
    return "".join(out)


def show(value: str) -> str:
    """User input made safe to quote inside backticks in a Slack message."""
    if len(value) > 60:
        value = value[:57] + "…"
    value = "".join(
        "\ufffd" if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS else char
        for char in value
    )
    value = value.replace("`", "'")
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def as_flag(token: str) -> tuple[str, str | None] | None:
    """``(spelling, inline value)`` if the token is a flag, e.g. ``("--replicas", "3")``.

    A token that starts with dashes and then a digit is a (negative) number, not a flag.
    """
    width = 0
    fancy = False
    end = 0
    while end < len(token) and token[end] in DASHES:
        width += DASHES[token[end]]
        fancy = fancy or token[end] != "-"
        end += 1
    if end == 0 or token[end : end + 1].isdigit():
        return None
    name, equals, value = token[end:].partition("=")
    prefix = ("-" if len(name) == 1 else "--") if fancy else "-" * width
    return prefix + name, value if equals else None


def looks_like_flag(token: str) -> bool:
    flag = as_flag(token)
    if flag is None:
        return False
    first = flag[0].lstrip("-")[:1]
    return first.isascii() and first.isalpha()


def join_or(items: Sequence[str]) -> str:
    quoted = [f"`{item}`" for item in items]
    if len(quoted) <= 2:
        return " or ".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def has_control_characters(value: str) -> bool:
    """Control characters, lone surrogates or direction overrides: never in a reason."""
    return any(
        unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS for char in value
    )
