"""Who may run which ``/rollout`` action in which namespace, and which actions need approval.

The policy is a YAML file named by ``ROLLOUT_BOT_POLICY``::

    channels:
      C0DEPLOYS: {namespace: default}
      C0PROD: {namespace: prod, namespaces: [prod, prod-*], follow_outside: true}
      C0EU: {context: prod-eu, contexts: [prod-eu], namespace: shop}
    permissions:
      - users: ["*"]
        namespaces: ["*"]
        actions: [list, status, history, diff]
      - users: [U0ALICE, S0DEVS]          # Slack user ids or user-group ids
        namespaces: ["*"]
        actions: ["*"]
        contexts: ["*"]                   # kubeconfig contexts (clusters); globs, default "*"
    approvals:
      - namespaces: [prod, prod-*]
        actions: [create, set-image, scale, undo, pause, resume, restart]
        required: 1                       # distinct approvers needed
        approvers: [U0BOB, S0SRE]         # user ids or user-group ids
        ttl: 30m
        on_failure: notify                # or rollback
        contexts: [prod-*]                # default "*": every context
    gitops: warn                          # or refuse: changes to Argo CD / Flux managed objects
    wildcard_users: members               # `*` is full members of the workspace; or anyone
    freezes:                              # change windows (bot.domain.freezes)
      - name: weekend
        namespaces: ["prod"]              # globs; contexts: [...] as elsewhere
        weekly: {from: "Fri 18:00", to: "Mon 08:00", timezone: "Europe/Berlin"}
      - name: black-friday
        namespaces: ["*"]
        from: "2026-11-26T00:00:00Z"      # or a fixed window, ISO timestamps with a zone
        to: "2026-11-30T00:00:00Z"
        allow: [undo, pause]              # what still runs during it (this is the default)
    break_glass:                          # who may let a change through a freeze
      approvers: [S0ONCALL]
      approvals: 1
    pipelines:                            # `/rollout promote web` (bot.domain.promotion)
      web:
        from: {context: staging, namespace: web, workload: deploy/web}
        waves:
          - [{context: prod-eu, namespace: web, workload: deploy/web}]
          - [{context: prod-us, namespace: web, workload: deploy/web}]
        gate: approval                    # or auto; approvers: the approval rules of the wave
        soak: 5m                          # healthy this long before the gate opens
        on_failure: halt                  # or rollback: undo the failed wave, then halt

A channel bound to a ``context`` reaches only that context unless it lists ``contexts``.
``load_policy(path, served_contexts=…)`` also refuses a ``contexts`` pattern that matches none
of the contexts served.

Permissions are additive: a user may do what any rule grants. Approval rules are ordered and
the first that matches applies. Namespace patterns are shell globs matched against the whole
name (``prod-*``); so are context patterns. The same namespace in two contexts is two
places: a rule with ``contexts`` covers only those clusters. The decisions here are pure:
the caller resolves the user's Slack groups (only when ``Policy.referenced_groups()`` is not
empty) and passes them in. Whether the requester may approve their own request is decided by
the approval flow, not here.

Without a file the bot runs with ``read_only_default()``.

Errors::

    PolicyError         .problems: one PolicyProblem(file, line, field, message) each
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Final, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.domain import freezes as windows
from bot.domain import kinds
from bot.domain.identity import IdentityRule
from bot.domain.verbs import ACTIONS, SPECS

__all__ = [
    "DEFAULT_NAMESPACE",
    "EVERYONE",
    "POLICY_ACTIONS",
    "POLICY_ENV_VAR",
    "READ_ONLY_ACTIONS",
    "READ_ONLY_NOTICE",
    "ApprovalRule",
    "BreakGlassRule",
    "ChannelBinding",
    "FreezeRule",
    "PermissionRule",
    "Pipeline",
    "PipelineTarget",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "load_policy",
    "parse_policy",
    "read_only_default",
    "read_policy_bytes",
]

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


# --- models --------------------------------------------------------------------------------


class _Model(BaseModel):
    # Unknown keys are typos (`approver:`), and a typo in a policy must not pass silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelBinding(_Model):
    """What a channel works on: its default namespace, optionally the only ones allowed, and
    whether rollouts made outside the bot there are followed."""

    namespace: Namespace | None = None
    namespaces: Annotated[list[NamespacePattern], Field(min_length=1)] | None = None
    #: Changes made outside the bot in ``namespace`` are always announced (once per revision);
    #: with ``true`` their rollout is also followed in the notice's thread.
    follow_outside: Annotated[bool, Field(strict=True)] = False
    #: The context (cluster) a command here uses when it names none, and optionally the only
    #: ones a command here may name.
    context: Context | None = None
    contexts: ContextPatterns | None = None

    @model_validator(mode="after")
    def _default_is_allowed(self) -> ChannelBinding:
        if (
            self.context is not None
            and self.contexts is not None
            and not _matches(self.contexts, self.context)
        ):
            raise ValueError(f"the channel's context `{self.context}` is not among its contexts")
        if (
            self.namespace is not None
            and self.namespaces is not None
            and not _matches(self.namespaces, self.namespace)
        ):
            raise ValueError(
                f"the channel's namespace `{self.namespace}` is not among its namespaces"
            )
        if self.follow_outside and self.namespace is None:
            raise ValueError(
                "`follow_outside` needs the channel's `namespace`: outside changes are "
                "announced in the channel bound to their namespace"
            )
        return self


class PermissionRule(_Model):
    """These users (or members of these groups) may run these actions in these namespaces."""

    users: Annotated[list[Principal], Field(min_length=1)]
    namespaces: Annotated[list[NamespacePattern], Field(min_length=1)]
    actions: Annotated[list[Action], Field(min_length=1)]
    contexts: ContextPatterns = Field(default_factory=lambda: ["*"])

    def grants(
        self,
        user_id: str,
        user_groups: frozenset[str],
        action: str,
        namespace: str,
        context: str = "",
    ) -> bool:
        return (
            ("*" in self.actions or action in self.actions)
            and _matches(self.namespaces, namespace)
            and _matches(self.contexts, context)
            and _has_principal(self.users, user_id, user_groups)
        )


class ApprovalRule(_Model):
    """These actions in these namespaces wait for ``required`` distinct approvers."""

    namespaces: Annotated[list[NamespacePattern], Field(min_length=1)]
    actions: Annotated[list[Action], Field(min_length=1)]
    required: Annotated[int, Field(ge=1, strict=True)] = 1
    approvers: Annotated[list[Principal], Field(min_length=1)]
    ttl: Ttl = _DEFAULT_TTL
    on_failure: Literal["rollback", "notify"] = "notify"
    #: Where the approval cards of this rule are posted (and so where the approved change and
    #: its progress are reported); a request made elsewhere gets a pointer to it. None: the
    #: channel the request was made in.
    channel: ChannelId | None = None
    contexts: ContextPatterns = Field(default_factory=lambda: ["*"])

    @field_validator("approvers")
    @classmethod
    def _enough_approvers(cls, approvers: list[str], info: ValidationInfo) -> list[str]:
        if "*" in approvers:
            # Anyone, requester's friends and passers-by included: that is no approval at all.
            raise ValueError(
                "`*` cannot approve: an approval anyone may give is no approval. List the user "
                "ids or user-group ids (S…) who may approve"
            )
        required = info.data.get("required")
        distinct = len(set(approvers))
        named_users_only = all(_USER_ID.fullmatch(approver) for approver in approvers)
        if isinstance(required, int) and named_users_only and distinct < required:
            listed = "1 approver is" if distinct == 1 else f"{distinct} approvers are"
            raise ValueError(
                f"`required` is {required} but only {listed} listed, so nothing could ever "
                "be approved"
            )
        return approvers

    def applies_to(self, action: str, namespace: str, context: str = "") -> bool:
        return ("*" in self.actions or action in self.actions) and self.covers(namespace, context)

    def covers(self, namespace: str, context: str = "") -> bool:
        return _matches(self.namespaces, namespace) and _matches(self.contexts, context)

    def is_approver(self, user_id: str, user_groups: frozenset[str]) -> bool:
        return _has_principal(self.approvers, user_id, user_groups)


# --- change windows (the arithmetic is bot.domain.freezes) ---------------------------------

# What a freeze may let through: the actions that change the cluster.
_CHANGE_ACTIONS: Final = tuple(spec.command.action for spec in SPECS if spec.command.is_mutation)


def _change_action(value: str) -> str:
    if value not in _CHANGE_ACTIONS:
        raise ValueError(
            f"`{value}` is not a change a freeze could stop; `allow` lists some of "
            + ", ".join(_CHANGE_ACTIONS)
        )
    return value


def _weekly_point(value: str) -> str:
    windows.parse_weekly_point(value)
    return value


def _time_zone(value: str) -> str:
    windows.zone(value)
    return value


WeeklyPoint = Annotated[str, AfterValidator(_weekly_point)]
Instant = Annotated[datetime, BeforeValidator(windows.parse_instant)]


class WeeklyFreeze(_Model):
    """``{from: "Fri 18:00", to: "Mon 08:00", timezone: "Europe/Berlin"}``."""

    start: WeeklyPoint = Field(alias="from")
    end: WeeklyPoint = Field(alias="to")
    timezone: Annotated[str, AfterValidator(_time_zone)]

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyFreeze:
        if windows.parse_weekly_point(self.start) == windows.parse_weekly_point(self.end):
            raise ValueError("`from` and `to` are the same moment, so the window is empty")
        return self

    def window(self) -> windows.WeeklyWindow:
        start_day, start = windows.parse_weekly_point(self.start)
        end_day, end = windows.parse_weekly_point(self.end)
        return windows.WeeklyWindow(start_day, start, end_day, end, self.timezone)


class FreezeRule(_Model):
    """No changes in these namespaces during the window, except what ``allow`` lists."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w .-]*$")]
    namespaces: Annotated[list[NamespacePattern], Field(min_length=1)]
    contexts: ContextPatterns = Field(default_factory=lambda: ["*"])
    weekly: WeeklyFreeze | None = None
    start: Instant | None = Field(default=None, alias="from")
    end: Instant | None = Field(default=None, alias="to")
    allow: list[Annotated[str, AfterValidator(_change_action)]] = Field(
        default_factory=lambda: list(windows.DEFAULT_ALLOW)
    )
    #: Shown to whoever the freeze stops.
    reason: Annotated[str, Field(max_length=300)] = ""

    @model_validator(mode="after")
    def _one_window(self) -> FreezeRule:
        fixed = self.start is not None or self.end is not None
        if self.weekly is not None and fixed:
            raise ValueError("give either `weekly` or `from` and `to`, not both")
        if self.weekly is None and not fixed:
            raise ValueError("needs a window: `weekly: {from, to, timezone}` or `from` and `to`")
        if fixed and (self.start is None or self.end is None):
            raise ValueError("a fixed window needs both `from` and `to`")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("`from` must be before `to`")
        return self

    def window(self) -> windows.WeeklyWindow | windows.FixedWindow:
        if self.weekly is not None:
            return self.weekly.window()
        assert self.start is not None and self.end is not None  # _one_window
        return windows.FixedWindow(self.start, self.end)

    def covers(self, namespace: str, context: str = "") -> bool:
        return _matches(self.namespaces, namespace) and _matches(self.contexts, context)


