"""The cluster a workload lives in, the workload itself and what it owns (its revisions).

The base of the use cases in `bot.services.rollouts`: picking a context's cluster, reading
an object with "not found" answers that say what to do, and the revisions of any kind.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, Self, TypeVar, cast

from bot.domain import kinds
from bot.domain.errors import (
    Forbidden,
    NotFound,
    Refused,
    UnknownContext,
)
from bot.domain.refusals import RolloutRefused
from bot.domain.revisions import (
    Revision,
    owned_replica_sets,
    owned_revisions,
)
from bot.domain.selectors import selector_string
from bot.domain.targets import Target
from bot.services.ports import Cluster, Json

T = TypeVar("T")


class Ownership(Protocol):
    """Where the bot records which generations of a Deployment it made (shared by replicas).

    A generation is claimed *before* the write that makes it, so a watch event for it is
    recognised as the bot's own whenever it arrives; confirmed after the write, released when
    the write certainly did not happen."""

    def claim(self, uid: str, generation: int) -> None: ...

    def mark_ours(self, uid: str, generation: int) -> None: ...

    def release(self, uid: str, generation: int) -> None: ...


class PolicyLike(Protocol):
    """What the verbs read from the policy in force."""

    @property
    def gitops(self) -> str: ...


class WorkloadAccess:
    """kubectl's verbs on one or several clusters: a `Target`'s `context` picks the cluster."""

    def __init__(
        self,
        cluster: Cluster | Mapping[str, Cluster],
        *,
        clock: Callable[[], datetime] | None = None,
        gitops: str = "warn",
        claims: Ownership | Mapping[str, Ownership] | None = None,
        default_context: str = "",
    ) -> None:
        if isinstance(cluster, Mapping):
            self.clusters: dict[str, Cluster] = dict(cluster)
            self.default_context = default_context or next(iter(self.clusters))
        else:
            self.clusters = {default_context: cluster}
            self.default_context = default_context
        #: The policy's `gitops` setting: "warn" or "refuse" a change to a GitOps-managed object.
        self.gitops = gitops
        self._now = clock or (lambda: datetime.now(UTC))
        self._claims = claims

    def use_policy(self, policy: PolicyLike) -> None:
        """A reloaded policy: its `gitops` setting applies to every change from now on."""
        self.gitops = policy.gitops

    @property
    def cluster(self) -> Cluster:
        """The default context's cluster."""
        return self.clusters[self.default_context]

    def through(self, context: str, cluster: Cluster) -> Self:
        """The same verbs with `context`'s cluster reached through another client (as a
        person, `bot.services.identity`); the ownership records are shared."""
        twin = copy.copy(self)
        twin.clusters = {**self.clusters, (context or self.default_context): cluster}
        return twin

    def on(self, context: str) -> Cluster:
        """The cluster of a context ("" is the default one)."""
        try:
            return self.clusters[context or self.default_context]
        except KeyError:
            raise UnknownContext(context, tuple(self.clusters)) from None

    def get(self, target: Target) -> Json:
        """The object, or NotFound naming close matches / a missing namespace."""
        try:
            return self.on(target.context).get_workload(target.kind, target.namespace, target.name)
        except NotFound:
            raise self._not_found(target) from None
        except Forbidden:
            # Per-namespace RoleBindings make a missing namespace answer 403, not 404.
            if self.on(target.context).namespace_exists(target.namespace) is False:
                raise namespace_missing(target.namespace) from None
            raise

    def revisions(self, target: Target, obj: Json | None = None) -> tuple[Revision, ...]:
        """kubectl's revision list for any kind (ReplicaSets or ControllerRevisions)."""
        obj = self.get(target) if obj is None else obj
        return tuple(kinds.info(target.kind).history(obj, self.revision_objects(target, obj)))

    def revision_objects(self, target: Target, obj: Json) -> list[Json]:
        """What holds the object's revisions: the ReplicaSets a Deployment owns, or the
        ControllerRevisions a StatefulSet or DaemonSet controls."""
        if kinds.info(target.kind).revisions_in_replica_sets:
            return self.owned_replica_sets(obj, target.context)
        return self.owned_revisions(target, obj)

    def current_revision(self, target: Target, obj: Json | None = None) -> int | None:
        """The workload's current revision, as `history` marks it (None when unreadable)."""
        return self._revision(target, self.get(target) if obj is None else obj)

    def _revision(self, target: Target, obj: Json) -> int | None:
        """The current revision: the annotation of a Deployment, the ControllerRevision whose
        template is live for the others (None when it cannot be read)."""
        try:
            return kinds.info(target.kind).current_revision(
                obj, lambda: self.revisions(target, obj)
            )
        except (Forbidden, NotFound):
            return None

    def owned_revisions(self, target: Target, obj: Json) -> list[Json]:
        """The ControllerRevisions this StatefulSet or DaemonSet controls."""
        revisions = self.on(target.context).list_controller_revisions(
            target.namespace, selector_string(obj)
        )
        return cast(list[Json], owned_revisions(obj, revisions))

    def owned_replica_sets(self, deployment: Json, context: str = "") -> list[Json]:
        namespace = deployment["metadata"]["namespace"]
        replica_sets = self.on(context).list_replica_sets(namespace, selector_string(deployment))
        return cast(list[Json], owned_replica_sets(deployment, replica_sets))

    def _not_found(self, target: Target) -> NotFound:
        if self.on(target.context).namespace_exists(target.namespace) is False:
            return namespace_missing(target.namespace)
        try:
            names = [
                d["metadata"]["name"]
                for d in self.on(target.context).list_workloads(target.kind, target.namespace)
            ]
        except Exception:  # suggestions are best effort; the answer is "not found" either way
            names = []
        close = difflib.get_close_matches(target.name, names, n=3, cutoff=0.6)
        hint = (
            " Did you mean " + ", ".join(f"`{n}`" for n in close) + "?"
            if close
            else " `/rollout list -n " + target.namespace + "` shows what is there."
        )
        where = f" of cluster `{target.context}`" if target.context else ""
        return NotFound(
            f"{target.display} `{target.name}` was not found in namespace "
            f"`{target.namespace}`{where}.{hint}"
        )

    @contextmanager
    def _namespace_context(self, namespace: str, context: str = "") -> Iterator[None]:
        try:
            yield
        except (NotFound, Forbidden):
            # Forbidden too: per-namespace RoleBindings make a missing namespace answer 403.
            if self.on(context).namespace_exists(namespace) is False:
                raise namespace_missing(namespace) from None
            raise


