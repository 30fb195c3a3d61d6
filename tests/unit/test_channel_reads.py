"""The channel as a user reads it: what the bot's messages say, and what they no longer say.

Pure renderings of the views; tests/integration/test_channel_as_read.py reads the same
messages back from the Slack stand-in after real commands, clicks and kubectl changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import verbs
from bot.domain.annotations import CHANGE_CAUSE_ANNOTATION
from bot.domain.approval import Approval, ApprovalRequest, ApprovalState
from bot.domain.audit import AuditEntry
from bot.domain.revisions import Revision
from bot.domain.status import rollout_status
from bot.domain.targets import Target
from bot.domain.views import HistoryView
from bot.services.progress.outside_changes import who_changed as _who_changed
from handlers.views.audit import audit_message
from handlers.views.cards import approval_card
from handlers.views.message import PANE_WIDTH, Message
from handlers.views.progress import outside_change_message, progress_message
from handlers.views.reads import help_message, history_message

T0 = datetime(2026, 12, 7, 3, 8, tzinfo=UTC)


def text_of(message: Message) -> str:
    parts = []
    for block in message.blocks:
        if "text" in block and isinstance(block["text"], dict):
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


# -- outside changes --------------------------------------------------------------------------


def kubectl_set_image_after_a_bot_change() -> dict[str, object]:
    """A Deployment as the API server returns it after the bot's set image, then kubectl's:
    the change-cause is still the bot's, managedFields say who wrote the template last."""
    return {
        "metadata": {
            "annotations": {
                CHANGE_CAUSE_ANNOTATION: "set image nginx=nginx:1.19 by @alice via Slack"
            },
            "managedFields": [
                {
                    "manager": "kubectl-set",
                    "operation": "Update",
                    "time": "2026-12-07T03:08:12Z",
                    "fieldsV1": {"f:spec": {"f:template": {"f:spec": {}}}},
                },
                {
                    # The controller writes the revision annotation after the change.
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "time": "2026-12-07T03:08:13Z",
                    "fieldsV1": {"f:metadata": {"f:annotations": {}}},
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "subresource": "status",
                    "time": "2026-12-07T03:08:20Z",
                    "fieldsV1": {"f:status": {}},
                },
                {
                    "manager": "rollout-bot",
                    "operation": "Update",
                    "time": "2026-12-07T03:01:00Z",
                    "fieldsV1": {"f:spec": {"f:template": {}}},
                },
            ],
        }
    }


def test_an_outside_change_names_the_field_manager_and_time_never_the_stale_change_cause() -> None:
    who, at = _who_changed(kubectl_set_image_after_a_bot_change())
    assert (who, at) == ("kubectl-set", datetime(2026, 12, 7, 3, 8, 12, tzinfo=UTC))

    message = outside_change_message(
        Target("prod", "web"),
        3,
        who=who,
        changed_at=at,
        images_before=(("nginx", "nginx:1.19"),),
        images_after=(("nginx", "nginx:broken-1.20"),),
        previous_revision=2,
    )
    text = text_of(message)
    assert "Changed by: field manager `kubectl-set` at <!date^" in text
    assert "@alice" not in text and "via Slack" not in text


# -- approval cards --------------------------------------------------------------------------


def request(state: ApprovalState) -> ApprovalRequest:
    return ApprovalRequest(
        state=state,
        requester_id="U0ALICE",
        requester_name="alice",
        channel="C0PROD",
        message_ts="1.0",
        action="set-image",
        namespace="prod",
        deployment="web",
        command=verbs.command_record(verbs.parse_command("set image web nginx=nginx:1.19 -n prod")),
        required=1,
        approvers=["U0BOB"],
        approvals=[Approval(user_id="U0BOB", user_name="bob", at=T0)],
        decided_by="U0BOB",
        decided_at=T0,
        created_at=T0 - timedelta(minutes=2),
        expires_at=T0 + timedelta(minutes=28),
        result_message="deployment.apps/web image updated",
    )


@pytest.mark.parametrize("state", [ApprovalState.DONE, ApprovalState.RUNNING])
def test_a_finished_card_says_what_happened_without_its_pending_words(
    state: ApprovalState,
) -> None:
    card = approval_card(request(state))
    text = text_of(card)

    assert "Approved by <@U0BOB> <!date^" in text
    assert "requested by <@U0ALICE>" in text
    assert "in this thread" in text
    for pending in ("wants to run", "needs 1 of", "expires"):
        assert pending not in text
    assert not [b for b in card.blocks if b["type"] in ("actions", "input")]
    # The announcement in the thread says what changed; the card does not repeat it.
    assert "deployment.apps/web image updated" not in text


def test_a_pending_card_says_whose_buttons_they_are_and_counts_one_approver() -> None:
    card = approval_card(request(ApprovalState.PENDING).model_copy(update={"approvals": []}))
    text = text_of(card)
    assert "Approve or Reject: <@U0BOB> · Cancel: <@U0ALICE>" in text
    actions = next(b for b in card.blocks if b["type"] == "actions")
    confirm = actions["elements"][0]["confirm"]["text"]["text"]
    assert confirm.endswith("will run as soon as one approver agrees.")
    assert "(s)" not in str(card.blocks)


