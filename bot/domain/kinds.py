"""The three workload kinds the bot works on, and what differs between them.

kubectl names a workload ``KIND/NAME`` (``deploy/web``, ``sts/db``, ``ds/agent``); ``parse_kind``
reads every spelling it accepts. ``KindInfo`` holds the per-kind facts the verbs and the progress
engine need: how kubectl writes the kind, where its revisions live (ReplicaSets for a Deployment,
ControllerRevisions for the other two) and how its history and current revision are read from
them, which verbs it supports, and who judges a rollout of it (the Deployment controller
against its progress deadline; for the other two, the bot). The services ask this table, never
``kind == ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from bot.domain.revisions import Revision, deployment_history, revision_of, workload_history

__all__ = [
    "KINDS",
    "STATEFULSET_FORCED_ROLLBACK",
    "Kind",
    "KindInfo",
    "as_kind",
    "has_progress_deadline",
    "info",
    "parse_kind",
    "revision_on_object",
    "stuck_pod_advice",
]

Json = dict[str, Any]

Kind = Literal["deployment", "statefulset", "daemonset"]
KINDS: Final[tuple[Kind, ...]] = ("deployment", "statefulset", "daemonset")

# Kubernetes' documented "forced rollback": the StatefulSet controller does not replace a pod
# stuck on a broken revision by itself, not even after an undo (kubectl's neither).
STATEFULSET_FORCED_ROLLBACK: Final = (
    "A StatefulSet does not replace a pod stuck on a broken revision by itself, not even after "
    "an undo: once the template is good, delete that pod so the controller recreates it."
)


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
    #: Whether the controller judges a rollout against a progress deadline of its own (a
    #: Deployment's `progressDeadlineSeconds` and Progressing condition). kubectl waits forever
    #: on the others, so the bot sets them a deadline and calls a stuck pod a failure.
    progress_deadline: bool = False
    #: Whether the object carries its revision number (a Deployment's revision annotation);
    #: the others' is read from their ControllerRevisions.
    revision_on_object: bool = False
    #: What to do about a pod stuck on a broken revision, when the controller will not.
    stuck_pod_advice: str = ""
    #: Whether a bare ``NAME`` in the grammar (and in a target's text) means this kind.
    bare_name: bool = False
    #: Whether `list` fails when it may not list this kind. The bot's RBAC has always covered
    #: Deployments; the other kinds came later, and a bot upgraded before its RBAC still lists
    #: what it may read.
    required_in_listing: bool = False
    #: kubectl's revision list, from the object and the revisions it owns (ReplicaSets or
    #: ControllerRevisions, as ``revisions_in_replica_sets`` says).
    history: Callable[[Json, Iterable[Json]], list[Revision]] = workload_history

    def current_revision(self, obj: Json, history: Callable[[], Sequence[Revision]]) -> int | None:
        """The current revision: the object's own (a Deployment's annotation), else the
        revision whose template is live (``history`` is read only then; None when none is)."""
        if self.revision_on_object:
            return revision_of(obj)
        return next((r.number for r in history() if r.is_current), None)

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
        return name if self.bare_name else f"{self.kind}/{name}"

    def typed(self, name: str) -> str:
        """The target as one types it shortest: ``NAME`` for a Deployment, else ``sts/NAME``."""
        return name if self.bare_name else f"{self.short}/{name}"


_INFO: Final[dict[str, KindInfo]] = {
    "deployment": KindInfo(
        "deployment",
        "Deployment",
        "deployments",
        "deploy",
        revisions_in_replica_sets=True,
        pausable=True,
        progress_deadline=True,
        revision_on_object=True,
        bare_name=True,
        required_in_listing=True,
        history=deployment_history,
    ),
    "statefulset": KindInfo(
        "statefulset",
        "StatefulSet",
        "statefulsets",
        "sts",
        stuck_pod_advice=STATEFULSET_FORCED_ROLLBACK,
    ),
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


# Records read back (a tracked rollout) carry the kind as a plain string: the questions below
# answer for any string, an unknown one getting the answer of a kind the bot judges itself.


def has_progress_deadline(kind: str) -> bool:
    """Whether the controller judges a rollout of `kind` against its own progress deadline
    (a Deployment); else the bot's deadline and stuck pods decide."""
    found = _INFO.get(kind)
    return found is not None and found.progress_deadline


def revision_on_object(kind: str) -> bool:
    """Whether an object of `kind` carries its revision number itself (a Deployment)."""
    found = _INFO.get(kind)
    return found is not None and found.revision_on_object


def stuck_pod_advice(kind: str) -> str:
    """What to tell about a pod of `kind` stuck on a broken revision ("" for nothing more)."""
    found = _INFO.get(kind)
    return found.stuck_pod_advice if found is not None else ""
