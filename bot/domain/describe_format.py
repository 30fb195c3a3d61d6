"""How kubectl's describe code lays text out: Go's byte lengths and cuts, quantities, ``%v``.

Shared by the pod-template description (``describe``) and its volume printers
(``describe_volumes``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from bot.domain.readers import (
    as_int,
    as_map,
    as_str,
    seq,
)

# DescribePodTemplate's maxAnnotationLen: longer values are put on their own, shortened lines.
MAX_ANNOTATION_LEN = 140


def go_len(text: str) -> int:
    """Go's ``len`` of a string: its UTF-8 bytes, which kubectl's layout counts."""
    return len(text.encode("utf-8"))


def go_cut(text: str, limit: int) -> str:
    """Go's ``s[:limit]`` on the UTF-8 bytes. A cut inside a character leaves a broken byte,
    shown as U+FFFD (what a terminal shows for kubectl's output)."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="replace")


def shorten(text: str, limit: int) -> str:
    """describe's ``shorten``: more than ``limit`` bytes are cut there and get ``...``."""
    return go_cut(text, limit) + "..." if go_len(text) > limit else text


# Kubernetes quantity suffixes (resource.Quantity): binary, decimal SI, and their multipliers.
_QUANTITY = re.compile(r"([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_SUFFIX: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    **{s: Fraction(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def quantity(value: Any) -> Fraction | None:
    """A resource.Quantity (``500m``, ``64Mi``, ``1e3``, or a JSON number) as an exact number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Fraction(value)
    match = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        base = Fraction(number)
    except (ValueError, ZeroDivisionError):
        return None
    if suffix[:1] in ("e", "E"):
        return base * Fraction(10) ** int(suffix[1:])
    return base * _SUFFIX[suffix]


def go_value(value: Any, kind: str) -> str:
    """A field as Go's ``%v`` prints it: ``s`` string, ``b`` bool, ``i`` integer, ``l``
    []string (``[a b]``), ``m`` map[string]string (``map[k:v]``), ``r`` a
    *LocalObjectReference (its generated String(): ``&LocalObjectReference{Name:x,}`` or
    ``nil``)."""
    if kind == "b":
        return "true" if value is True else "false"
    if kind == "i":
        return str(as_int(value))
    if kind == "l":
        return "[" + " ".join(str(item) for item in seq(value)) + "]"
    if kind == "m":
        items = as_map(value)
        return "map[" + " ".join(f"{k}:{items[k]}" for k in sorted(items)) + "]"
    if kind == "r":
        if not isinstance(value, Mapping):
            return "nil"
        return f"&LocalObjectReference{{Name:{as_str(value.get('name'))},}}"
    return as_str(value)


# describe.go's printers for the volume sources the bot has no branch of its own for:
