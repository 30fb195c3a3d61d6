"""Block Kit and mrkdwn to HTML, the way Slack's client draws them.

Pure functions over the JSON the bot posted (as the stand-in recorded it). Everything that comes
from a message is escaped; links are kept only for http(s) and mailto URLs. Interactive elements
carry `data-*` attributes the page's script turns into the same `block_actions` request Slack
would send.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

# The shortcodes the bot uses, and a few more people type. Unknown ones stay as `:name:`.
EMOJI = {
    "rocket": "🚀",
    "hatching_chick": "🐣",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "hourglass_flowing_sand": "⏳",
    "hourglass": "⌛",
    "double_vertical_bar": "⏸️",
    "gear": "⚙️",
    "alarm_clock": "⏰",
    "wastebasket": "🗑️",
    "warning": "⚠️",
    "eyes": "👀",
    "information_source": "\u2139\ufe0f",
    "grey_question": "❔",
    "question": "❓",
    "leftwards_arrow_with_hook": "↩️",
    "arrows_counterclockwise": "🔄",
    "lock": "🔒",
    "tada": "🎉",
    "wave": "👋",
    "thumbsup": "👍",
    "+1": "👍",
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "bell": "🔔",
    "memo": "📝",
    "scroll": "📜",
    "mag": "🔍",
    "package": "📦",
    "stopwatch": "⏱️",
}

_CODE_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_ANGLE = re.compile(r"<([^<>\n]+)>")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])")
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)

UserNames = Mapping[str, str]


def slack_unescape(text: str) -> str:
    """Slack's three escapes back to characters (before we HTML-escape for the page)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def emoji(text_html: str) -> str:
    return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text_html)


