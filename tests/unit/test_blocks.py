"""Every message the bot builds stays within Slack's Block Kit limits, however big the input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.approval import ApprovalRequest
from bot.domain.pods import PodSummary, ReplicaSetSummary
from bot.domain.revisions import Revision
from bot.domain.status import rollout_status
from bot.domain.targets import Actor, Change, Target
from bot.domain.templates import TemplateDiff
from bot.domain.tracking import TrackedRollout
from bot.domain.views import DeploymentRow, DiffView, HistoryView, StatusView
from handlers.views.cards import APPROVE_ACTION, CANCEL_ACTION, REJECT_ACTION, approval_card
from handlers.views.changes import change_message
from handlers.views.message import Message
from handlers.views.progress import PAUSE_ACTION, ROLLBACK_ACTION, progress_bar, progress_message
from handlers.views.reads import deployments_message, diff_message, history_message, status_message
from tests.devkit.slack.block_kit import block_kit_errors

TARGET = Target("prod", "web")


def deployment(name: str = "web", replicas: int = 3) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "prod",
            "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        },
    }


STATUS = rollout_status(deployment())


def assert_fits(message: Message) -> None:
    assert block_kit_errors(message.blocks) == []
    assert len(message.blocks) <= 50
    assert 0 < len(message.text) <= 3000


def test_status_with_hundreds_of_pods_is_cut_with_a_count() -> None:
    pods = tuple(
        PodSummary(f"web-7d4b9c-{i:05d}", "0/1", "ImagePullBackOff", i, 30, "7d4b9c", "n")
        for i in range(400)
    )
    replica_sets = tuple(
        (ReplicaSetSummary(f"web-{i}", i, (("web", "nginx:" + "x" * 80),), 3, 1), i == 0)
        for i in range(60)
    )
    view = StatusView(TARGET, STATUS, False, replica_sets, pods, ("Pod/x: Failed boom",) * 50, ())
    message = status_message(view)
    assert_fits(message)
    text = str(message.blocks)
    assert "more lines not shown" in text
    assert "Waiting for deployment" in text


def test_long_diff_is_cut_and_says_how_much_was_left_out() -> None:
    diff = TemplateDiff("\n".join(f"+  line {i} " + "y" * 90 for i in range(500)), 440, True)
    message = diff_message(DiffView(TARGET, 1, 2, diff))
    assert_fits(message)
    assert "440 more diff lines were left out" in str(message.blocks)


def test_user_text_cannot_ping_the_channel_or_forge_links() -> None:
    change = Change(
        TARGET, "scale", "deployment.apps/web scaled", True, False, 1, (), (), ("replicas: 1 → 3",)
    )
    message = change_message(change, Actor("U1", "alice", "C1"), "<!channel> <http://x|y>")
    assert_fits(message)
    assert "<!channel>" not in str(message.blocks)
    assert "&lt;!channel&gt;" in str(message.blocks)


def test_approval_card_with_a_huge_preview_and_many_approvers_fits() -> None:
    now = datetime.now(UTC)
    request = ApprovalRequest(
        requester_id="U0ALICE",
        requester_name="alice",
        channel="C1",
        action="set-image",
        cluster="c",
        namespace="prod",
        deployment="web",
        parameters={
            "command": "set image web nginx=nginx:1.19 -n prod",
            "preview": "```\n" + "-  - image: a\n" * 400 + "```",
        },
        reason="r" * 300,
        required=2,
        approvers=[f"U{i:08d}" for i in range(40)],
        created_at=now,
        expires_at=now + timedelta(minutes=30),
    )
    message = approval_card(request)
    assert_fits(message)
    actions = [b for b in message.blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [
        APPROVE_ACTION,
        REJECT_ACTION,
        CANCEL_ACTION,
    ]
    assert all("confirm" in e for e in actions[0]["elements"][:2])


def test_progress_failure_offers_roll_back_and_pause() -> None:
    tracked = TrackedRollout(
        id="uid-2",
        channel="C1",
        thread_ts="1.0",
        message_ts="2.0",
        namespace="prod",
        deployment="web",
        uid="uid",
        generation=2,
        title="set image",
        started_at=0.0,
        deadline_seconds=600,
    )
    failed = rollout_status(
        {
            **deployment(),
            "status": {
                **deployment()["status"],  # type: ignore[dict-item]
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ],
            },
        }
    )
    message = progress_message(
        tracked,
        failed,
        42.0,
        verdict="failed",
        reasons=("ImagePullBackOff",),
        warnings=("w",) * 30,
        revision=7,
    )
    assert_fits(message)
    buttons = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [e["action_id"] for e in buttons] == [ROLLBACK_ACTION, PAUSE_ACTION]
    # Tied to the revision that failed: a click after a newer deploy does not act on it.
    assert {e["value"] for e in buttons} == {"prod/web@7"}
    assert "ImagePullBackOff" in message.text
    # Without a known revision no button is offered (it could act on a later one).
    unknown = progress_message(tracked, failed, 42.0, verdict="failed")
    assert not [b for b in unknown.blocks if b["type"] == "actions"]


def test_progress_bar_is_proportional() -> None:
    assert progress_bar(0, 4, width=8) == "░" * 8
    assert progress_bar(2, 4, width=8) == "▓" * 4 + "░" * 4
    assert progress_bar(4, 4, width=8) == "▓" * 8
    assert progress_bar(0, 0, width=8) == "▓" * 8


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=300), min_size=0, max_size=120),
    cause=st.text(max_size=3000),
)
def test_any_list_or_history_fits(names: list[str], cause: str) -> None:
    rows = [DeploymentRow(n, "1/1", 1, 1, (("c", n),), 1, STATUS) for n in names]
    assert_fits(deployments_message("prod", rows))
    revisions = tuple(
        Revision(i, cause or None, (("c", n),), "2026-01-01T00:00:00Z", n, i == 0, {}, (), 1, 1)
        for i, n in enumerate(names)
    )
    assert_fits(history_message(HistoryView(TARGET, revisions)))
