"""The audit chain's record layout and crypto: how an entry, the head and the anchor are sealed.

Every entry carries `seq` (1, 2, 3 …), `prev_hash` (the previous entry's hash; 64 zeros for
the first) and `hash`: the SHA-256, or with a key the HMAC-SHA256, of the canonical JSON
(sorted keys, no whitespace) of all of the entry's other fields exactly as stored. A keyed
entry names its key in `kid` (covered by the MAC), so keys can rotate: old keys stay in the
keyring for verification, the signing key signs what is new. A key may be set on a trail
that had none: the entries before the first keyed one verify as plain SHA-256, and that first
keyed entry carries `key_start` (under its MAC), which is what lets an unsigned anchor from the
unkeyed days precede it. Entries written under ROLLOUT_BOT_AUDIT_HMAC_KEY before key ids
existed carry no `kid`; they verify under the key id `default`.

Beside the entries sit two records, both signed with a key over (record type, fields): the
head (seq, hash and stream id of the last entry) and the anchor (the retention record: the
last entry removed by a trim, the first seq removed, when and why). Entries are positioned by
stream ids (`<millis>-<counter>`) that the writer chooses, so the head's MAC can cover the id.

Pure: no I/O. The store decides nothing about the chain itself; it asks this module (and
`bot.domain.audit_chain_verify` for a whole walk).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bot.domain.audit import DEFAULT_KEY_ID, AuditEntry, AuditEvent, AuditKeyring

__all__ = [
    "ANCHOR_VERSION",
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "ChainTip",
    "anchor_record",
    "canonical",
    "digest",
    "entry_fields",
    "format_time",
    "head_record",
    "is_hash",
    "is_seq",
    "next_stream_id",
    "read_entry",
    "record_mac",
    "seal_entry",
    "stream_id_after",
    "stream_id_key",
    "untrusted_tip",
]

GENESIS_HASH: Final = "0" * 64
# Stored in every entry and covered by the hash, so a future change of the field set or of
# the canonical form can be told apart from tampering.
SCHEMA_VERSION: Final = "1"
# Version of the anchor (retention record) layout.
ANCHOR_VERSION: Final = "2"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SEQ = re.compile(r"[0-9]{1,19}")
_STREAM_ID = re.compile(r"([0-9]{1,19})(?:-([0-9]{1,19}))?")
_JSON_FIELDS = ("parameters", "images_before", "images_after")
_TEXT_FIELDS = (
    "event",
    "user_id",
    "user_name",
    "channel",
    "action",
    "cluster",
    "namespace",
    "deployment",
    "reason",
    "approval_id",
    "outcome",
)


# -- crypto ----------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """The one JSON text of `value` that every hash and MAC covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(fields: Mapping[str, str], key: bytes | None) -> str:
    """An entry's hash: of every stored field but `hash`; HMAC-SHA256 with a key, else SHA-256."""
    body = canonical({name: value for name, value in fields.items() if name != "hash"})
    data = body.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def record_mac(kind: str, record: Mapping[str, str], key: bytes) -> str:
    """HMAC of a head or anchor record: every field but `mac`, and which record it is (so a
    head cannot be passed off as an anchor)."""
    body = {name: value for name, value in record.items() if name != "mac"}
    body["record"] = kind
    return hmac.new(key, canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


def is_seq(text: str) -> bool:
    return bool(_SEQ.fullmatch(text))


def is_hash(text: str) -> bool:
    return bool(_HEX64.fullmatch(text))


# -- entries ---------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so string order is time order."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_fields(event: AuditEvent, *, seq: int, time: str, prev_hash: str) -> dict[str, str]:
    """An event as the flat text fields an entry stores (before `kid` and `hash`)."""
    fields = {
        "v": SCHEMA_VERSION,
        "seq": str(seq),
        "time": time,
        "prev_hash": prev_hash,
    }
    for name in _TEXT_FIELDS:
        fields[name] = getattr(event, name)
    for name in _JSON_FIELDS:
        fields[name] = canonical(getattr(event, name))
    for name in ("revision_before", "revision_after"):
        revision = getattr(event, name)
        fields[name] = "" if revision is None else str(revision)
    return fields


def read_entry(stream_id: str, fields: Mapping[str, str]) -> AuditEntry:
    """Read an entry back without failing on a malformed one (verification reports those)."""
    values: dict[str, Any] = {name: fields.get(name, "") for name in _TEXT_FIELDS}
    for name in _JSON_FIELDS:
        values[name] = _string_map(fields.get(name, "{}"))
    for name in ("revision_before", "revision_after"):
        text = fields.get(name, "")
        values[name] = int(text) if _SEQ.fullmatch(text) else None
    seq_text = fields.get("seq", "")
    return AuditEntry.model_construct(
        **values,
        time=_parse_time(fields.get("time", "")),
        seq=int(seq_text) if _SEQ.fullmatch(seq_text) else -1,
        prev_hash=fields.get("prev_hash", ""),
        hash=fields.get("hash", ""),
        kid=fields.get("kid", ""),
        stream_id=stream_id,
    )


def _string_map(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"<unreadable>": text}
    if not isinstance(value, dict):
        return {"<unreadable>": text}
    return {str(k): str(v) for k, v in value.items()}


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- stream ids ------------------------------------------------------------------------------


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as numbers, for ordering; (0, 0) for anything malformed."""
    match = _STREAM_ID.fullmatch(stream_id)
    if match is None:
        return 0, 0
    return int(match[1]), int(match[2] or "0")


def stream_id_after(top: str, tip_id: str, now: datetime) -> str:
    """A stream id above both `top` and `tip_id`, from `now` if the clock allows."""
    last = max(stream_id_key(top), stream_id_key(tip_id))
    millis = int(now.timestamp() * 1000)
    if millis > last[0]:
        return f"{millis}-0"
    return f"{last[0]}-{last[1] + 1}"


def next_stream_id(stream_id: str) -> str:
    """The smallest stream id above `stream_id`."""
    millis, counter = stream_id_key(stream_id)
    return f"{millis}-{counter + 1}"


# -- sealing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainTip:
    """The end of the chain a new entry chains onto, as the head (or anchor, or genesis)
    records it."""

    seq: str
    hash: str
    id: str
    #: The stream's last generated id (a new entry's id must be above it).
    top: str
    #: The head's key id and MAC ("" when unkeyed).
    kid: str
    mac: str = ""

    @property
    def well_formed(self) -> bool:
        return is_seq(self.seq) and is_hash(self.hash)


@dataclass(frozen=True, slots=True)
class SealedEntry:
    """A new entry as stored (with `hash`) and the head record that names it."""

    fields: dict[str, str]
    head: dict[str, str]


def head_record(
    seq: str, stream_id: str, entry_hash: str, keyring: AuditKeyring | None
) -> dict[str, str]:
    """The head record naming an entry; with a key signed by the signing key."""
    head = {"seq": seq, "id": stream_id}
    if keyring is not None:
        head["kid"] = keyring.signing_kid
    head["hash"] = entry_hash
    if keyring is not None:
        head["mac"] = record_mac("head", head, keyring.signing_key)
    return head


def seal_entry(
    event: AuditEvent,
    tip: ChainTip,
    *,
    stream_id: str,
    time: str,
    keyring: AuditKeyring | None,
) -> SealedEntry:
    """The entry that records `event` right after `tip`, and the head record after it."""
    seq = int(tip.seq) + 1
    fields = entry_fields(event, seq=seq, time=time, prev_hash=tip.hash)
    if keyring is not None:
        fields["kid"] = keyring.signing_kid
        if not tip.kid:
            # The first entry with a key id: says (under the MAC) that the entries
            # before it are unkeyed, so an unsigned anchor before it is no forgery.
            fields["key_start"] = "1"
    entry_hash = digest(fields, keyring.signing_key if keyring else None)
    return SealedEntry(
        fields={**fields, "hash": entry_hash},
        head=head_record(str(seq), stream_id, entry_hash, keyring),
    )


def anchor_record(
    cut_id: str,
    cut_fields: Mapping[str, str],
    *,
    trimmed_from: int,
    time: str,
    reason: str,
    keyring: AuditKeyring | None,
) -> dict[str, str]:
    """The retention record of a trim whose last removed entry is `cut_fields` at `cut_id`."""
    record = {
        "v": ANCHOR_VERSION,
        "seq": cut_fields["seq"],
        "hash": cut_fields["hash"],
        "id": cut_id,
        "from": str(trimmed_from),
        "time": time,
        "reason": reason,
    }
    if keyring is not None:
        record["kid"] = keyring.signing_kid
        record["mac"] = record_mac("anchor", record, keyring.signing_key)
    return record


# -- trusting the tip ------------------------------------------------------------------------


def untrusted_tip(
    tip: ChainTip,
    keyring: AuditKeyring | None,
    unsigned_before: int,
    entry_at_tip: Callable[[], Mapping[str, str] | None],
) -> str | None:
    """With a key: why the head an entry would chain onto cannot be vouched for, or None.

    `entry_at_tip` reads the stored fields of the entry at `tip.id` (None if gone); it is
    called only when an unsigned head may have been signed before entries named their key.
    """
    if keyring is None:
        return None
    seq = int(tip.seq)
    if tip.kid:
        key = keyring.keys.get(tip.kid)
        if key is None:
            return (
                f"the head (seq {seq}) is signed with key id {tip.kid!r}, which is not "
                "configured (ROLLOUT_BOT_AUDIT_HMAC_KEYS)"
            )
        head = {"seq": tip.seq, "id": tip.id, "kid": tip.kid, "hash": tip.hash}
        if not hmac.compare_digest(tip.mac, record_mac("head", head, key)):
            return f"the head (seq {seq}) is not authentic: its MAC does not match"
        return None
    if seq == 0:
        if stream_id_key(tip.top) != (0, 0):
            return "the head record is missing, but the stream has had entries"
        return None  # a new trail: its first entry is signed
    if seq >= unsigned_before and not _signed_before_key_ids(tip, keyring, entry_at_tip):
        return (
            f"the head (seq {seq}) is not signed, but an audit key is configured and "
            f"unsigned entries are accepted only below seq {unsigned_before} "
            "(ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE). If the trail up to seq "
            f"{seq} was written before the key was configured, check it with `rollout-bot "
            f"audit verify --unsigned-before {seq + 1}` and then set "
            f"ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE={seq + 1}"
        )
    return None


def _signed_before_key_ids(
    tip: ChainTip,
    keyring: AuditKeyring,
    entry_at_tip: Callable[[], Mapping[str, str] | None],
) -> bool:
    """Is the unsigned head's entry one signed before entries named their key (under
    ROLLOUT_BOT_AUDIT_HMAC_KEY, no `kid`)? Such a head is genuine; the next append signs it."""
    legacy = keyring.keys.get(DEFAULT_KEY_ID)
    if legacy is None:
        return False
    fields = entry_at_tip()
    if fields is None:
        return False
    return (
        "kid" not in fields
        and fields.get("seq") == tip.seq
        and fields.get("hash") == tip.hash
        and hmac.compare_digest(digest(fields, legacy), tip.hash)
    )
