"""The ports: what the use cases need from the world outside, declared on the services' side.

Services type their collaborators with these protocols, never with an adapter class, so a
service reads without Redis, Slack or Kubernetes in mind and a test can hand it any object of
the right shape. The adapters (`bot.adapters.*`) implement them structurally: they never import
this module, and the composition root (`bot.runtime`) is the only place that names both.
tests/unit/test_ports.py checks that each adapter still has every method its port names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.domain.approval import ApprovalOutcome, ApprovalRequest, ApprovalState
from bot.domain.audit import AuditEntry, AuditEvent, TrimResult
from bot.domain.canary import CanaryRecord
from bot.domain.freezes import AdHocFreeze
from bot.domain.identity import AccessReview, KubeIdentity, SlackPerson
from bot.domain.promotion import PromotionState
from bot.domain.tracking import TrackedRollout

#: A Kubernetes object in the API's own JSON shape (camelCase), as it crosses the cluster port.
Json = dict[str, Any]


class Cluster(Protocol):
    """What the use cases need from Kubernetes: namespaced workloads (Deployments,
    StatefulSets, DaemonSets; `kind` is one of `bot.domain.kinds.KINDS`) and what they own,
    and the HorizontalPodAutoscalers that may scale them."""

    name: str

    def get_deployment(self, namespace: str, name: str) -> Json: ...
    def list_deployments(self, namespace: str) -> list[Json]: ...
    def get_workload(self, kind: str, namespace: str, name: str) -> Json: ...
    def list_workloads(self, kind: str, namespace: str) -> list[Json]: ...
    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: Json | list[Json], *, field_manager: str
    ) -> Json: ...
    def list_controller_revisions(self, namespace: str, selector: str) -> list[Json]: ...
    def list_autoscalers(self, namespace: str) -> list[Json]: ...
    def list_replica_sets(self, namespace: str, selector: str) -> list[Json]: ...
    def list_pods(self, namespace: str, selector: str) -> list[Json]: ...
    def list_events(self, namespace: str, involved_names: set[str]) -> list[Json]: ...
    def create_deployment(self, namespace: str, manifest: Json) -> Json: ...
    def patch_deployment(
        self, namespace: str, name: str, patch: Json | list[Json], *, field_manager: str
    ) -> Json: ...
    def delete_deployment(self, namespace: str, name: str, *, uid: str) -> None: ...
    def list_services(self, namespace: str) -> list[Json]: ...
    def namespace_exists(self, namespace: str) -> bool | None: ...
    def ready(self) -> bool: ...


class Watch(Protocol):
    """One running watch on a namespace's workloads of one kind."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


#: Opens (not yet starts) a watch on `namespace`'s workloads of `kind`:
#: `open(namespace, on_event, kind)`, where `on_event(type, object)` gets ADDED (also for every
#: object on each (re)list), MODIFIED and DELETED. The runtime binds it to one cluster.
WatchOpener = Callable[[str, Callable[[str, Json], None], str], Watch]


class AuditLog(Protocol):
    """The append-only, hash-chained audit trail: every change and decision is appended."""

    def append(self, event: AuditEvent) -> AuditEntry: ...
    def recent(
        self,
        limit: int = 20,
        namespace: str | None = None,
        deployment: str | None = None,
        cluster: str | None = None,
    ) -> list[AuditEntry]: ...
    def trim(
        self,
        max_entries: int | None = None,
        max_age: timedelta | None = None,
        *,
        reason: str = ...,
    ) -> TrimResult: ...


class ApprovalStore(Protocol):
    """Approval requests and their state machine; each transition is atomic in the store, so
    any replica may take any click and exactly one wins."""

    def create(self, request: ApprovalRequest) -> ApprovalRequest: ...
    def get(self, approval_id: str) -> ApprovalRequest | None: ...
    def pending(self, namespace: str | None = None) -> list[ApprovalRequest]: ...
    def active(self) -> list[ApprovalRequest]: ...
    def approve(
        self,
        approval_id: str,
        user_id: str,
        user_name: str,
        now: datetime | None = None,
        *,
        sig: str = "",
        decision_seal: str = "",
    ) -> ApprovalOutcome: ...
    def reject(
        self,
        approval_id: str,
        user_id: str,
        user_name: str,
        reason: str = "",
        now: datetime | None = None,
        *,
        decision_seal: str = "",
    ) -> ApprovalOutcome: ...
    def cancel(
        self,
        approval_id: str,
        user_id: str,
        now: datetime | None = None,
        *,
        user_name: str = "",
        decision_seal: str = "",
    ) -> ApprovalOutcome: ...
    def void(
        self, approval_id: str, why: str, now: datetime | None = None, *, result_seal: str = ""
    ) -> ApprovalOutcome: ...
    def mark(
        self,
        approval_id: str,
        from_state: ApprovalState,
        to_state: ApprovalState,
        result_message: str | None = None,
        *,
        result_seal: str = "",
    ) -> ApprovalOutcome: ...
    def set_message(
        self, approval_id: str, channel: str, ts: str, *, card_seal: str = ""
    ) -> ApprovalRequest | None: ...
    def expire_due(self, now: datetime | None = None) -> list[ApprovalRequest]: ...


