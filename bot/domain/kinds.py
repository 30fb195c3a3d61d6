"""The three workload kinds the bot works on, and what differs between them.

kubectl names a workload ``KIND/NAME`` (``deploy/web``, ``sts/db``, ``ds/agent``); ``parse_kind``
reads every spelling it accepts. ``KindInfo`` holds the per-kind facts the verbs need: how kubectl
writes the kind, and where its revisions live (ReplicaSets for a Deployment, ControllerRevisions
for the other two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["KINDS", "Kind", "KindInfo", "as_kind", "info", "parse_kind"]

Kind = Literal["deployment", "statefulset", "daemonset"]
KINDS: Final[tuple[Kind, ...]] = ("deployment", "statefulset", "daemonset")


@dataclass(frozen=True)
class KindInfo:
    kind: Kind
    display: str  # StatefulSet
    resource: str  # statefulsets
    short: str  # sts
    #: Whether the revisions are ReplicaSets (a Deployment) rather than ControllerRevisions.
    revisions_in_replica_sets: bool = False
    #: Whether the object has `spec.paused` (kubectl pauses and resumes Deployments only).
    pausable: bool = False
    #: Whether the object has a scale subresource (a DaemonSet runs one pod per node).
    scalable: bool = True
    #: Whether the object has `spec.progressDeadlineSeconds` (a Deployment); for the others
    #: the bot waits a limit of its own.
    progress_deadline: bool = False

    @property
    def group_resource(self) -> str:
        """``statefulsets.apps``, as kubectl names the resource in its errors."""
        return f"{self.resource}.apps"

    def ref(self, name: str) -> str:
        """``statefulset.apps/web``, as kubectl prints the object."""
        return f"{self.kind}.apps/{name}"

    def word(self, name: str) -> str:
        """The target as the grammar writes it back: ``NAME`` for a Deployment, else
        ``statefulset/NAME``."""
        return name if self.kind == "deployment" else f"{self.kind}/{name}"

    def typed(self, name: str) -> str:
        """The target as one types it shortest: ``NAME`` for a Deployment, else ``sts/NAME``."""
        return name if self.kind == "deployment" else f"{self.short}/{name}"


_INFO: Final[dict[str, KindInfo]] = {
    "deployment": KindInfo(
        "deployment",
        "Deployment",
        "deployments",
        "deploy",
        revisions_in_replica_sets=True,
        pausable=True,
        progress_deadline=True,
    ),
    "statefulset": KindInfo("statefulset", "StatefulSet", "statefulsets", "sts"),
    "daemonset": KindInfo("daemonset", "DaemonSet", "daemonsets", "ds", scalable=False),
}

# Every way kubectl accepts to write the kind before the slash (singular, plural, short name,
# each optionally qualified by the API group).
_SPELLINGS: Final[dict[str, Kind]] = {
    spelling: info.kind
    for info in _INFO.values()
    for base in (info.kind, info.resource, info.short)
    for spelling in (base, f"{base}.apps", f"{base}.v1.apps")
}


def info(kind: str) -> KindInfo:
    """The naming of ``kind`` (one of KINDS); KeyError for anything else."""
    return _INFO[kind]


def parse_kind(spelling: str) -> Kind | None:
    """``sts`` / ``statefulsets`` / ``StatefulSet.apps`` → ``"statefulset"``; None if unknown."""
    return _SPELLINGS.get(spelling.lower())


def as_kind(value: str) -> Kind:
    """``value`` as a Kind, for a kind read back from a record; ValueError if it is none."""
    if value not in _INFO:
        raise ValueError(f"not a workload kind: {value!r}")
    return _INFO[value].kind
