"""The words a policy is written in: namespaces and their globs, contexts, actions, Slack ids,
durations, each with the message that says what is wrong with a value; and how a rule's
patterns and principals match a request. Every rule of the policy is built from these.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from bot.domain.verbs import ACTIONS

POLICY_ENV_VAR: Final = "ROLLOUT_BOT_POLICY"
# Every action a rule may name; `help` needs no permission.
POLICY_ACTIONS: Final[frozenset[str]] = frozenset(ACTIONS)
READ_ONLY_ACTIONS: Final[tuple[str, ...]] = ("list", "status", "history", "diff")
DEFAULT_NAMESPACE: Final = "default"
# An approval is a decision about the cluster as it was when it was asked for; after a week
# that cluster is gone. One second is the smallest TTL that can be written down.
_MIN_TTL: Final = timedelta(seconds=1)
_MAX_TTL: Final = timedelta(days=7)
# Long enough for a reviewer to notice the request during working hours, short enough that
# the diff they approve still describes the cluster.
_DEFAULT_TTL: Final = timedelta(minutes=30)


# --- field types ---------------------------------------------------------------------------

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAMESPACE_GLOB: Final = re.compile(r"[a-z0-9*?]([-a-z0-9*?]*[a-z0-9*?])?")
_USER_ID: Final = re.compile(r"[UW][A-Z0-9]+")
_GROUP_ID: Final = re.compile(r"S[A-Z0-9]+")
_CHANNEL_ID: Final = re.compile(r"[CGD][A-Z0-9]+")


def _namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid namespace: use at most 63 lowercase letters, digits "
            "and `-`, starting and ending with a letter or digit"
        )
    return value


def _namespace_pattern(value: str) -> str:
    if not any(char in value for char in "*?"):
        return _namespace(value)
    if len(value) > 63 or not _NAMESPACE_GLOB.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid namespace pattern: use a namespace name, or one with "
            "`*` and `?` wildcards such as `prod-*`"
        )
    return value


_CONTEXT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}")
_CONTEXT_GLOB: Final = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9._@:/*?-]{0,252}")


def _context(value: str) -> str:
    if not _CONTEXT.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid context name: use letters, digits and `.`, `-`, `_`, "
            "`@`, `:` or `/`, as in the kubeconfig"
        )
    return value


def _context_pattern(value: str) -> str:
    if not _CONTEXT_GLOB.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid context pattern: use a context name, or one with `*` "
            "and `?` wildcards such as `prod-*`"
        )
    return value


def _action(value: str) -> str:
    if value != "*" and value not in POLICY_ACTIONS:
        hint = difflib.get_close_matches(value, sorted(POLICY_ACTIONS), n=1)
        did_you_mean = f" (did you mean `{hint[0]}`?)" if hint else ""
        raise ValueError(
            f"unknown action `{value}`{did_you_mean}; actions are "
            + ", ".join(ACTIONS)
            + ", or `*` for all"
        )
    return value


def _principal(value: str) -> str:
    if value != "*" and not _USER_ID.fullmatch(value) and not _GROUP_ID.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a Slack user id (U… or W…) or user-group id (S…), or `*`; "
            "ids are upper case, as in the member's profile under “Copy member ID”"
        )
    return value


def _channel_id(value: str) -> str:
    if not _CHANNEL_ID.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a Slack channel id (C…, G… or D…, upper case); "
            "Slack shows it at the bottom of the channel details"
        )
    return value


_TTL_TEXT: Final = re.compile(
    r"(?:(?P<d>[0-9]{1,9})d)?(?:(?P<h>[0-9]{1,9})h)?(?:(?P<m>[0-9]{1,9})m)?(?:(?P<s>[0-9]{1,9})s)?"
)
_TTL_HELP: Final = "a duration such as `90s`, `30m`, `2h` or `1h30m`, or a number of seconds"


def _ttl(value: object) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1h30m``, ``1d``, or an integer number of seconds."""
    try:
        if isinstance(value, timedelta):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.isdigit():
                return timedelta(seconds=int(text))
            match = _TTL_TEXT.fullmatch(text)
            if text and match:
                parts = {unit: int(amount or 0) for unit, amount in match.groupdict().items()}
                return timedelta(
                    days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
                )
    except OverflowError:
        pass
    raise ValueError(f"`{value}` is not {_TTL_HELP}")


def _ttl_in_range(value: timedelta) -> timedelta:
    if not _MIN_TTL <= value <= _MAX_TTL:
        raise ValueError("must be between 1 second and 7 days")
    return value


Namespace = Annotated[str, AfterValidator(_namespace)]
NamespacePattern = Annotated[str, AfterValidator(_namespace_pattern)]
Action = Annotated[str, AfterValidator(_action)]
Principal = Annotated[str, AfterValidator(_principal)]
ChannelId = Annotated[str, AfterValidator(_channel_id)]
Context = Annotated[str, AfterValidator(_context)]
ContextPattern = Annotated[str, AfterValidator(_context_pattern)]
ContextPatterns = Annotated[list[ContextPattern], Field(min_length=1)]
Ttl = Annotated[timedelta, BeforeValidator(_ttl), AfterValidator(_ttl_in_range)]


def _matches(patterns: Sequence[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


#: In ``user_groups``: the user is someone `*` stands for (see ``Policy.wildcard_users``).
EVERYONE: Final = "*"


def _has_principal(principals: Sequence[str], user_id: str, user_groups: frozenset[str]) -> bool:
    """``*`` is matched like a group: only when the caller put ``EVERYONE`` in
    ``user_groups``, having checked who the user is."""
    return user_id in principals or not user_groups.isdisjoint(principals)


def _one_or_many(value: object) -> object:
    """`identity:` is one mapping, or a list of them (per context)."""
    return [value] if isinstance(value, dict) else value


class _Model(BaseModel):
    # Unknown keys are typos (`approver:`), and a typo in a policy must not pass silently.
    model_config = ConfigDict(extra="forbid", frozen=True)
