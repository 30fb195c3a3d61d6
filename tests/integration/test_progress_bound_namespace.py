"""A change the bot makes in a channel's bound namespace is the bot's, not an outside change.

The namespace watch sees the change before the bot has marked it as its own (that happens once
its announcement is posted); the outside-change notice must not win that race, or the channel
gets a false ":eyes: ... from outside the bot" and the bot's own progress message is orphaned
at "rolling out". Found through the playground, whose channels are all bound.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_POLICY
from tests.devkit.slack.web_api import SlackStandin
from tests.integration.test_progress import (
    FAST,
    announcement,
    deploy,
    progress_messages,
    wait_for_verdict,
)
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


@pytest.mark.parametrize("rounds", [3])
def test_own_changes_in_a_bound_namespace_are_not_outside_changes(
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
    rounds: int,
) -> None:
    policy = tmp_path / "bound.yaml"
    policy.write_text(
        TEST_POLICY.replace(
            "C0DEPLOYS: {namespace: default}", f"C0OPS: {{namespace: {granted_namespace}}}"
        )
    )
    deploy(kubectl, "web")
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST), channel="C0OPS")
    for number in range(2, 2 + rounds):
        said = driver.run(f"set image web web=app:{number}")
        assert "image updated" in said
        head = announcement(slack, "C0OPS", f"app:{number}")
        wait_for_verdict(driver, "C0OPS", head.ts, "succeeded")
        assert len(progress_messages(slack, "C0OPS", head.ts)) == 1
    threading.Event().wait(6)  # past the notice grace: a false notice would be out by now
    outside = [
        m
        for m in slack.messages("C0OPS")
        if "from outside the bot" in message_text(m.as_api_dict())
    ]
    assert outside == []
