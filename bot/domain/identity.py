"""Whose Kubernetes identity a change is made with: the bot's own, or the person's who asked.

The policy's top-level ``identity`` (one mapping, or a list of them with ``contexts`` globs
where several clusters are served; the first that matches a context applies)::

    identity:
      mode: impersonate          # default: bot (the bot's own credentials)
      user: "{email}"            # template over {email}, {slack_id}, {handle}
      groups: ["rollout-bot:users", "slack:{usergroup_handle}"]   # optional
      reads: bot                 # or impersonate: reads as the person too

``{usergroup_handle}`` makes one group per Slack user group the person is in (none when they
are in none). In impersonate mode every change is sent with ``Impersonate-User``,
``Impersonate-Group`` and ``Impersonate-Extra-*`` headers (`EXTRA_*` below), so Kubernetes
RBAC decides and the API server's audit log names the person.

Everything here is pure: the Slack facts about a person (`SlackPerson`) are looked up by an
adapter and passed in.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EXTRA_APPROVED_BY",
    "EXTRA_CONTINUED_BY",
    "EXTRA_SLACK_USER",
    "AccessReview",
    "IdentityRule",
    "KubeIdentity",
    "SlackPerson",
    "forbidden_message",
    "identity_of",
    "refusal_of",
]

#: The Slack user id of the person the change is made for.
EXTRA_SLACK_USER: Final = "rollout-bot.io/slack-user-id"
#: The Slack user ids of the approvers of an approved request.
EXTRA_APPROVED_BY: Final = "rollout-bot.io/approved-by"
#: What of the bot continued the person's change on its own (`auto-rollback`,
#: `approval-sweeper`).
EXTRA_CONTINUED_BY: Final = "rollout-bot.io/continued-by"

USER_FIELDS: Final = ("email", "slack_id", "handle")
GROUP_FIELDS: Final = (*USER_FIELDS, "usergroup_handle")


def _placeholders(template: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"`{template}` is not a valid template: {exc}") from None


def _template(template: str, allowed: Sequence[str]) -> str:
    for name in _placeholders(template):
        if name not in allowed:
            known = ", ".join("{" + a + "}" for a in allowed)
            raise ValueError(f"`{{{name}}}` in `{template}` is not one of {known}")
    return template


class IdentityRule(BaseModel):
    """How a Slack user becomes a Kubernetes identity, in the contexts it covers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["bot", "impersonate"] = "bot"
    user: Annotated[str, Field(min_length=1, max_length=256)] = "{email}"
    groups: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)
    reads: Literal["bot", "impersonate"] = "bot"
    #: The contexts (clusters) this rule covers: globs, default every one.
    contexts: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["*"])

    @field_validator("user")
    @classmethod
    def _user_template(cls, value: str) -> str:
        return _template(value, USER_FIELDS)

    @field_validator("groups")
    @classmethod
    def _group_templates(cls, values: list[str]) -> list[str]:
        return [_template(value, GROUP_FIELDS) for value in values]

    @property
    def impersonates(self) -> bool:
        return self.mode == "impersonate"

    @property
    def reads_as_person(self) -> bool:
        return self.impersonates and self.reads == "impersonate"

    def needs(self, name: str) -> bool:
        """Whether the templates use `{name}` (e.g. `email`, `usergroup_handle`)."""
        templates = [self.user, *self.groups]
        return any(name in _placeholders(template) for template in templates)


@dataclass(frozen=True)
class SlackPerson:
    """What Slack says about a person, as far as identities need it."""

    slack_id: str
    handle: str
    email: str = ""
    #: A guest (single- or multi-channel) of the workspace.
    guest: bool = False
    #: A bot or app user.
    bot: bool = False
    deleted: bool = False
    #: The handles of the Slack user groups the person is in (only looked up when a group
    #: template uses `{usergroup_handle}`).
    usergroup_handles: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubeIdentity:
    """A Kubernetes user, its groups and extra fields, as sent in impersonation headers."""

    user: str
    groups: tuple[str, ...] = ()
    #: (key, values), sorted by key.
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    def with_extra(self, key: str, values: Sequence[str]) -> KubeIdentity:
        """The same identity with `key` set to `values` (removed when there are none)."""
        kept = {k: v for k, v in self.extra if k != key}
        if values:
            kept[key] = tuple(values)
        return KubeIdentity(self.user, self.groups, tuple(sorted(kept.items())))

    @property
    def extras(self) -> Mapping[str, tuple[str, ...]]:
        return dict(self.extra)

    def describe(self) -> str:
        """`alice@example.com (groups: rollout-bot:users, slack:sre)`, for replies and checks."""
        if not self.groups:
            return self.user
        return f"{self.user} (groups: {', '.join(self.groups)})"


@dataclass(frozen=True)
class AccessReview:
    """The API server's answer to "may this identity do that?" (a SelfSubjectAccessReview
    sent as the person), asked before anything is changed or an approval is requested."""

    allowed: bool
    #: The authorizer's reason, when it gave one (RBAC gives none for a plain "no").
    reason: str = ""


# Kubernetes user and group names are free strings, but a header value must be one line of
# characters every HTTP stack sends alike (ASCII).
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def refusal_of(rule: IdentityRule, person: SlackPerson) -> str | None:
    """Why this person cannot be given a Kubernetes identity, or None when they can."""
    if person.deleted:
        return "Your Slack account is deactivated, so the bot cannot act as you in Kubernetes."
    if person.bot:
        return (
            "Bot and app users cannot act in Kubernetes through rollout-bot: changes are made "
            "as the person who asks, and a bot has no Kubernetes identity."
        )
    if person.guest:
        return (
            "Workspace guests cannot act in Kubernetes through rollout-bot: changes are made "
            "as the person who asks, and guests are not given a Kubernetes identity."
        )
    if rule.needs("email") and not person.email:
        return (
            "Slack shows the bot no email address for you, and your Kubernetes identity is "
            "your email. Ask a Slack admin to make sure your profile has one (and that the "
            "bot's Slack app has the `users:read.email` scope)."
        )
    return None


def identity_of(rule: IdentityRule, person: SlackPerson) -> KubeIdentity:
    """The Kubernetes identity the rule gives this person (check `refusal_of` first). Carries
    the person's Slack id as an extra field."""
    values = {"email": person.email, "slack_id": person.slack_id, "handle": person.handle}
    user = rule.user.format(**values)
    groups: list[str] = []
    for template in rule.groups:
        if "usergroup_handle" in _placeholders(template):
            for handle in person.usergroup_handles:
                groups.append(template.format(**values, usergroup_handle=handle))
        else:
            groups.append(template.format(**values))
    unique = tuple(dict.fromkeys(g for g in groups if g and not _UNSAFE.search(g)))
    if not user or _UNSAFE.search(user):
        raise ValueError("the identity template gave an empty or multi-line user name")
    return KubeIdentity(user, unique).with_extra(EXTRA_SLACK_USER, [person.slack_id])


def forbidden_message(
    identity: KubeIdentity,
    verb: str,
    resource: str,
    group: str,
    namespace: str,
    name: str = "",
    reason: str = "",
) -> str:
    """The API server's words for a forbidden request, as kubectl prints them:
    `deployments.apps "web" is forbidden: User "alice@example.com" cannot patch resource
    "deployments" in API group "apps" in the namespace "team-b"`."""
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    message = (
        f'{subject} is forbidden: User "{identity.user}" cannot {verb} resource "{resource}" '
        f'in API group "{group}" in the namespace "{namespace}"'
    )
    return f"{message}: {reason}" if reason else message
