"""What each channel shows each user: the stand-in's records turned into a Slack-like timeline.

Channel messages are the stand-in's stored messages (in their current, updated state), ordered
by when the bot posted them; thread replies name their parent. Ephemeral answers (response_url
posts with `response_type: ephemeral`, chat.postEphemeral, and text in a command's ack) are
shown only to the user they were meant for. The playground adds the commands users typed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.devkit.slack.records import PostedMessage, RecordedCall
from tests.devkit.slack.web_api import SlackStandin
from tests.playground import render

BOT_AUTHOR = "rollout-bot"
SLACKBOT_AUTHOR = "Slackbot"


@dataclass(frozen=True)
class Origin:
    """Who caused a response_url (a command or a click), and where."""

    user: str
    channel: str


@dataclass
class Note:
    """Something the playground itself shows: a typed command, an ack's text, an error."""

    id: str
    time: float
    channel: str
    author: str  # a user id, or BOT_AUTHOR / SLACKBOT_AUTHOR
    visible_to: str | None  # None: everyone in the channel
    text: str
    blocks: list[Any] = field(default_factory=list)
    kind: str = "message"  # "command" for a typed slash command


@dataclass(frozen=True)
class Entry:
    id: str
    time: float
    channel: str
    author: str
    text: str
    blocks: list[Any]
    visible_to: str | None = None
    parent: str | None = None  # id of the thread's parent
    ts: str | None = None  # the Slack ts, for clicks on channel messages
    kind: str = "message"
    edited: bool = False


class Timeline:
    def __init__(self, standin: SlackStandin, users: Mapping[str, str]) -> None:
        self.standin = standin
        self.users = dict(users)
        self._lock = threading.Lock()
        self._notes: list[Note] = []
        self._origins: dict[str, Origin] = {}
        self._ids = itertools.count(1)
        self._render_cache: dict[tuple[str, str, str], str] = {}

    # -- what the playground records -----------------------------------------------------------

    def new_tag(self, prefix: str, user: str, channel: str) -> str:
        tag = f"{prefix}{next(self._ids)}"
        with self._lock:
            self._origins[tag] = Origin(user, channel)
        return tag

    def note(
        self,
        channel: str,
        author: str,
        text: str,
        *,
        visible_to: str | None,
        blocks: list[Any] | None = None,
        kind: str = "message",
    ) -> None:
        with self._lock:
            self._notes.append(
                Note(
                    id=f"note-{next(self._ids)}",
                    time=time.time(),
                    channel=channel,
                    author=author,
                    visible_to=visible_to,
                    text=text,
                    blocks=list(blocks or []),
                    kind=kind,
                )
            )

    def version(self) -> int:
        """Grows with every recorded call and every note: a cheap "has anything changed"."""
        with self._lock:
            notes = len(self._notes)
        return len(self.standin.calls()) + notes

    # -- what a user sees ------------------------------------------------------------------------

    def entries(self, channel: str, viewer: str) -> list[Entry]:
        calls = self.standin.calls()
        stored = {m.ts: m for m in self.standin.messages(channel)}
        with self._lock:
            notes = list(self._notes)
            origins = dict(self._origins)
        out: list[Entry] = []
        for index, call in enumerate(calls):
            entry = self._from_call(index, call, channel, viewer, stored, origins)
            if entry is not None:
                out.append(entry)
        for note in notes:
            if note.channel != channel:
                continue
            if note.visible_to is not None and note.visible_to != viewer:
                continue
            out.append(
                Entry(
                    id=note.id,
                    time=note.time,
                    channel=note.channel,
                    author=note.author,
                    text=note.text,
                    blocks=note.blocks,
                    visible_to=note.visible_to,
                    kind=note.kind,
                )
            )
        out.sort(key=lambda e: e.time)
        return out

    def _from_call(
        self,
        index: int,
        call: RecordedCall,
        channel: str,
        viewer: str,
        stored: Mapping[str, PostedMessage],
        origins: Mapping[str, Origin],
    ) -> Entry | None:
        if not call.ok:
            return None
        params = call.params
        if call.method == "chat.postMessage":
            if params.get("channel") != channel or not isinstance(call.response, dict):
                return None
            ts = str(call.response.get("ts") or "")
            message = stored.get(ts)
            if message is None:  # deleted (delete_original)
                return None
            parent = message.thread_ts if message.thread_ts and message.thread_ts != ts else None
            return Entry(
                id=f"msg-{ts}",
                time=call.time,
                channel=channel,
                author=BOT_AUTHOR,
                text=message.text,
                blocks=message.blocks,
                parent=f"msg-{parent}" if parent else None,
                ts=ts,
                edited=message.update_count > 0,
            )
        if call.method == "chat.postEphemeral":
            if params.get("channel") != channel or params.get("user") != viewer:
                return None
            return Entry(
                id=f"eph-{index}",
                time=call.time,
                channel=channel,
                author=BOT_AUTHOR,
                text=str(params.get("text") or ""),
                blocks=_blocks(params.get("blocks")),
                visible_to=viewer,
            )
        if call.method == "response_url":
            origin = origins.get(str(params.get("_tag") or ""))
            if origin is None or origin.channel != channel:
                return None
            if _true(params.get("replace_original")) or _true(params.get("delete_original")):
                return None  # the stand-in applied it to the source message
            public = params.get("response_type") == "in_channel"
            if not public and origin.user != viewer:
                return None
            return Entry(
                id=f"resp-{index}",
                time=call.time,
                channel=channel,
                author=BOT_AUTHOR,
                text=str(params.get("text") or ""),
                blocks=_blocks(params.get("blocks")),
                visible_to=None if public else origin.user,
            )
        return None

    def counts(self, channels: list[str], viewer: str) -> dict[str, int]:
        """Messages per channel a viewer can see (top-level only), for unread marks."""
        return {
            channel: sum(1 for e in self.entries(channel, viewer) if e.parent is None)
            for channel in channels
        }

    def view(self, channel: str, viewer: str) -> list[dict[str, Any]]:
        """The channel as JSON for the page: one item per message, thread replies after their
        parent's other replies, each with its rendered HTML."""
        entries = self.entries(channel, viewer)
        replies: dict[str, int] = {}
        for entry in entries:
            if entry.parent:
                replies[entry.parent] = replies.get(entry.parent, 0) + 1
        known = {e.id for e in entries}
        items = []
        for entry in entries:
            parent = entry.parent if entry.parent in known else None
            items.append(
                {
                    "id": entry.id,
                    "parent": parent,
                    "ts": entry.ts,
                    "time": entry.time,
                    "author": entry.author,
                    "ephemeral": entry.visible_to is not None,
                    "replies": replies.get(entry.id, 0),
                    "edited": entry.edited,
                    "kind": entry.kind,
                    "html": self._body(entry, viewer),
                }
            )
        return items

    def _body(self, entry: Entry, viewer: str) -> str:
        digest = hashlib.sha1(
            json.dumps([entry.text, entry.blocks], sort_keys=True).encode(), usedforsecurity=False
        ).hexdigest()
        key = (entry.id, viewer, digest)
        cached = self._render_cache.get(key)
        if cached is None:
            if entry.kind == "command":
                cached = f'<div class="command-text">{render.esc(entry.text)}</div>'
            else:
                cached = render.message_body(entry.text, entry.blocks, self.users, viewer)
            self._render_cache[key] = cached
        return cached


def _blocks(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _true(value: Any) -> bool:
    return value is True or value == "true"
