"""A new verb is one module and one registration (issue 20).

This test declares a throwaway `/rollout annotate DEPLOY KEY=VALUE` here, as a verb module
would, registers it through the path every verb of ``SPECS`` takes (``verbs.register``), and
shows that it parses, renders, round-trips as an approval record, shows its approval card and
runs through the `Executor` on a fake Cluster port, with no other module edited.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import pytest

from bot.domain import kinds
from bot.domain import verbs as cmd
from bot.domain.errors import Refused
from bot.domain.kinds import Kind
from bot.domain.refusals import RolloutRefused
from bot.domain.targets import Actor, Target
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    NAMESPACE,
    REASON,
    Args,
    CommandBase,
    PatchPlan,
    PatchRule,
    VerbSpec,
)
from bot.services.execution import Executor
from bot.services.registry import change_role
from bot.services.rollouts import Rollouts
from bot.services.tools import Tools

pytestmark = pytest.mark.timeout(30)

ALICE = Actor("U0ALICE", "alice", "C0PROD")


# --- the verb module, as bot/domain/verbs/annotate.py would hold it --------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Annotate(CommandBase):
    action: ClassVar[Any] = "annotate"
    is_mutation: ClassVar[bool] = True
    name: str
    kind: Kind = "deployment"
    key: str
    value: str
    namespace: str | None = None
    context: str | None = None
    reason: str | None = None
    break_glass: str | None = None


def _parse(args: Args, max_replicas: int) -> Annotate:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    pair = args.positional(1, "a `KEY=VALUE`")
    args.no_more_than(2)
    key, sep, value = pair.partition("=")
    if not sep or not key:
        args.fail("`annotate` needs `KEY=VALUE`.")
    return Annotate(
        name=name,
        kind=kind,
        key=key,
        value=value,
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _render(command: Annotate) -> list[str]:
    return [
        "annotate",
        kinds.info(command.kind).word(command.name),
        f"{command.key}={command.value}",
    ]


def _current(obj: dict[str, Any], key: str) -> str | None:
    annotations: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(key)


def _plan(command: Annotate, kind: Kind, obj: dict[str, Any], now: datetime) -> PatchPlan:
    if command.key.startswith("kubernetes.io/"):
        raise RolloutRefused("reserved", f"{command.key} is kubectl's to set")
    if _current(obj, command.key) == command.value:
        return PatchPlan(None, "annotated", details=("already set: nothing changed",))
    patch = {"metadata": {"annotations": {command.key: command.value}}}
    return PatchPlan(patch, "annotated", details=(f"{command.key}={command.value}",))


def _check(kind: Kind, obj: dict[str, Any]) -> None:
    """kubectl annotate refuses nothing before it plans."""


def _preview(command: Annotate, obj: dict[str, Any]) -> str:
    return f"annotation `{command.key}`: `{_current(obj, command.key)}` → `{command.value}`"


SPEC = VerbSpec(
    verb="annotate",
    usage="/rollout annotate DEPLOY KEY=VALUE [-n NS] [--reason=TEXT]",
    help="Set an annotation on a workload.",
    command=Annotate,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE, REASON),
    examples=("/rollout annotate web team=payments -n prod",),
    patch=PatchRule(plan=_plan, check=_check, preview=_preview, field_manager="kubectl-annotate"),
)


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def annotate_registered() -> Iterator[None]:
    cmd.register(SPEC)
    yield
    cmd.unregister(SPEC)


def deployment(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "10",
            "annotations": {"deployment.kubernetes.io/revision": "2", **(annotations or {})},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "app:1"}]},
            },
        },
    }


class Cluster:
    """Enough of the Cluster port for a change to one Deployment."""

    def __init__(self) -> None:
        self.obj = deployment()
        self.patches: list[tuple[Any, str]] = []

    def get_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: Any, *, field_manager: str
    ) -> dict[str, Any]:
        self.patches.append((patch, field_manager))
        self.obj["metadata"]["annotations"].update(patch["metadata"].get("annotations", {}))
        return copy.deepcopy(self.obj)


class AuditLog:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def append(self, event: Any) -> None:
        self.events.append(event)


def test_it_parses_renders_and_round_trips_as_a_record() -> None:
    command = cmd.parse_command("annotate sts/db team=payments -n prod --reason=ownership")
    assert command == Annotate(
        name="db",
        kind="statefulset",
        key="team",
        value="payments",
        namespace="prod",
        reason="ownership",
    )
    text = cmd.render_command(command)
    assert text == "annotate statefulset/db team=payments -n prod --reason=ownership"
    assert cmd.parse_command(text) == command
    assert cmd.from_record(cmd.command_record(command)) == command
    assert cmd.parse_command("help annotate") == cmd.Help(verb="annotate")


def test_its_mistakes_are_refused_with_its_usage() -> None:
    with pytest.raises(cmd.CommandError) as refused:
        cmd.parse_command("annotate web team")
    assert refused.value.usage == SPEC.usage
    with pytest.raises(cmd.CommandError) as refused:
        cmd.parse_command("annotate web a=b --replicas=3")
    assert refused.value.usage == SPEC.usage


def test_its_approval_card_is_bound_to_the_object_and_previews_the_change() -> None:
    cluster = Cluster()
    rollouts = Rollouts(cluster)  # type: ignore[arg-type]
    command = cmd.parse_command("annotate web team=payments -n prod")
    role = change_role(type(command))
    assert role is not None
    fingerprint, preview = role.card(Tools(rollouts), command, Target("prod", "web"))
    assert fingerprint == rollouts.binding(Target("prod", "web"), "annotate")
    assert preview == "annotation `team`: `None` → `payments`"
    assert cluster.patches == []


def test_it_runs_through_the_executor_with_an_audit_entry() -> None:
    cluster = Cluster()
    audit = AuditLog()
    executor = Executor(Rollouts(cluster), audit, cluster_name="prod-cluster")  # type: ignore[arg-type]
    command = cmd.parse_command("annotate web team=payments -n prod")
    change = executor.run(command, "prod", ALICE)  # type: ignore[arg-type]
    assert change.summary == "deployment.apps/web annotated"
    assert change.changed and change.details == ("team=payments",)
    assert cluster.patches == [
        (
            {"metadata": {"annotations": {"team": "payments"}, "resourceVersion": "10"}},
            "kubectl-annotate",
        )
    ]
    assert [event.action for event in audit.events] == ["annotate", "annotate"]
    assert audit.events[0].parameters["command"] == "annotate web team=payments -n prod"

    again = executor.run(command, "prod", ALICE)  # type: ignore[arg-type]
    assert not again.changed and again.details == ("already set: nothing changed",)
    assert len(cluster.patches) == 1


def test_its_refusal_is_kubectls_words() -> None:
    executor = Executor(Rollouts(Cluster()), AuditLog(), cluster_name="c")  # type: ignore[arg-type]
    command = cmd.parse_command("annotate web kubernetes.io/x=y -n prod")
    with pytest.raises(Refused) as refused:
        executor.run(command, "prod", ALICE)  # type: ignore[arg-type]
    assert str(refused.value) == "kubernetes.io/x is kubectl's to set"


def test_unregistered_it_is_an_unknown_command() -> None:
    cmd.unregister(SPEC)
    try:
        with pytest.raises(cmd.CommandError, match="unknown command `annotate`"):
            cmd.parse_command("annotate web a=b")
        assert change_role(Annotate) is None
    finally:
        cmd.register(SPEC)
