"""The seed's whole walkthrough through the real bot, cross-checked with kubectl."""

from __future__ import annotations

import pytest

from tests.support.bot_process import SlackDriver
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def test_create_scale_set_image_history_undo(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    said = driver.run(f"create test-nginx --image=nginx:1.18-alpine -n {ns}")
    assert "deployment.apps/test-nginx created" in said
    assert kubectl.rollout_status("test-nginx").returncode == 0

    said = driver.run(f"scale deploy/test-nginx --replicas=3 -n {ns} --reason=load")
    assert "deployment.apps/test-nginx scaled" in said and "replicas: 1 → 3" in said
    assert kubectl.rollout_status("test-nginx").returncode == 0
    assert kubectl.get("deployment/test-nginx")["status"]["readyReplicas"] == 3

    said = driver.run(f"set image test-nginx nginx=nginx:1.19-alpine -n {ns} --reason=“fixes CVE”")
    assert "image updated" in said and "nginx:1.18-alpine → nginx:1.19-alpine" in said
    assert kubectl.rollout_status("test-nginx").returncode == 0
    assert kubectl.images("test-nginx") == {"nginx": "nginx:1.19-alpine"}

    history = driver.ask(f"history test-nginx -n {ns}")
    assert kubectl.history_revisions("test-nginx") == [1, 2]
    causes = kubectl.history_table("test-nginx")
    assert causes[2] == "set image nginx=nginx:1.19-alpine by @alice via Slack: fixes CVE"
    for number, cause in causes.items():
        assert cause in history, f"revision {number}'s cause missing from the bot's history"

    said = driver.run(f"undo test-nginx --to-revision=1 -n {ns}")
    assert "rolled back" in said
    assert kubectl.rollout_status("test-nginx").returncode == 0
    assert kubectl.history_revisions("test-nginx") == [2, 3]
    assert kubectl.images("test-nginx") == {"nginx": "nginx:1.18-alpine"}
    history = driver.ask(f"history test-nginx -n {ns}")
    assert "1.18-alpine" in history and "(was 1)" in history

    status = driver.ask(f"status test-nginx -n {ns}")
    oracle = kubectl.rollout_status("test-nginx").stdout.strip()
    assert oracle in status.replace("&quot;", '"')
