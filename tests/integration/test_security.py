"""Replays and least privilege: a captured request runs once; the bot's RBAC is what it needs."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.parse
from typing import Any

import pytest

from tests.devkit.control_plane import ClusterInfo
from tests.devkit.slack.signed_requests import send_raw, signed_headers, slash_command_payload
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import ROLLOUT_BOT, SIGNING_SECRET, SlackDriver, bot_env
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

FORM = "application/x-www-form-urlencoded"


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
        # A canary (`NAME-canary`) is created beside a Deployment and deleted at its end.
        ("delete", "deployments.apps"),
        ("list", "services"),
        ("list", "replicasets.apps"),
        ("list", "pods"),
        ("list", "events"),
        *(
            (verb, resource)
            for resource in ("statefulsets.apps", "daemonsets.apps")
            for verb in ("get", "list", "watch", "patch")
        ),
        ("list", "controllerrevisions.apps"),
        ("list", "horizontalpodautoscalers.autoscaling"),
    ]
    for verb, resource in needed:
        assert can(verb, resource), f"the bot needs {verb} {resource}"
    refused: list[tuple[str, Any]] = [
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods/exec"),
        ("delete", "pods"),
        ("patch", "replicasets.apps"),
        ("create", "statefulsets.apps"),
        ("delete", "daemonsets.apps"),
        ("patch", "controllerrevisions.apps"),
        ("get", "horizontalpodautoscalers.autoscaling"),
        ("patch", "horizontalpodautoscalers.autoscaling"),
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

    # Only the headers are sent: the server must refuse from Content-Length alone, before
    # reading (or buffering) any of the body.
    body = b"text=" + b"x" * (2 << 20)
    headers = signed_headers(SIGNING_SECRET, body)
    port = int(driver.bot.events_url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        head = [
            "POST /slack/events HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
            "",
            "",
        ]
        conn.sendall("\r\n".join(head).encode())
        status_line = conn.recv(200).split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, status_line

    request = urllib.request.Request(driver.bot.events_url, method="GET")
    try:
        urllib.request.urlopen(request, timeout=5)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 405


# -- issue: forged requests, unauthenticated input --------------------------------------------


def _serve_http_exit(env: dict[str, str], tmp_path: Any) -> tuple[int, str]:
    """Runs `rollout-bot serve --http` and returns its exit code and output (it must refuse)."""
    result = subprocess.run(
        [str(ROLLOUT_BOT), "serve", "--http", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("secret", ["", "   ", "\n"])
def test_http_mode_refuses_to_start_with_an_empty_signing_secret(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, tmp_path: Any, secret: str
) -> None:
    env = bot_env(slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=None)
    env["SLACK_SIGNING_SECRET"] = secret
    code, output = _serve_http_exit(env, tmp_path)
    assert code == 2
    assert "SLACK_SIGNING_SECRET" in output and "Traceback" not in output


def test_a_secret_file_holding_only_a_newline_is_no_secret(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, tmp_path: Any
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "SLACK_SIGNING_SECRET").write_text("\n")
    env = bot_env(slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=None)
    env.pop("SLACK_SIGNING_SECRET")
    env["ROLLOUT_BOT_SECRETS_DIR"] = str(secrets_dir)
    code, output = _serve_http_exit(env, tmp_path)
    assert code == 2 and "SLACK_SIGNING_SECRET" in output


def test_approvals_without_a_state_key_refuse_to_start(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, policy_file: Any, tmp_path: Any
) -> None:
    env = bot_env(
        slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=policy_file
    )
    env.pop("ROLLOUT_BOT_STATE_KEY")
    code, output = _serve_http_exit(env, tmp_path)
    assert code == 2 and "ROLLOUT_BOT_STATE_KEY" in output


def test_a_short_state_key_is_refused_naming_the_variable(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, tmp_path: Any
) -> None:
    env = bot_env(slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=None)
    env["ROLLOUT_BOT_STATE_KEY"] = "too-short-a-key"
    code, output = _serve_http_exit(env, tmp_path)
    assert code == 2 and "ROLLOUT_BOT_STATE_KEY" in output
    assert "too-short-a-key" not in output


def test_a_request_signed_with_the_old_socket_mode_constant_is_refused(
    driver: SlackDriver, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    payload = slash_command_payload(
        f"restart web -n {granted_namespace}", response_url=slack.response_url("forged")
    )
    body = urllib.parse.urlencode(payload).encode()
    forged = send_raw(driver.bot.events_url, body, signed_headers("unused-in-socket-mode", body))
    assert forged.status == 401
    time.sleep(1)
    assert kubectl.history_revisions("web") == [1]
    assert not slack.calls("response_url")


def test_a_wrong_signature_body_never_reaches_the_log(driver: SlackDriver) -> None:
    marker = "ZZ-INJECTED-" + "x" * 64
    body = urllib.parse.urlencode({"text": f"list\n{marker}", "command": "/rollout"}).encode()
    refused = send_raw(driver.bot.events_url, body, signed_headers("not-the-secret", body))
    assert refused.status == 401
    time.sleep(0.5)
    assert marker not in driver.bot.logs()


def test_signed_bodies_that_are_not_utf8_or_not_json_get_400(driver: SlackDriver) -> None:
    not_utf8 = b"text=\xff\xfe\xfa&command=%2Frollout"
    answer = send_raw(
        driver.bot.events_url,
        not_utf8,
        {**signed_headers(SIGNING_SECRET, not_utf8), "Content-Type": FORM},
    )
    assert answer.status == 400
    # Bolt reads a body that starts with a brace as JSON, and a blank `payload` as JSON too.
    for not_json in (b"payload=%7Bnot+json", b"payload=", b"{text=status"):
        answer = send_raw(
            driver.bot.events_url,
            not_json,
            {**signed_headers(SIGNING_SECRET, not_json), "Content-Type": FORM},
        )
        assert answer.status == 400, not_json
    assert "Traceback" not in driver.bot.logs()


def test_a_replay_is_dropped_even_with_a_timestamp_from_the_future(
    driver: SlackDriver, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    """Bolt accepts a timestamp up to 5 minutes ahead, so the replay memory must outlive the
    whole ten minutes in which such a request verifies."""
    from handlers.request_context import REPLAY_WINDOW_SECONDS

    assert REPLAY_WINDOW_SECONDS >= 600
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    assert kubectl.rollout_status("web").returncode == 0
    payload = slash_command_payload(
        f"restart web -n {granted_namespace}", response_url=slack.response_url("future")
    )
    body = urllib.parse.urlencode(payload).encode()
    headers = signed_headers(SIGNING_SECRET, body, timestamp=int(time.time()) + 280)
    assert send_raw(driver.bot.events_url, body, headers).status == 200
    kubectl.wait_for(lambda: kubectl.history_revisions("web") == [1, 2], what="the restart")
    time.sleep(1.5)
    assert send_raw(driver.bot.events_url, body, headers).status == 200
    time.sleep(2)
    assert kubectl.history_revisions("web") == [1, 2]
