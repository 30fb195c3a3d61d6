"""Who may do what, where: a channel's binding (its namespaces and contexts), the permission
rules that grant actions, and the approval rules that make a change wait for approvers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bot.domain.policy.fields import (
    _DEFAULT_TTL,
    _USER_ID,
    Action,
    ChannelId,
    Context,
    ContextPatterns,
    Namespace,
    NamespacePattern,
    Principal,
    Ttl,
    _has_principal,
    _matches,
    _Model,
)


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
