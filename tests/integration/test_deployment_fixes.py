"""Deployment fixes, through the real bot, with kubectl as the oracle.

- Only template changes (set image, undo, restart) write `kubernetes.io/change-cause`;
  scale, pause and resume leave it alone, as kubectl does.
- A followed rollout is bound to its object's uid: deleting the object ends it with kubectl's
  "object has been deleted", and a new object under the same name is not reported under it.
- `history` of an object without revisions says kubectl's `No rollout history found.`
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from tests.devkit.slack.web_api import SlackStandin
from tests.integration.test_progress import FAST, announcement, progress_messages
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

CAUSE = "kubernetes.io/change-cause"


def cause_of(kubectl: Kubectl, name: str) -> str | None:
    annotations = kubectl.get(f"deployment/{name}")["metadata"].get("annotations") or {}
    value = annotations.get(CAUSE)
    return None if value is None else str(value)


def test_scale_pause_and_resume_never_touch_the_change_cause(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    manifest = deployment_manifest("web", "app:1", replicas=1)
    manifest["metadata"]["annotations"] = {CAUSE: "initial release"}
    kubectl.apply(manifest)
    assert kubectl.rollout_status("web").returncode == 0
    before = kubectl.history_table("web")
    assert before == {1: "initial release"}

    assert "scaled" in driver.run(f"scale web --replicas=2 -n {ns}")
    assert cause_of(kubectl, "web") == "initial release"
    assert "paused" in driver.run(f"pause web -n {ns}")
    assert cause_of(kubectl, "web") == "initial release"
    assert "resumed" in driver.run(f"resume web -n {ns}")
    assert cause_of(kubectl, "web") == "initial release"
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_table("web") == before

    # A template change does record who and why, and kubectl shows it for the new revision.
    assert "restarted" in driver.run(f"restart web -n {ns} --reason=refresh")
    assert kubectl.rollout_status("web").returncode == 0
    # Once its revision carries it, the cause comes off the Deployment, so the next revision
    # someone else makes does not inherit it (issue 21).
    assert cause_of(kubectl, "web") is None
    assert kubectl.history_table("web") == {
        1: "initial release",
        2: "restart by @alice via Slack: refresh",
    }


def test_deleting_a_followed_deployment_ends_its_rollout_as_deleted(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    driver = SlackDriver(slack, start_bot(env=FAST))
    kubectl.apply(deployment_manifest("web", "app:1", replicas=2, progress_deadline=600))
    assert kubectl.rollout_status("web").returncode == 0
    assert "image updated" in driver.run(f"set image web web=app:broken-1 -n {ns}")
    head = announcement(slack, "C0DEPLOYS", "image updated")

    def latest() -> str:
        messages = progress_messages(slack, "C0DEPLOYS", head.ts)
        return html.unescape(message_text(messages[-1].as_api_dict())) if messages else ""

    driver.wait(lambda: "rolling out" in latest(), 30, what="the progress message")
    kubectl.run("delete", "deployment", "web", "--wait=false")
    driver.wait(lambda: "object has been deleted" in latest(), 30, what="the deleted verdict")
    final = latest()
    assert "deleted" in final and "succeeded" not in final

    # A new Deployment under the same name is another object: the old message stays as it is.
    kubectl.apply(deployment_manifest("web", "app:2", replicas=1))
    assert kubectl.rollout_status("web").returncode == 0
    driver.wait(
        lambda: (
            'deployment "web" successfully rolled out'
            in html.unescape(driver.ask(f"status web -n {ns}"))
        ),
        30,
        what="the new Deployment's status",
    )
    assert latest() == final
    assert len(progress_messages(slack, "C0DEPLOYS", head.ts)) == 1


def test_history_without_revisions_says_so_as_kubectl_does(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    # Created paused, a Deployment gets no ReplicaSet and so no revision.
    manifest = deployment_manifest("web", "app:1", replicas=1)
    manifest["spec"]["paused"] = True
    kubectl.apply(manifest)
    oracle = kubectl.run("rollout", "history", "deployment/web").stdout
    assert "No rollout history found." in oracle
    answer = driver.ask(f"history web -n {granted_namespace}")
    assert "No rollout history found." in answer