class BreakGlassRule(_Model):
    """Who may let one change through a freeze (never the person asking)."""

    approvers: Annotated[list[Principal], Field(min_length=1)]
    approvals: Annotated[int, Field(ge=1, strict=True)] = 1
    ttl: Ttl = _DEFAULT_TTL

    @model_validator(mode="after")
    def _enough_approvers(self) -> BreakGlassRule:
        self.as_approval_rule()
        return self

    def as_approval_rule(self) -> ApprovalRule:
        """The break-glass request waits like any other approval, for these approvers."""
        try:
            return ApprovalRule(
                namespaces=["*"],
                actions=["*"],
                required=self.approvals,
                approvers=self.approvers,
                ttl=self.ttl,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str((first.get("ctx") or {}).get("error", first["msg"]))
            raise ValueError(message.replace("`required`", "`approvals`")) from None


# --- promotion pipelines (the plan and state machine are bot.domain.promotion) ------------

_PIPELINE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
# A soak longer than a day is a calendar entry, not a wave.
_MAX_SOAK: Final = timedelta(days=1)


def _pipeline_name(value: str) -> str:
    if not _PIPELINE_NAME.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid pipeline name: use at most 40 lowercase letters, digits "
            "and `-`, starting and ending with a letter or digit"
        )
    return value


