"""How Slack judges a message before posting it: Block Kit's limits and the text's length.

The Web API stand-in rejects what Slack would (`invalid_blocks` with json-pointer details,
`msg_too_long`, `no_text`), so a message that would fail in Slack fails in the tests first.
Unit tests call `block_kit_errors` on rendered views directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.devkit.slack.replies import api_error

# Slack truncates (and we reject) top-level `text` above this many characters.
MAX_MESSAGE_TEXT = 40_000
MAX_BLOCKS_PER_MESSAGE = 50
MAX_IDENTIFIER = 255
ALLOWED_BLOCK_TYPES = frozenset(
    {"section", "header", "context", "actions", "divider", "rich_text", "markdown"}
    | {"image", "input"}
)


class _BlockKitChecker:
    """Collects Slack-style error strings ("... [json-pointer:/blocks/N/...]") for one message."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._block_ids: set[str] = set()
        self._action_ids: set[str] = set()  # spec asks for uniqueness across the whole message

    def check(self, blocks: list[Any]) -> list[str]:
        self._items(blocks, MAX_BLOCKS_PER_MESSAGE, "/blocks")
        for index, block in enumerate(blocks):
            self._block(block, f"/blocks/{index}")
        return self.errors

    def _fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def _max_len(self, value: Any, limit: int, pointer: str) -> None:
        """Check a plain string, or a text object's `text`, against Slack's length limit."""
        if isinstance(value, dict):
            value, pointer = value.get("text"), f"{pointer}/text"
        if isinstance(value, str) and len(value) > limit:
            self._fail(f"must be less than {limit + 1} characters", pointer)

    def _items(self, items: Any, limit: int, pointer: str) -> list[Any]:
        if items is None:
            return []
        if not isinstance(items, list):
            self._fail("must be an array", pointer)
            return []
        if len(items) > limit:
            self._fail(f"no more than {limit} items allowed", pointer)
        return items

    def _unique_id(self, owner: dict[str, Any], key: str, seen: set[str], pointer: str) -> None:
        value = owner.get(key)
        if value is None:
            return
        if not isinstance(value, str):
            self._fail("must be a string", f"{pointer}/{key}")
            return
        self._max_len(value, MAX_IDENTIFIER, f"{pointer}/{key}")
        if value in seen:
            self._fail(f"{key} '{value}' already exists", f"{pointer}/{key}")
        seen.add(value)

    def _block(self, block: Any, pointer: str) -> None:
        if not isinstance(block, dict):
            self._fail("must be an object", pointer)
            return
        block_type = block.get("type")
        if block_type not in ALLOWED_BLOCK_TYPES:
            self._fail(f"unsupported block type: {block_type!r}", f"{pointer}/type")
            return
        self._unique_id(block, "block_id", self._block_ids, pointer)
        if block_type == "section":
            if block.get("text") is None and block.get("fields") is None:
                self._fail("must provide text or fields", pointer)
            self._max_len(block.get("text"), 3000, f"{pointer}/text")
            fields = self._items(block.get("fields"), 10, f"{pointer}/fields")
            for index, field_text in enumerate(fields):
                self._max_len(field_text, 2000, f"{pointer}/fields/{index}")
            if isinstance(block.get("accessory"), dict):
                self._element(block["accessory"], f"{pointer}/accessory")
        elif block_type == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                self._fail("must be a plain_text object", f"{pointer}/text")
            self._max_len(text, 150, f"{pointer}/text")
        elif block_type == "context":
            self._items(block.get("elements"), 10, f"{pointer}/elements")
        elif block_type == "actions":
            elements = self._items(block.get("elements"), 25, f"{pointer}/elements")
            for index, element in enumerate(elements):
                self._element(element, f"{pointer}/elements/{index}")

    def _element(self, element: Any, pointer: str) -> None:
        if not isinstance(element, dict):
            self._fail("must be an object", pointer)
            return
        self._unique_id(element, "action_id", self._action_ids, pointer)
        if element.get("type") == "button":
            self._max_len(element.get("text"), 75, f"{pointer}/text")
            self._max_len(element.get("value"), 2000, f"{pointer}/value")
            self._max_len(element.get("url"), 3000, f"{pointer}/url")
        confirm = element.get("confirm")
        if isinstance(confirm, dict):
            for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                self._max_len(confirm.get(key), limit, f"{pointer}/confirm/{key}")


def block_kit_errors(blocks: list[Any]) -> list[str]:
    """Slack-style errors for a message's blocks; empty when Slack would accept them."""
    return _BlockKitChecker().check(blocks)


def check_message(params: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """How Slack would reject this message body, as (error code, details), or None if accepted."""
    text, blocks = params.get("text"), params.get("blocks")
    if blocks is not None and not isinstance(blocks, list):
        return "invalid_blocks_format", ["blocks must be a JSON array [json-pointer:/blocks]"]
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return "msg_too_long", []
    problems = block_kit_errors(blocks or [])
    if problems:
        return "invalid_blocks", problems
    if not text and not blocks and not params.get("attachments"):
        return "no_text", []
    return None


def rejection(problem: tuple[str, list[str]]) -> dict[str, Any]:
    code, details = problem
    if not details:
        return api_error(code)
    messages = [f"[ERROR] {detail}" for detail in details]
    return api_error(code, errors=details, response_metadata={"messages": messages})