class Leases(Protocol):
    """Short renewable locks, so exactly one replica drives each rollout or canary."""

    def hold(self, rollout_id: str) -> bool: ...
    def release(self, rollout_id: str) -> None: ...
    def held(self) -> list[str]: ...


class Directory(Protocol):
    """Who is who in the Slack workspace, as far as access decisions need it."""

    def is_full_member(self, user_id: str) -> bool: ...
    def groups_of(self, user_id: str, groups: Iterable[str]) -> frozenset[str]: ...
    def members(self, group_id: str) -> frozenset[str]: ...


class People(Protocol):
    """A Slack user's profile, for mapping a person to a Kubernetes identity."""

    def person(self, user_id: str, *, with_usergroups: bool = False) -> SlackPerson: ...
    def everyone(self, limit: int = 1000) -> list[SlackPerson]: ...


class PersonClusters(Protocol):
    """One cluster reached as a person (policy `identity.mode: impersonate`), so Kubernetes
    RBAC decides and the API server's audit log names them."""

    def review(
        self,
        identity: KubeIdentity,
        verb: str,
        resource: str,
        group: str,
        namespace: str,
        name: str,
    ) -> AccessReview:
        """May `identity` `verb` the object? Raises Forbidden when the bot may not act as
        them, ClusterUnavailable when the API server cannot say."""

    def as_person(self, bot: Cluster, identity: KubeIdentity, *, reads_as_person: bool) -> Cluster:
        """`bot` (the bot's own view of this cluster) with writes, and with `reads_as_person`
        reads too, made as `identity`."""


class FreezeStore(Protocol):
    """Ad-hoc freezes, one per (cluster, namespace)."""

    def put(self, freeze: AdHocFreeze, now: datetime) -> None: ...
    def get(self, cluster: str, namespace: str) -> AdHocFreeze | None: ...
    def delete(self, cluster: str, namespace: str) -> AdHocFreeze | None: ...
    def all(self) -> list[AdHocFreeze]: ...


class PromotionStore(Protocol):
    """Promotions and each pipeline's live one; writes are compare-and-set and raise
    `bot.domain.errors.StoreConflict` when someone else wrote first."""

    def get(self, promotion_id: str) -> PromotionState | None: ...
    def live_of(self, pipeline: str) -> PromotionState | None: ...
    def live_ids(self) -> list[str]: ...
    def recent(self) -> list[PromotionState]: ...
    def create(self, state: PromotionState, replacing: PromotionState | None) -> None: ...
    def save(self, state: PromotionState) -> PromotionState: ...
    def stepping(self, promotion_id: str) -> AbstractContextManager[bool]: ...


class CanaryStore(Protocol):
    """Running canaries and how each ended."""

    def save(self, record: CanaryRecord) -> None: ...
    def get(self, canary_id: str) -> CanaryRecord | None: ...
    def active(self) -> list[CanaryRecord]: ...
    def end(self, canary_id: str, verdict: str, why: str) -> bool: ...
    def ending(self, canary_id: str) -> tuple[str, str] | None: ...
    def find(self, context: str, namespace: str, deployment: str) -> CanaryRecord | None: ...


class RolloutRegistry(Protocol):
    """The rollouts being followed in one context, and the once-only marks that keep replicas
    from announcing, or rolling back, the same thing twice."""

    def save(self, tracked: TrackedRollout) -> None: ...
    def active(self) -> list[TrackedRollout]: ...
    def is_ours(self, uid: str, generation: int) -> bool: ...
    def first_rollback(self, rollout_id: str) -> bool: ...
    def first_notice(self, uid: str, revision: int) -> bool: ...


__all__ = [
    "ApprovalStore",
    "AuditLog",
    "CanaryStore",
    "Cluster",
    "Directory",
    "FreezeStore",
    "Json",
    "Leases",
    "People",
    "PersonClusters",
    "PromotionStore",
    "RolloutRegistry",
    "Watch",
    "WatchOpener",
]
