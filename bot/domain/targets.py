"""Who asks and what for: the actor, the workload a verb works on, and what a change did.

Value types every layer passes around (the Slack surface, the use cases, the progress engine and
the audit), so they live in the domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bot.domain import kinds
from bot.domain.kinds import Kind


@dataclass(frozen=True)
class Actor:
    """Who asked, for change-cause and audit."""

    user_id: str
    user_name: str
    channel_id: str


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    kind: Kind = "deployment"
    #: The kubeconfig context (cluster) the object lives in; "" is the default context. The
    #: same namespace in two clusters is two places.
    context: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{kinds.info(self.kind).word(self.name)}"

    @property
    def ref(self) -> str:
        """`statefulset.apps/web`, as kubectl prints the object."""
        return kinds.info(self.kind).ref(self.name)

    @property
    def display(self) -> str:
        """`StatefulSet`."""
        return kinds.info(self.kind).display


#: What a change did, as the policy and the audit trail name it: a verb's policy action, or
#: one of the canary's own steps.
ChangeAction = Literal[
    "create", "set-image", "scale", "undo", "pause", "resume", "restart", "canary", "canary abort"
]


@dataclass(frozen=True)
class Change:
    """The outcome of a mutation, as kubectl would print it plus what the audit needs."""

    target: Target
    action: ChangeAction
    summary: str  # kubectl's line, e.g. "deployment.apps/web image updated"
    changed: bool
    starts_rollout: bool
    revision_before: int | None
    images_before: tuple[tuple[str, str], ...]
    images_after: tuple[tuple[str, str], ...]
    details: tuple[str, ...] = ()
    #: The object after the change, as the API returned it.
    deployment: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Who else changes this object (a GitOps tool, an autoscaler), for the reply.
    notices: tuple[str, ...] = ()
    #: What kubectl prints on stderr beside its line (its undo warning for an object once
    #: managed with `kubectl apply`, its errors for containers set image could not find).
    warnings: tuple[str, ...] = ()
    #: The Slack user the change was made for (whose identity it used in impersonate mode),
    #: so what continues it (an automatic rollback) acts as them too.
    requester: str = ""
