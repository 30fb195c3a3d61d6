"""What the read verbs answer: `list`, `status`, `history`, `diff`, `approvals`, `audit`.

The use cases build them from the cluster; the Slack surface renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.approval import ApprovalRequest
from bot.domain.audit import AuditEntry
from bot.domain.kinds import Kind
from bot.domain.pods import PodSummary, ReplicaSetSummary
from bot.domain.revisions import Revision
from bot.domain.status import RolloutStatus
from bot.domain.targets import Target
from bot.domain.templates import TemplateDiff


@dataclass(frozen=True)
class DeploymentRow:
    name: str
    ready: str
    updated: int
    available: int
    images: tuple[tuple[str, str], ...]
    revision: int | None
    status: RolloutStatus
    kind: Kind = "deployment"


@dataclass(frozen=True)
class StatusView:
    """For a StatefulSet or DaemonSet, `replica_sets` lists its ControllerRevisions (the
    summary's desired/ready count the pods of that revision)."""

    target: Target
    status: RolloutStatus
    paused_template_pending: bool
    replica_sets: tuple[tuple[ReplicaSetSummary, bool], ...]  # (summary, is_current)
    pods: tuple[PodSummary, ...]
    warnings: tuple[str, ...]
    conditions: tuple[tuple[str, str, str], ...]  # (type, status, reason)


@dataclass(frozen=True)
class HistoryView:
    target: Target
    revisions: tuple[Revision, ...]
    detail: Revision | None = None
    described: str | None = None
    #: The revision asked for with `--revision=N` (kubectl's header names it).
    requested: int | None = None


@dataclass(frozen=True)
class DiffView:
    target: Target
    old: int
    new: int
    diff: TemplateDiff


@dataclass(frozen=True)
class Listing:
    namespace: str
    rows: tuple[DeploymentRow, ...]
    #: The cluster, when several are served ("" otherwise).
    context: str = ""


@dataclass(frozen=True)
class ApprovalList:
    #: None: every namespace the user may see from this channel.
    namespace: str | None
    requests: tuple[ApprovalRequest, ...]
    #: The cluster, when several are served and the list is of one ("" otherwise).
    context: str = ""


@dataclass(frozen=True)
class AuditList:
    #: What the entries are about, for the heading (`prod/web` or `namespace prod`).
    subject: str
    entries: tuple[AuditEntry, ...]
