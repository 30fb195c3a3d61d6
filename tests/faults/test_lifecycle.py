"""Stopping well: SIGTERM stops accepting work, flushes progress, hands leases back, exits 0
within 10 s; a rollout whose replica stopped is finished by another one within a lease period."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.services.progress.context_tracker import LEASE_RENEW, LEASE_TTL
from tests.devkit.slack.web_api import SlackStandin
from tests.integration.test_progress import FAST, announcement, deploy, progress_messages
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def test_sigterm_exits_0_promptly_and_another_replica_finishes_the_same_message(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    first = start_bot(env=FAST)
    driver = SlackDriver(slack, first)
    # A second replica is already running and sharing Redis, as in a real Deployment.
    second = start_bot(env=FAST)
    deploy(kubectl, "web", replicas=2, deadline=600)
    # A broken image keeps the rollout going until someone fixes it.
    driver.run(f"set image web web=app:broken-9 -n {granted_namespace}")
    head = announcement(slack, "C0DEPLOYS", "image updated")
    driver.wait(lambda: progress_messages(slack, "C0DEPLOYS", head.ts), what="progress")

    assert first.proc is not None
    started = time.monotonic()
    first.stop()
    stopped_in = time.monotonic() - started
    assert first.proc.returncode == 0, first.logs()[-2000:]
    assert stopped_in < 10
    assert "stopped" in first.logs()

    taken_over = time.monotonic()
    kubectl.run("set", "image", "deployment/web", "web=app:2")

    def verdict() -> str | None:
        (message,) = progress_messages(slack, "C0DEPLOYS", head.ts)
        text = message_text(message.as_api_dict())
        return text if "rollout *succeeded*" in text else None

    text = SlackDriver(slack, second).wait(verdict, timeout=60, what="the verdict")
    # The lease was handed back on SIGTERM, so the new replica did not wait for it to expire.
    assert time.monotonic() - taken_over < 60
    assert 'deployment "web" successfully rolled out' in text
    assert len(progress_messages(slack, "C0DEPLOYS", head.ts)) == 1
    assert LEASE_RENEW < LEASE_TTL