# -- tables ----------------------------------------------------------------------------------


def test_history_fits_a_message_pane_and_says_each_image_once() -> None:
    revisions = (
        Revision(
            1,
            "create deployment --image=nginx:1.18-alpine by @alice via Slack",
            (("nginx", "nginx:1.18-alpine"),),
            "2026-12-07T03:01:02Z",
            "web-1",
            False,
            {},
            (),
            0,
            0,
        ),
        Revision(
            2,
            "set image nginx=registry.example.com/team/web-frontend:2026.12.07-1 by @alice "
            "via Slack: fixes CVE-2026-1234 in the image's openssl, see the ticket",
            (("nginx", "registry.example.com/team/web-frontend:2026.12.07-1"),),
            "2026-12-07T03:05:02Z",
            "web-2",
            True,
            {},
            (),
            0,
            0,
        ),
    )
    text = text_of(history_message(HistoryView(Target("prod", "web"), revisions)))
    code = text.split("```")[1].strip("\n").splitlines()

    assert max(len(line) for line in code[::2]) <= PANE_WIDTH
    assert code[0].split() == ["REVISION", "CREATED", "IMAGES"]
    assert code[1].strip() == "CHANGE-CAUSE"
    # The change-cause in kubectl's words; the images beside it only when it does not name them.
    assert code[2].split() == ["1", "12-07", "03:01"]
    assert code[3].strip() == "create deployment --image=nginx:1.18-alpine by @alice via Slack"
    assert code[4].split() == ["2", "*", "12-07", "03:05"]
    assert code[5].strip() == revisions[1].change_cause
    assert "--revision=N" in text


def test_history_shows_the_images_when_the_change_cause_does_not_name_them() -> None:
    revision = Revision(
        4, None, (("nginx", "nginx:1.20"),), "2026-12-07T03:08:12Z", "web-4", True, {}, (), 0, 0
    )
    text = text_of(history_message(HistoryView(Target("prod", "web"), (revision,))))
    code = text.split("```")[1].strip("\n").splitlines()
    assert code[2].split() == ["4", "*", "12-07", "03:08", "nginx=nginx:1.20"]
    assert code[3].strip() == "&lt;none&gt;"  # Slack shows `<none>`; outside text is escaped


def test_audit_fits_a_message_pane_and_says_an_outcome_only_when_it_adds_something() -> None:
    def entry(event: str, outcome: str) -> AuditEntry:
        return AuditEntry(
            event=event,
            user_id="U0ALICE",
            user_name="alice",
            action="set-image",
            namespace="prod",
            deployment="web",
            outcome=outcome,
            time=T0,
            seq=1,
            prev_hash="",
            hash="",
        )

    message = audit_message(
        [entry("approval", "approved"), entry("outcome", "deployment.apps/web image updated")],
        "prod/web",
    )
    code = text_of(message).split("```")[1].strip("\n").splitlines()

    assert max(len(line) for line in code) <= PANE_WIDTH
    # Who and what happened stays short enough for a phone's pane, only the detail may wrap.
    assert max(len(line) for line in code[::2]) <= 44
    assert code == [
        "TIME (UTC)      USER   EVENT",
        "  ACTION TARGET → OUTCOME",
        "12-07 03:08:00  alice  approval",
        "  set image prod/web",  # `approved` is not said again under `approval`
        "12-07 03:08:00  alice  outcome",
        "  set image prod/web → deployment.apps/web image updated",
    ]


# -- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", verbs.VERBS)
def test_help_for_each_verb_has_a_purpose_the_usage_and_examples_that_parse(verb: str) -> None:
    text = text_of(help_message(verb))

    assert text.startswith(f"*{verb}* — {verbs.HELP_TEXT[verb]}")
    assert verbs.USAGE[verb] in text
    examples = verbs.EXAMPLES[verb]
    assert examples
    for example in examples:
        assert example in text
        verbs.parse_command(example.removeprefix("/rollout "))


def test_help_for_set_image_says_how_to_find_the_container_name() -> None:
    text = text_of(help_message("set image"))
    assert "`CONTAINER` is the container's name" in text
    assert "containers[*].name" in text


def test_a_failure_the_bot_rolls_back_itself_offers_no_roll_back_button() -> None:
    from bot.domain.tracking import TrackedRollout

    tracked = TrackedRollout(
        id="uid-2",
        channel="C1",
        thread_ts="1.0",
        message_ts="2.0",
        namespace="prod",
        deployment="web",
        uid="uid",
        generation=2,
        title="set image prod/web",
        started_at=0.0,
        deadline_seconds=30,
        on_failure="rollback",
    )
    status = rollout_status(
        {
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "replicas": 1},
        }
    )
    message = progress_message(tracked, status, 31.0, verdict="failed", revision=2)
    labels = [
        e["text"]["text"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]
    ]
    assert labels == ["Pause"]
    assert "Rolling back automatically" in text_of(message)
