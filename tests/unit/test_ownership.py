"""The bot claims the generation a write will make *before* the write (issue 14), so a watch
event for it is recognised as the bot's own whenever it arrives; confirmed after, released when
the write certainly did not happen."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.domain.errors import Conflict, OutcomeUnknown, RolloutBotError
from bot.domain.policy import Policy
from bot.domain.targets import Actor, Target
from bot.services.progress.context_tracker import ProgressTracker
from bot.services.rollouts import Rollouts

pytestmark = pytest.mark.timeout(30)

WEB = Target("prod", "web")
ALICE = Actor("U0ALICE", "alice", "C0PROD")


def deployment(generation: int = 3) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "u-1",
            "generation": generation,
            "resourceVersion": "10",
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "app:1"}]},
            },
        },
        "status": {"observedGeneration": generation},
    }


class Ledger:
    """Ownership that remembers what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.owned: set[int] = set()

    def claim(self, uid: str, generation: int) -> None:
        self.calls.append(("claim", generation))
        self.owned.add(generation)

    def mark_ours(self, uid: str, generation: int) -> None:
        self.calls.append(("mark_ours", generation))
        self.owned.add(generation)

    def release(self, uid: str, generation: int) -> None:
        self.calls.append(("release", generation))
        self.owned.discard(generation)


class Cluster:
    """Enough of the Cluster port for one set image; `fail` is raised by the PATCH."""

    def __init__(self, ledger: Ledger, fail: RolloutBotError | None = None) -> None:
        self.ledger = ledger
        self.fail = fail
        self.claimed_at_write: list[bool] = []

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return deployment()

    def get_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return deployment()

    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: Any, *, field_manager: str
    ) -> dict[str, Any]:
        return self.patch_deployment(namespace, name, patch, field_manager=field_manager)

    def patch_deployment(
        self, namespace: str, name: str, patch: Any, *, field_manager: str
    ) -> dict[str, Any]:
        self.claimed_at_write.append(4 in self.ledger.owned)
        if self.fail is not None:
            raise self.fail
        updated = copy.deepcopy(deployment(4))
        updated["status"]["observedGeneration"] = 3
        return updated


def set_image(cluster: Cluster, ledger: Ledger) -> None:
    rollouts = Rollouts(cluster, claims=ledger)  # type: ignore[arg-type]
    rollouts.set_image(WEB, [("web", "app:2")], ALICE, None)


def test_the_next_generation_is_claimed_before_the_write_and_confirmed_after() -> None:
    ledger = Ledger()
    cluster = Cluster(ledger)
    set_image(cluster, ledger)
    assert cluster.claimed_at_write == [True]
    assert ledger.calls == [("claim", 4), ("mark_ours", 4)]


def test_a_write_that_certainly_failed_releases_its_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.services.writes.CONFLICT_BACKOFF", 0.0)
    ledger = Ledger()
    cluster = Cluster(ledger, fail=Conflict("changed"))
    with pytest.raises(Conflict):
        set_image(cluster, ledger)
    assert ledger.owned == set()
    assert ledger.calls == [("claim", 4), ("release", 4)] * 5


def test_a_write_with_an_unknown_outcome_keeps_its_claim() -> None:
    ledger = Ledger()
    cluster = Cluster(ledger, fail=OutcomeUnknown("no answer"))
    with pytest.raises(OutcomeUnknown):
        set_image(cluster, ledger)
    assert ledger.calls == [("claim", 4)]
    assert ledger.owned == {4}


def test_a_broken_ledger_never_stops_a_change() -> None:
    class Broken(Ledger):
        def claim(self, uid: str, generation: int) -> None:
            raise ConnectionError("redis is down")

    ledger = Broken()
    cluster = Cluster(ledger)
    set_image(cluster, ledger)
    assert cluster.claimed_at_write == [False]


# -- on_failure belongs to the rule that covers the action that started the rollout -------------


def tracker_with(policy: Policy) -> ProgressTracker:
    return ProgressTracker(
        publisher=None,  # type: ignore[arg-type]
        cluster=None,  # type: ignore[arg-type]
        watches=None,  # type: ignore[arg-type]
        rollouts=None,  # type: ignore[arg-type]
        registry=None,  # type: ignore[arg-type]
        leases=None,  # type: ignore[arg-type]
        policy=policy,
    )


def test_on_failure_comes_only_from_a_rule_covering_the_action() -> None:
    policy = Policy.model_validate(
        {
            "approvals": [
                {
                    "namespaces": ["prod"],
                    "actions": ["restart"],
                    "approvers": ["U0BOB"],
                    "on_failure": "rollback",
                },
                {"namespaces": ["prod"], "actions": ["undo"], "approvers": ["U0BOB"]},
            ]
        }
    )
    tracker = tracker_with(policy)
    assert tracker._on_failure_for("restart", "prod") == "rollback"
    # The namespace is covered by a rollback rule, but not for this action.
    assert tracker._on_failure_for("set-image", "prod") == "notify"
    assert tracker._on_failure_for("undo", "prod") == "notify"
    assert tracker._on_failure_for("restart", "staging") == "notify"
