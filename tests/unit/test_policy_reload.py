"""PolicyReloader: a valid new version is applied and audited, an invalid one keeps the old
policy and is reported with file:line, an unchanged file does nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.domain.errors import StoreUnavailable
from bot.domain.policy import Policy
from bot.observability.metrics import Metrics
from bot.services.policy_reload import PolicyReloader

READS = textwrap.dedent(
    """\
    permissions:
      - users: ["*"]
        namespaces: ["*"]
        actions: [list, status]
    """
)
WRITES = READS + ("  - users: [U0ALICE]\n    namespaces: [staging]\n    actions: [scale]\n")
BROKEN = READS.replace("actions: [list, status]", "actions: [list, fly]")


class FakeAudit:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[Any] = []
        self.fail = fail

    def append(self, event: Any) -> Any:
        if self.fail:
            raise StoreUnavailable("audit append", cause="ConnectionError")
        self.events.append(event)
        return event


def gauge(metrics: Metrics, name: str, **labels: str) -> float:
    text, _ = metrics.exposition()
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[Policy], FakeAudit, Metrics, PolicyReloader]:
    path = tmp_path / "policy.yaml"
    path.write_text(READS)
    applied: list[Policy] = []
    audit = FakeAudit()
    metrics = Metrics()
    reloader = PolicyReloader(path, [applied.append], audit, metrics, cluster_name="c1")  # type: ignore[arg-type]
    return path, applied, audit, metrics, reloader


def test_an_unchanged_file_does_nothing(setup: Any) -> None:
    _, applied, audit, _, reloader = setup
    assert reloader.check() is False
    assert applied == [] and audit.events == []
    assert reloader.status() == {"policy": "ok"}


def test_a_valid_edit_is_applied_once_and_audited(setup: Any) -> None:
    path, applied, audit, metrics, reloader = setup
    path.write_text(WRITES)
    assert reloader.check() is True
    assert reloader.check() is False, "the same version is applied once"
    (policy,) = applied
    assert policy.is_allowed("U0ALICE", frozenset(), "scale", "staging")
    (event,) = audit.events
    assert event.event == "policy_reload" and event.outcome == "applied" and event.cluster == "c1"
    assert event.parameters["file"] == str(path) and len(event.parameters["sha256"]) == 64
    assert gauge(metrics, "rollout_bot_policy_reloads_total", result="applied") == 1


def test_an_invalid_edit_keeps_the_old_policy_and_says_where(setup: Any) -> None:
    path, applied, audit, metrics, reloader = setup
    path.write_text(BROKEN)
    assert reloader.check() is False
    assert applied == [] and audit.events == []
    status = reloader.status()
    assert status["policy"] == "invalid"
    (problem,) = status["policy_problems"]
    assert problem.startswith(f"{path}:4:") and "fly" in problem
    assert gauge(metrics, "rollout_bot_policy_valid") == 0
    path.write_text(WRITES)
    assert reloader.check() is True
    assert reloader.status() == {"policy": "ok"}
    assert gauge(metrics, "rollout_bot_policy_valid") == 1


def test_a_valid_edit_applies_even_when_the_audit_is_down(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(READS)
    applied: list[Policy] = []
    reloader = PolicyReloader(
        path, [applied.append], FakeAudit(fail=True), Metrics(), cluster_name="c"
    )  # type: ignore[arg-type]
    path.write_text(WRITES)
    assert reloader.check() is True and len(applied) == 1


def test_a_vanished_file_keeps_the_policy(setup: Any) -> None:
    path, applied, _, _, reloader = setup
    path.unlink()
    assert reloader.check() is False and applied == []
