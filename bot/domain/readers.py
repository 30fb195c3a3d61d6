"""Tolerant readers over Kubernetes API dicts, shared by every kubectl rule in the domain.

Go's JSON omits zero counts and empty maps, so absent means zero or empty here; a field of the
wrong type reads as absent rather than failing. Also Go's quoting and integer parsing, whose
error texts kubectl's messages carry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Json",
    "annotations_of",
    "as_int",
    "as_map",
    "as_str",
    "creation_order",
    "go_quote",
    "images_of",
    "is_paused",
    "maps",
    "name_of",
    "opt_int",
    "parse_int64",
    "parse_time",
    "seq",
    "template_of",
]

Json = Mapping[str, Any]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+")
# The zero metav1.Time sorts before every real timestamp.
_ZERO_TIME = datetime.min.replace(tzinfo=UTC)


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def maps(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in seq(value) if isinstance(item, Mapping)]


def as_int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def name_of(obj: Json) -> str:
    return as_str(as_map(obj.get("metadata")).get("name"))


def annotations_of(obj: Json) -> dict[str, str]:
    raw = as_map(as_map(obj.get("metadata")).get("annotations"))
    return {str(k): as_str(v) for k, v in raw.items()}


def template_of(obj: Json) -> Mapping[str, Any]:
    return as_map(as_map(obj.get("spec")).get("template"))


def is_paused(deployment: Json) -> bool:
    return as_map(deployment.get("spec")).get("paused") is True


def go_quote(text: str) -> str:
    """Go's ``%q`` (strconv.Quote) for the strings kubectl puts in its messages."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def parse_int64(text: str) -> int:
    """``strconv.ParseInt(text, 10, 64)``: raises ValueError carrying Go's error text."""
    if not _GO_INT.fullmatch(text):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def creation_order(obj: Json) -> tuple[datetime, str]:
    """controller.ReplicaSetsByCreationTimestamp: creationTimestamp, then name."""
    created = parse_time(as_map(obj.get("metadata")).get("creationTimestamp"))
    return (created or _ZERO_TIME, name_of(obj))


def images_of(template: Json) -> tuple[tuple[str, str], ...]:
    """(container, image) pairs of a pod template: containers first, then init containers."""
    spec = as_map(template.get("spec"))
    pairs = [
        (as_str(c.get("name")), as_str(c.get("image")))
        for key in ("containers", "initContainers")
        for c in maps(spec.get(key))
    ]
    return tuple(pairs)
