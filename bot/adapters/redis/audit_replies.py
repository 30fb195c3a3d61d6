"""Redis replies to the audit trail, decoded into the text records the chain is made of.

redis-py answers bytes or str depending on the client's `decode_responses`; the chain's
hashes and MACs are over text, so everything read is decoded here, in one way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.domain.audit_chain_verify import StreamCounters

__all__ = ["entry_rows", "flat_pairs", "stream_counters", "text_of", "text_record"]


def stream_counters(reply: Any) -> StreamCounters:
    """XINFO STREAM's counters; a stream that does not exist answers an error."""
    if not isinstance(reply, dict):
        return StreamCounters(exists=False)
    values = {text_of(k): v for k, v in reply.items()}
    added = values.get("entries-added")
    deleted = values.get("max-deleted-entry-id")
    return StreamCounters(
        exists=True,
        entries_added=int(added) if isinstance(added, int) else 0,
        max_deleted=text_of(deleted) if deleted is not None else "0-0",
    )


def flat_pairs(fields: Mapping[str, str]) -> list[str]:
    """A record as the name, value, name, value … list HSET and XADD take."""
    flat: list[str] = []
    for name, value in fields.items():
        flat.extend((name, value))
    return flat


def text_record(values: Mapping[Any, Any] | None) -> dict[str, str] | None:
    """A head or anchor hash as text; None if it does not exist."""
    if not values:
        return None
    return {text_of(k): text_of(v) for k, v in values.items()}


def text_of(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def entry_rows(page: Iterable[Any] | None) -> list[tuple[str, dict[str, str]]]:
    """An XRANGE page as (stream id, fields) rows of text."""
    found: list[tuple[str, dict[str, str]]] = []
    for stream_id, fields in page or ():
        if stream_id is None:
            continue
        decoded = {text_of(k): text_of(v) for k, v in (fields or {}).items()}
        found.append((text_of(stream_id), decoded))
    return found
