"""Replays and least privilege: a captured request runs once; the bot's RBAC is what it needs."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest

from bot.devkit.slack_api import SlackStandin
from bot.devkit.slack_requests import send_raw, signed_headers, slash_command_payload
from tests.support.bot_process import SIGNING_SECRET, SlackDriver
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def test_an_exact_replay_of_a_signed_command_does_not_run_twice(
    driver: SlackDriver, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    assert kubectl.rollout_status("web").returncode == 0
    payload = slash_command_payload(
        f"restart web -n {granted_namespace}", response_url=slack.response_url("replay")
    )
    body = urllib.parse.urlencode(payload).encode()
    headers = signed_headers(SIGNING_SECRET, body)

    first = send_raw(driver.bot.events_url, body, headers)
    assert first.status == 200
    kubectl.wait_for(lambda: kubectl.history_revisions("web") == [1, 2], what="the restart")
    time.sleep(1.5)  # a second restart would be allowed by then (kubectl's 1 s rule)
    replay = send_raw(driver.bot.events_url, body, headers)

    assert replay.status == 200
    time.sleep(2)
    assert kubectl.history_revisions("web") == [1, 2]
    restarts = [c for c in slack.calls("chat.postMessage") if "restarted" in str(c.params)]
    assert len(restarts) == 1


def test_bot_rbac_allows_what_the_verbs_need_and_nothing_more(
    admin_kubectl: Kubectl, granted_namespace: str
) -> None:
    elsewhere = f"{granted_namespace}-other"
    admin_kubectl.run("create", "namespace", elsewhere)

    def can(verb: str, resource: str, ns: str = granted_namespace) -> bool:
        out = admin_kubectl.run(
            "auth", "can-i", verb, resource, "-n", ns, "--as", "slack-bot", check=False
        )
        return out.stdout.strip() == "yes"

    needed = [
        ("get", "deployments.apps"),
        ("list", "deployments.apps"),
        ("watch", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("create", "deployments.apps"),
        ("list", "replicasets.apps"),
        ("list", "pods"),
        ("list", "events"),
    ]
    for verb, resource in needed:
        assert can(verb, resource), f"the bot needs {verb} {resource}"
    refused: list[tuple[str, Any]] = [
        ("delete", "deployments.apps"),
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods/exec"),
        ("delete", "pods"),
        ("patch", "replicasets.apps"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("impersonate", "users"),
    ]
    for verb, resource in refused:
        assert not can(verb, resource), f"the bot must not {verb} {resource}"
    # Outside the namespaces it was granted, it can do nothing.
    try:
        assert not can("get", "deployments.apps", ns=elsewhere)
        assert not can("patch", "deployments.apps", ns=elsewhere)
    finally:
        admin_kubectl.run("delete", "namespace", elsewhere, "--wait=false", check=False)


def test_a_policy_denial_is_refused_and_audited(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str, redis_server: Any
) -> None:
    from bot.adapters.redis.audit import RedisAuditLog
    from bot.adapters.redis.keys import Keys

    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    said = driver.run(
        f"scale web --replicas=5 -n {granted_namespace}", user="U0MALLORY", name="mallory"
    )

    assert "not allowed" in said and "Nothing was changed" in said
    assert kubectl.get("deployment/web")["spec"]["replicas"] == 1
    denials = [
        e
        for e in RedisAuditLog(redis_server.client(), Keys()).export()
        if e.event == "denial" and e.namespace == granted_namespace
    ]
    assert [(e.user_id, e.action, e.outcome) for e in denials] == [
        ("U0MALLORY", "scale", "denied by policy")
    ]


def test_a_channel_bound_to_other_namespaces_is_refused_and_nothing_changes(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Any
) -> None:
    from tests.conftest import TEST_POLICY

    policy = tmp_path / "bound.yaml"
    policy.write_text(
        TEST_POLICY.replace(
            "C0DEPLOYS: {namespace: default}",
            "C0DEPLOYS: {namespace: default}\n"
            "  C0STAGING: {namespace: staging, namespaces: [staging]}",
        )
    )
    driver = SlackDriver(slack, start_bot(policy=policy), channel="C0STAGING")
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))

    said = driver.run(f"scale web --replicas=4 -n {granted_namespace}")

    assert "may not act on namespace" in said and "Nothing was changed" in said
    assert kubectl.get("deployment/web")["spec"]["replicas"] == 1


def test_the_http_surface_refuses_oversized_bodies_and_other_methods(driver: SlackDriver) -> None:
    import urllib.error
    import urllib.request

    body = b"text=" + b"x" * (2 << 20)
    big = send_raw(driver.bot.events_url, body, signed_headers(SIGNING_SECRET, body))
    assert big.status == 413

    request = urllib.request.Request(driver.bot.events_url, method="GET")
    try:
        urllib.request.urlopen(request, timeout=5)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 405