class _Inline:
    """Renders one run of mrkdwn outside code blocks, keeping tokens out of the formatting."""

    def __init__(self, users: UserNames, me: str | None) -> None:
        self.users = users
        self.me = me
        self.tokens: list[str] = []

    def keep(self, rendered: str) -> str:
        self.tokens.append(rendered)
        return f"\x00{len(self.tokens) - 1}\x00"

    def angle(self, match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            user_id = target[1:]
            name = self.users.get(user_id) or label or user_id
            mine = " mention-me" if user_id == self.me else ""
            return self.keep(f'<span class="mention{mine}">@{esc(name)}</span>')
        if target.startswith("#"):
            return self.keep(f'<span class="mention">#{esc(label or target[1:])}</span>')
        if target.startswith("!subteam^"):
            handle = label or target.removeprefix("!subteam^")
            return self.keep(f'<span class="mention">@{esc(handle.lstrip("@"))}</span>')
        if target.startswith("!date^"):
            parts = target.split("^")
            stamp = parts[1] if len(parts) > 1 else ""
            fmt = parts[2] if len(parts) > 2 else "{date_short_pretty}"
            fallback = slack_unescape(label) if label else stamp
            return self.keep(
                f'<time class="slack-date" data-ts="{esc(stamp)}" data-format="{esc(fmt)}">'
                f"{esc(fallback)}</time>"
            )
        if target in ("!channel", "!here", "!everyone"):
            return self.keep(f'<span class="mention">@{esc(target[1:])}</span>')
        url = slack_unescape(target)
        text = slack_unescape(label) if label else url
        if _SAFE_URL.match(url):
            return self.keep(
                f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{esc(text)}</a>'
            )
        return self.keep(esc(text))

    def code(self, match: re.Match[str]) -> str:
        return self.keep(f"<code>{esc(slack_unescape(match.group(1)))}</code>")

    def render(self, text: str) -> str:
        text = _INLINE_CODE.sub(self.code, text)
        text = _ANGLE.sub(self.angle, text)
        out = esc(slack_unescape(text))
        out = _BOLD.sub(r"<b>\1</b>", out)
        out = _ITALIC.sub(r"<i>\1</i>", out)
        out = _STRIKE.sub(r"<s>\1</s>", out)
        out = emoji(out)
        lines = out.split("\n")
        rendered: list[str] = []
        for line in lines:
            if line.startswith("&gt; ") or line == "&gt;":
                rendered.append(f"<blockquote>{line[5:]}</blockquote>")
            else:
                rendered.append(line)
        out = "<br>".join(rendered).replace("</blockquote><br>", "</blockquote>")
        return _PLACEHOLDER.sub(lambda m: self.tokens[int(m.group(1))], out)


def mrkdwn(text: str, users: UserNames, me: str | None = None) -> str:
    """Slack mrkdwn to HTML: ```blocks```, `code`, *bold*, _italic_, ~strike~, <@U…>, links."""
    pieces: list[str] = []
    position = 0
    for match in _CODE_BLOCK.finditer(text):
        before = text[position : match.start()]
        if before.strip("\n"):
            pieces.append(_Inline(users, me).render(before.strip("\n")))
        body = match.group(1)
        body = body[1:] if body.startswith("\n") else body
        body = body[:-1] if body.endswith("\n") else body
        pieces.append(f"<pre>{esc(slack_unescape(body))}</pre>")
        position = match.end()
    rest = text[position:]
    if rest.strip("\n") or not pieces:
        pieces.append(_Inline(users, me).render(rest.strip("\n") if pieces else rest))
    return "".join(
        piece if piece.startswith("<pre>") else f'<div class="line">{piece}</div>'
        for piece in pieces
    )


def text_object(obj: Any, users: UserNames, me: str | None = None) -> str:
    """A Block Kit text object (plain_text or mrkdwn), or a bare string as mrkdwn."""
    if isinstance(obj, str):
        return mrkdwn(obj, users, me)
    if not isinstance(obj, dict):
        return ""
    value = str(obj.get("text") or "")
    if obj.get("type") == "plain_text":
        plain = esc(value)
        return emoji(plain) if obj.get("emoji", True) else plain
    return mrkdwn(value, users, me)


def _plain(obj: Any) -> str:
    if isinstance(obj, dict):
        return str(obj.get("text") or "")
    return str(obj or "")


# -- interactive elements ---------------------------------------------------------------------


def _confirm_json(confirm: Any, users: UserNames, me: str | None) -> str:
    if not isinstance(confirm, dict):
        return ""
    dialog = {
        "title": _plain(confirm.get("title")) or "Are you sure?",
        "text_html": text_object(confirm.get("text"), users, me),
        "confirm": _plain(confirm.get("confirm")) or "Yes",
        "deny": _plain(confirm.get("deny")) or "Cancel",
        "style": str(confirm.get("style") or ""),
    }
    return json.dumps(dialog)


def element(el: Any, block_id: str, users: UserNames, me: str | None) -> str:
    if not isinstance(el, dict):
        return ""
    kind = el.get("type")
    action_id = str(el.get("action_id") or "")
    if kind == "button":
        style = el.get("style")
        classes = "btn" + (f" btn-{style}" if style in ("primary", "danger") else "")
        attrs = {
            "class": classes,
            "type": "button",
            "data-action-id": action_id,
            "data-block-id": block_id,
            "data-value": str(el.get("value") or ""),
            "data-label": _plain(el.get("text")),
        }
        if el.get("url"):
            attrs["data-url"] = str(el["url"])
        confirm = _confirm_json(el.get("confirm"), users, me)
        if confirm:
            attrs["data-confirm"] = confirm
        rendered = " ".join(f'{name}="{esc(value)}"' for name, value in attrs.items())
        return f"<button {rendered}>{text_object(el.get('text'), users, me)}</button>"
    if kind == "plain_text_input":
        placeholder = _plain(el.get("placeholder"))
        max_length = el.get("max_length")
        limit = f' maxlength="{int(max_length)}"' if isinstance(max_length, int) else ""
        common = (
            f'class="text-input" data-block-id="{esc(block_id)}" '
            f'data-action-id="{esc(action_id)}" placeholder="{esc(placeholder)}"{limit}'
        )
        if el.get("multiline"):
            return f"<textarea {common} rows=3></textarea>"
        return f'<input type="text" {common}>'
    if kind == "image":
        return _image(el)
    if kind in ("mrkdwn", "plain_text"):
        return text_object(el, users, me)
    # Menus and pickers are not used by the bot; show what they are rather than nothing.
    return f'<span class="unsupported">[{esc(str(kind))}]</span>'


def _image(obj: Mapping[str, Any]) -> str:
    url = str(obj.get("image_url") or "")
    alt = str(obj.get("alt_text") or "")
    if not _SAFE_URL.match(url):
        return f'<span class="unsupported">[image: {esc(alt)}]</span>'
    return f'<img class="block-image" src="{esc(url)}" alt="{esc(alt)}">'


# -- blocks -----------------------------------------------------------------------------------


def _section(block: Mapping[str, Any], users: UserNames, me: str | None) -> str:
    block_id = str(block.get("block_id") or "")
    body = ""
    if block.get("text") is not None:
        body += f'<div class="section-text">{text_object(block["text"], users, me)}</div>'
    fields = block.get("fields")
    if isinstance(fields, list) and fields:
        cells = "".join(f'<div class="field">{text_object(f, users, me)}</div>' for f in fields)
        body += f'<div class="fields">{cells}</div>'
    accessory = block.get("accessory")
    if isinstance(accessory, dict):
        body = (
            f'<div class="section-main">{body}</div>'
            f'<div class="accessory">{element(accessory, block_id, users, me)}</div>'
        )
        return f'<div class="block section with-accessory">{body}</div>'
    return f'<div class="block section">{body}</div>'


def _context(block: Mapping[str, Any], users: UserNames, me: str | None) -> str:
    elements = block.get("elements") or []
    parts = "".join(
        f'<span class="context-item">{element(el, "", users, me)}</span>' for el in elements
    )
    return f'<div class="block context">{parts}</div>'


def _actions(block: Mapping[str, Any], users: UserNames, me: str | None) -> str:
    block_id = str(block.get("block_id") or "")
    elements = block.get("elements") or []
    parts = "".join(element(el, block_id, users, me) for el in elements)
    return f'<div class="block actions">{parts}</div>'


def _input(block: Mapping[str, Any], users: UserNames, me: str | None) -> str:
    block_id = str(block.get("block_id") or "")
    label = esc(_plain(block.get("label")))
    optional = ' <span class="optional">(optional)</span>' if block.get("optional") else ""
    optional = "" if "(optional)" in label.lower() else optional
    hint = block.get("hint")
    hint_html = f'<div class="hint">{text_object(hint, users, me)}</div>' if hint else ""
    control = element(block.get("element"), block_id, users, me)
    return (
        f'<div class="block input"><label class="input-label">{label}{optional}</label>'
        f"{control}{hint_html}</div>"
    )


def _rich_text(block: Mapping[str, Any], users: UserNames, me: str | None) -> str:
    """Enough of rich_text to read it: sections, preformatted, quotes, lists of plain runs."""

    def run(el: Mapping[str, Any]) -> str:
        kind = el.get("type")
        if kind == "text":
            out = esc(str(el.get("text") or "")).replace("\n", "<br>")
            style = el.get("style") or {}
            for flag, tag in (("code", "code"), ("bold", "b"), ("italic", "i"), ("strike", "s")):
                if style.get(flag):
                    out = f"<{tag}>{out}</{tag}>"
            return out
        if kind == "user":
            user_id = str(el.get("user_id") or "")
            return f'<span class="mention">@{esc(users.get(user_id, user_id))}</span>'
        if kind == "link":
            url = str(el.get("url") or "")
            label = esc(str(el.get("text") or url))
            if _SAFE_URL.match(url):
                return f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{label}</a>'
            return label
        if kind == "emoji":
            name = str(el.get("name") or "")
            return EMOJI.get(name, f":{esc(name)}:")
        return ""

    parts: list[str] = []
    for item in block.get("elements") or []:
        inner = "".join(run(el) for el in item.get("elements") or [] if isinstance(el, dict))
        kind = item.get("type")
        if kind == "rich_text_preformatted":
            parts.append(f"<pre>{inner}</pre>")
        elif kind == "rich_text_quote":
            parts.append(f"<blockquote>{inner}</blockquote>")
        elif kind == "rich_text_list":
            entries = "".join(
                "<li>" + "".join(run(el) for el in sub.get("elements") or []) + "</li>"
                for sub in item.get("elements") or []
                if isinstance(sub, dict)
            )
            tag = "ol" if item.get("style") == "ordered" else "ul"
            parts.append(f"<{tag}>{entries}</{tag}>")
        else:
            parts.append(f'<div class="line">{inner}</div>')
    return f'<div class="block rich-text">{"".join(parts)}</div>'


_BLOCKS: dict[str, Callable[[Mapping[str, Any], UserNames, str | None], str]] = {
    "section": _section,
    "context": _context,
    "actions": _actions,
    "input": _input,
    "rich_text": _rich_text,
}


def block(b: Any, users: UserNames, me: str | None = None) -> str:
    if not isinstance(b, dict):
        return ""
    kind = str(b.get("type"))
    if kind == "divider":
        return '<hr class="block divider">'
    if kind == "header":
        return f'<div class="block header">{text_object(b.get("text"), users, me)}</div>'
    if kind == "markdown":
        return f'<div class="block section">{mrkdwn(str(b.get("text") or ""), users, me)}</div>'
    if kind == "image":
        return f'<div class="block image">{_image(b)}</div>'
    renderer = _BLOCKS.get(kind)
    if renderer is None:
        return f'<div class="block unsupported">[{esc(kind)} block]</div>'
    return renderer(b, users, me)


def message_body(text: str | None, blocks: Any, users: UserNames, me: str | None = None) -> str:
    """A message's body: its blocks when it has any (as Slack shows), else its text."""
    if isinstance(blocks, list) and blocks:
        return "".join(block(b, users, me) for b in blocks)
    return f'<div class="block section">{mrkdwn(text or "", users, me)}</div>'
