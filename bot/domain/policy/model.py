"""The policy as a whole: its sections, and the decisions read from it (may this user run this
action here, which approval rule applies, what a channel defaults to); and the read-only
policy the bot runs with when there is no file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Field, field_validator

from bot.domain.identity import IdentityRule
from bot.domain.policy.change_windows import BreakGlassRule, FreezeRule
from bot.domain.policy.fields import (
    _GROUP_ID,
    DEFAULT_NAMESPACE,
    EVERYONE,
    POLICY_ACTIONS,
    POLICY_ENV_VAR,
    READ_ONLY_ACTIONS,
    ChannelId,
    _matches,
    _Model,
    _one_or_many,
)
from bot.domain.policy.pipelines import Pipeline, PipelineName
from bot.domain.policy.rules import ApprovalRule, ChannelBinding, PermissionRule


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