def already_exists(target: Target) -> Refused:
    # kubectl create's words, then what to do instead.
    return Refused(
        f'failed to create deployment: deployments.apps "{target.name}" already exists\n'
        f"Nothing was changed in `{target.namespace}`; use `/rollout set image` to change it."
    )


def namespace_missing(namespace: str) -> NotFound:
    return NotFound(
        f"Namespace `{namespace}` does not exist. Nothing was changed; "
        f"pass an existing one with `-n NAMESPACE`."
    )


# What each action's approval is bound to besides the pod template: the fields it changes.


def container_images(deployment: Json) -> tuple[tuple[str, str], ...]:
    spec: dict[str, Any] = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return tuple((c.get("name", ""), c.get("image", "")) for c in spec.get("containers", []))


def current_number(revisions: Sequence[Revision]) -> int | None:
    return next((r.number for r in revisions if r.is_current), None)


def find_revision(
    revisions: Sequence[Revision], number: int, *, kubectl_verb: bool = True
) -> Revision:
    for revision in revisions:
        if revision.number == number:
            return revision
    # kubectl's words for its own verb (they do not repeat the number); `diff` is the bot's
    # own and names it. Then what there is, on a line of its own.
    words = (
        "unable to find the specified revision"
        if kubectl_verb
        else f"unable to find revision {number} in history"
    )
    raise Refused(words + revisions_line(revisions))


def revisions_line(revisions: Sequence[Revision]) -> str:
    """The line the bot adds under kubectl's "unable to find" errors: the revisions there are."""
    known = ", ".join(str(r.number) for r in revisions) or "none"
    return f"\nrevisions in history: {known}"


def refusal_to_error(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except RolloutRefused as exc:
        raise Refused(exc.message) from None