def _workload_ref(value: str) -> str:
    """``deploy/web``, ``sts/db``, ``ds/agent`` or a bare Deployment name, as kubectl writes it."""
    spelling, slash, name = value.partition("/")
    if slash and kinds.parse_kind(spelling) is None:
        raise ValueError(
            f"`{value}` is not a Deployment, StatefulSet or DaemonSet: write `deploy/NAME`, "
            "`sts/NAME` or `ds/NAME`"
        )
    name = name if slash else value
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(
            f"`{name}` is not a valid workload name: use at most 253 lowercase letters, digits, "
            "`-` and `.`, starting and ending with a letter or digit"
        )
    return value


def _soak(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= _MAX_SOAK:
        raise ValueError("must be between `0s` and `1d`")
    return value


_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
PipelineName = Annotated[str, AfterValidator(_pipeline_name)]
WorkloadRef = Annotated[str, AfterValidator(_workload_ref)]
Soak = Annotated[timedelta, BeforeValidator(_ttl), AfterValidator(_soak)]


class PipelineTarget(_Model):
    """One workload in one cluster: where a promotion reads its images, or writes them."""

    context: Context
    namespace: Namespace
    workload: WorkloadRef

    @property
    def kind(self) -> str:
        spelling, slash, _ = self.workload.partition("/")
        return (kinds.parse_kind(spelling) or "deployment") if slash else "deployment"

    @property
    def name(self) -> str:
        spelling, slash, name = self.workload.partition("/")
        return name if slash else spelling

    def where(self) -> str:
        """`prod-eu/web/deploy/web`: context, namespace, workload."""
        return f"{self.context}/{self.namespace}/{self.workload}"


class Pipeline(_Model):
    """Promote what runs at ``from`` to ``waves`` of targets, one wave after another: each must
    stay healthy for ``soak`` before the ``gate`` (a person's approval, or ``auto``) lets the
    next start; a failure halts the line (``on_failure: rollback`` first undoes the wave)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: PipelineTarget = Field(alias="from")
    waves: Annotated[
        list[Annotated[list[PipelineTarget], Field(min_length=1)]], Field(min_length=1)
    ]
    gate: Literal["approval", "auto"] = "approval"
    soak: Soak = timedelta(minutes=5)
    on_failure: Literal["halt", "rollback"] = "halt"

    @model_validator(mode="after")
    def _distinct_targets(self) -> Pipeline:
        def key(target: PipelineTarget) -> tuple[str, str, str, str]:
            return (target.context, target.namespace, target.kind, target.name)

        seen = {key(self.source)}
        for wave in self.waves:
            for target in wave:
                if key(target) in seen:
                    raise ValueError(
                        f"`{target.where()}` is named twice (as the source or in two waves); a "
                        "pipeline promotes to each workload once, and never from itself"
                    )
                seen.add(key(target))
        return self


class Policy(_Model):
    channels: dict[ChannelId, ChannelBinding] = Field(default_factory=dict)
    permissions: list[PermissionRule] = Field(default_factory=list)
    approvals: list[ApprovalRule] = Field(default_factory=list)
    #: A change to an object an Argo CD or Flux application manages: `warn` (go ahead, and say
    #: that the tool may revert it) or `refuse`.
    gitops: Literal["warn", "refuse"] = "warn"
    #: Who `*` in a rule's `users` stands for: `members`, the full members of the workspace
    #: the bot is installed in (no guests, no Slack Connect users of other workspaces), or
    #: `anyone` who can reach the bot.
    wildcard_users: Literal["members", "anyone"] = "members"
    #: Whose Kubernetes identity changes are made with (`bot.domain.identity`): one rule, or
    #: several with `contexts`, the first matching a context applies.
    identity: Annotated[list[IdentityRule], BeforeValidator(_one_or_many)] = Field(
        default_factory=list
    )

    def identity_for(self, context: str = "") -> IdentityRule:
        """The identity rule of a context (the bot's own identity when none matches)."""
        return next((r for r in self.identity if _matches(r.contexts, context)), IdentityRule())

    freezes: list[FreezeRule] = Field(default_factory=list)
    break_glass: BreakGlassRule | None = None
    #: Promotion pipelines by name (`/rollout promote NAME`).
    pipelines: dict[PipelineName, Pipeline] = Field(default_factory=dict)

    @field_validator("freezes")
    @classmethod
    def _distinct_freeze_names(cls, freezes: list[FreezeRule]) -> list[FreezeRule]:
        names = [freeze.name for freeze in freezes]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"freeze names must differ; `{twice[0]}` is used more than once")
        return freezes

    def default_namespace(self, channel_id: str) -> str:
        """The namespace a command in this channel uses when it names none."""
        binding = self.channels.get(channel_id)
        if binding is not None and binding.namespace is not None:
            return binding.namespace
        return DEFAULT_NAMESPACE

    def default_context(self, channel_id: str) -> str | None:
        """The context a command in this channel uses when it names none (None: the bot's
        default context)."""
        binding = self.channels.get(channel_id)
        return binding.context if binding is not None else None

    def channel_allows_context(
        self, channel_id: str, context: str, aliases: Mapping[str, str] | None = None
    ) -> bool:
        """Whether a command here may act on ``context``: one of the binding's ``contexts``
        when it lists them, else only the binding's own ``context`` (closed by default: a
        channel bound to a cluster does not reach the others unless the policy says so).
        A channel bound to no context may act on any. ``aliases`` maps other names of a
        context (a one-cluster bot's kubeconfig context) to the name ``context`` uses."""
        binding = self.channels.get(channel_id)
        if binding is None:
            return True
        if binding.contexts is not None:
            return _matches(binding.contexts, context)
        if binding.context is not None:
            return (aliases or {}).get(binding.context, binding.context) == context
        return True

    def channel_allows_namespace(self, channel_id: str, namespace: str) -> bool:
        """False only when the channel's binding lists ``namespaces`` and none matches."""
        binding = self.channels.get(channel_id)
        if binding is None or binding.namespaces is None:
            return True
        return _matches(binding.namespaces, namespace)

    def is_allowed(
        self,
        user_id: str,
        user_groups: frozenset[str],
        action: str,
        namespace: str,
        context: str = "",
    ) -> bool:
        """Whether any permission rule grants ``action`` in ``namespace`` to the user.

        ``help`` is always allowed; an action the policy does not know never is.
        """
        if action == "help":
            return True
        if action not in POLICY_ACTIONS:
            return False
        return any(
            rule.grants(user_id, user_groups, action, namespace, context)
            for rule in self.permissions
        )

    def approval_rule_for(
        self, action: str, namespace: str, context: str = ""
    ) -> ApprovalRule | None:
        """The first approval rule that covers ``action`` in ``namespace`` (of ``context``)."""
        return next(
            (rule for rule in self.approvals if rule.applies_to(action, namespace, context)),
            None,
        )

    def referenced_contexts(self) -> set[str]:
        """Every context name the channels bind (to check against the configured ones)."""
        return {b.context for b in self.channels.values() if b.context is not None}

    def names_everyone(self) -> bool:
        """Whether a permission rule grants something to `*`."""
        return any(EVERYONE in rule.users for rule in self.permissions)

    def referenced_groups(self) -> set[str]:
        """Every user-group id the policy names; empty means groups never need resolving."""
        principals = [user for rule in self.permissions for user in rule.users]
        principals += [approver for rule in self.approvals for approver in rule.approvers]
        principals += self.break_glass.approvers if self.break_glass is not None else []
        return {principal for principal in principals if _GROUP_ID.fullmatch(principal)}


def read_only_default() -> Policy:
    """The policy without a file: everyone may look (``READ_ONLY_ACTIONS``), nobody may change."""
    return Policy(
        permissions=[PermissionRule(users=["*"], namespaces=["*"], actions=list(READ_ONLY_ACTIONS))]
    )


READ_ONLY_NOTICE: Final = f"""\
No policy is configured, so everyone may only `list`, `status`, `history` and `diff`.
To allow changes, point the environment variable `{POLICY_ENV_VAR}` at a YAML file like this:
```
permissions:
  - users: ["*"]
    namespaces: ["*"]
    actions: [list, status, history, diff]
  - users: [U0123ABCD]          # a member id (profile, Copy member ID), or a group id S…
    namespaces: [staging]
    actions: ["*"]
```"""


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy file. ``line`` is 1-based; None when there is no line."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class PolicyError(Exception):
    """The policy file cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


_FIELD_NAMES: Final = sorted(
    {
        *Policy.model_fields,
        *ChannelBinding.model_fields,
        *PermissionRule.model_fields,
        *ApprovalRule.model_fields,
        *IdentityRule.model_fields,
        *FreezeRule.model_fields,
        *WeeklyFreeze.model_fields,
        *BreakGlassRule.model_fields,
        *PipelineTarget.model_fields,
        *Pipeline.model_fields,
        "from",
        "to",
    }
    - {"start", "end"}
)


def load_policy(
    path: str | os.PathLike[str], *, served_contexts: Collection[str] | None = None
) -> Policy:
    """Read, parse and validate a policy file; ``PolicyError`` lists everything wrong with it.

    With ``served_contexts`` (the contexts the bot serves, by the names the policy matches),
    a `contexts:` pattern that matches none of them is a problem too: a typo, or `prod` on a
    one-cluster bot, would otherwise make its rule silently never apply."""
    return parse_policy(read_policy_bytes(path), os.fspath(path), served_contexts=served_contexts)


def read_policy_bytes(path: str | os.PathLike[str]) -> bytes:
    """The policy file's bytes, read once; ``PolicyError`` when it cannot be read."""
    file = os.fspath(path)
    try:
        return Path(file).read_bytes()
    except FileNotFoundError:
        raise _problem(file, None, "", "the policy file does not exist") from None
    except OSError as exc:
        why = f"cannot read the policy file: {exc.strerror or exc}"
        raise _problem(file, None, "", why) from None


def _problem(file: str, line: int | None, field: str, message: str) -> PolicyError:
    return PolicyError([PolicyProblem(file, line, field, message)])


def parse_policy(
    raw: bytes, file: str, *, served_contexts: Collection[str] | None = None
) -> Policy:
    """Parse and validate the bytes of a policy file read once (`file` names it in problems),
    so that what is hashed and what is put in force are the same bytes."""

    def problem(line: int | None, field: str, message: str) -> PolicyError:
        return _problem(file, line, field, message)

    try:
        # As Path.read_text would: universal newlines.
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise problem(None, "", f"the policy file is not UTF-8 text ({exc.reason})") from None

    try:
        root, duplicates, data = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        line, message = _yaml_problem(exc)
        raise problem(line, "", message) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise problem(line, "", f"YAML error: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise problem(None, "", f"YAML error: {exc}") from None

    if root is None:
        raise problem(None, "", "the policy file is empty")
    if not isinstance(data, dict):
        raise problem(
            root.start_mark.line + 1,
            "",
            "the policy must be a mapping with `channels`, `permissions` and `approvals`",
        )

    problems = [
        PolicyProblem(
            file,
            node.start_mark.line + 1,
            _field_path(loc),
            f"`{node.value}` appears more than once; YAML would silently keep only the last one",
        )
        for loc, node in duplicates
    ]
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems += [
            _problem_from_error(file, root, error) for error in _without_echoes(exc.errors())
        ]
    else:
        if served_contexts is not None:
            problems += _unserved_context_patterns(file, root, policy, served_contexts)
    if problems:
        raise PolicyError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    return policy


def _unserved_context_patterns(
    file: str, root: yaml.Node, policy: Policy, served: Collection[str]
) -> list[PolicyProblem]:
    """One problem per `contexts:` pattern (of a channel, permission, approval or freeze rule)
    that matches no served context, at its own line."""
    lists: list[tuple[tuple[str | int, ...], Sequence[str] | None]] = [
        (("channels", channel, "contexts"), binding.contexts)
        for channel, binding in policy.channels.items()
    ]
    lists += [
        (("permissions", i, "contexts"), r.contexts) for i, r in enumerate(policy.permissions)
    ]
    lists += [(("approvals", i, "contexts"), r.contexts) for i, r in enumerate(policy.approvals)]
    lists += [(("freezes", i, "contexts"), rule.contexts) for i, rule in enumerate(policy.freezes)]
    known = ", ".join(f"`{name}`" for name in sorted(served)) or "none"
    problems = []
    for loc, patterns in lists:
        for index, pattern in enumerate(patterns or ()):
            if any(fnmatch.fnmatchcase(name, pattern) for name in served):
                continue
            node = _locate(root, (*loc, index))
            problems.append(
                PolicyProblem(
                    file,
                    node.start_mark.line + 1,
                    _field_path((*loc, index)),
                    f"`{pattern}` matches no context the bot serves ({known}), so this rule "
                    "would never apply; name a served context, or serve that cluster "
                    "(ROLLOUT_BOT_CONTEXTS)",
                )
            )
    return problems


def _parse_yaml(
    text: str,
) -> tuple[yaml.Node | None, list[tuple[tuple[str | int, ...], yaml.Node]], object]:
    """One safe parse: the node tree (for line numbers), duplicate keys, and the data."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [], None
        # Before constructing: construction rewrites merge keys (`<<`) in the node tree.
        duplicates = list(_duplicate_keys(root, ()))
        return root, duplicates, loader.construct_document(root)
    finally:
        loader.dispose()


# Constructs that YAML only notices are unfinished where the next thing starts: the mistake
# is where they were opened, which is the error's context mark.
_UNCLOSED: Final = {
    "while parsing a flow mapping": "`{`",
    "while parsing a flow sequence": "`[`",
    "while scanning a quoted scalar": "quote",
}


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line a YAML syntax error is on, and what it is, as the person who wrote it sees it."""
    problem_line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
    opened = _UNCLOSED.get(exc.context or "")
    if opened is not None and exc.context_mark is not None:
        line = exc.context_mark.line + 1
        if problem_line is None or problem_line == line:
            return line, f"YAML error: {exc.problem or 'not valid YAML'}"
        if opened == "quote":
            return line, "YAML error: the quote opened on this line is never closed"
        closer = "`}`" if opened == "`{`" else "`]`"
        return line, (
            f"YAML error: the {opened} opened on this line is not closed by a {closer} "
            f"(line {problem_line} starts something else)"
        )
    if (exc.problem or "").startswith("expected <block end>"):
        return problem_line, (
            "YAML error: this line is indented differently from the lines above it "
            "(keys of one mapping start in the same column)"
        )
    return problem_line, _yaml_message(exc)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "not valid YAML"
    context = exc.context or ""
    if context.startswith("while"):
        message = f"YAML error {context}: {problem}"
    elif context:
        message = f"YAML error: {context}, {problem}"
    else:
        message = f"YAML error: {problem}"
    if "alias" in message or "'*'" in problem:
        message += '; write a wildcard in quotes, as "*"'
    return message


def _duplicate_keys(
    node: yaml.Node, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen and key.tag != "tag:yaml.org,2002:merge":
                    yield (*loc, key.value), key
                seen.add(key.value)
                yield from _duplicate_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _locate(root: yaml.Node, loc: Sequence[str | int]) -> yaml.Node:
    """The node a pydantic error location points at, or its nearest ancestor that exists."""
    node = root
    key_node: yaml.Node | None = None
    for part in loc:
        if part == "[key]" and key_node is not None:
            node = key_node
            continue
        found: tuple[yaml.Node, yaml.Node | None] | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:  # the last one wins, as in the constructed data
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    found = (value, key)
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            found = (node.value[part], None)
        if found is None:
            return node
        node, key_node = found
    return node


def _field_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _problem_from_error(file: str, root: yaml.Node, error: ErrorDetails) -> PolicyProblem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind: str = error["type"]
    if kind == "extra_forbidden":
        # Point at the unknown key itself, not at its value.
        parent = _locate(root, loc[:-1])
        line = _key_line(parent, str(loc[-1]))
        close = difflib.get_close_matches(str(loc[-1]), _FIELD_NAMES, n=1)
        message = f"unknown key `{loc[-1]}`"
        if close:
            message += f"; did you mean `{close[0]}`?"
    else:
        node = _locate(root, loc)
        line = node.start_mark.line + 1
        if kind == "missing":
            message = f"missing required key `{loc[-1]}`"
        elif kind == "value_error":
            message = str(error["ctx"]["error"])
        else:
            message = _in_policy_terms(error)
    return PolicyProblem(file, line, _field_path(loc), message)


def _without_echoes(errors: Sequence[ErrorDetails]) -> list[ErrorDetails]:
    """A mistyped key is one mistake: its "unknown key, did you mean `x`?" already says that
    `x` is missing, so the "missing required key `x`" beside it goes."""
    suggested = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = tuple(error["loc"])
            close = difflib.get_close_matches(str(loc[-1]), _FIELD_NAMES, n=1)
            if close:
                suggested.add((*loc[:-1], close[0]))
    return [
        error
        for error in errors
        if not (error["type"] == "missing" and tuple(error["loc"]) in suggested)
    ]


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"`{value}`"


def _in_policy_terms(error: ErrorDetails) -> str:
    """pydantic's phrases ("input should be greater than or equal to 1") said about the policy."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = _shown(error.get("input"))
    if kind == "greater_than_equal":
        return f"{given} is too small: use {ctx['ge']} or more"
    if kind == "less_than_equal":
        return f"{given} is too large: use {ctx['le']} or less"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        raw = error.get("input")
        if isinstance(raw, str) and raw.strip().isdigit():
            return f"{given} is quoted: write the number without quotes"
        return f"{given} is not a whole number: write a number such as `1`"
    if kind in {"bool_type", "bool_parsing"}:
        return f"{given} is not `true` or `false`"
    if kind in {"string_type", "string_sub_type"}:
        return f"{given} is not text: write it in quotes"
    if kind in {"list_type", "tuple_type", "set_type"}:
        return f"{given} is not a list: write `[a, b]` or one `- item` per line"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"{given} is not a mapping: write `key: value` pairs"
    if kind == "too_short":
        return "the list is empty: name at least one"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        message = f"{given} is not allowed here: use {expected.replace(chr(39), '`')}"
        raw = error.get("input")
        choices = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(raw, choices, n=1) if isinstance(raw, str) else []
        return message + (f"; did you mean `{close[0]}`?" if close else "")
    text = str(error["msg"])
    return text[:1].lower() + text[1:]


def _key_line(mapping: yaml.Node, key: str) -> int:
    if isinstance(mapping, yaml.MappingNode):
        for key_node, _ in mapping.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return int(key_node.start_mark.line) + 1
    return int(mapping.start_mark.line) + 1
