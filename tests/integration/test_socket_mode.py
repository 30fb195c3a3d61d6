"""Socket Mode, the bot's default: `rollout-bot serve` (no --http) over a real WebSocket.

The bot process opens its connection through `apps.connections.open` on the Slack stand-in,
which hands out the URL of a SocketModeStandin; the test then pushes slash-command envelopes
down that socket, exactly as Slack does, and reads the acks and the response_url answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devkit.control_plane import ClusterInfo
from tests.devkit.slack.signed_requests import slash_command_payload
from tests.devkit.slack.socket_mode import SocketModeStandin
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import BotProcess, bot_env, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


@pytest.fixture
def socket_mode(slack: SlackStandin) -> Iterator[SocketModeStandin]:
    with SocketModeStandin() as standin:
        slack.socket_mode_url = standin.url
        yield standin


@pytest.fixture
def socket_bot(
    cluster: ClusterInfo,
    slack: SlackStandin,
    socket_mode: SocketModeStandin,
    redis_url: str,
    policy_file: Path,
    tmp_path: Path,
) -> Iterator[BotProcess]:
    env = bot_env(
        slack=slack,
        redis_url=redis_url,
        kubeconfig=cluster.bot_kubeconfig,
        policy=policy_file,
        extra={"SLACK_APP_TOKEN": slack.app_token},
    )
    env.pop("SLACK_SIGNING_SECRET")  # Socket Mode needs none: the socket is the authentication
    bot = BotProcess(
        env,
        tmp_path / "socket-bot.log",
        args=["serve"],
        ready=lambda: socket_mode.connection_count >= 1,
    )
    bot.start()
    yield bot
    bot.stop()
    logs = bot.logs()
    assert "Traceback" not in logs, f"a traceback reached the bot's log:\n{logs[-4000:]}"
    assert slack.token not in logs and slack.app_token not in logs


def test_socket_mode_acks_help_in_the_envelope_and_answers_status_on_the_response_url(
    socket_bot: BotProcess,
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
) -> None:
    ns = granted_namespace
    kubectl.apply(deployment_manifest("web", "nginx:1.18-alpine", replicas=2, container="nginx"))
    assert kubectl.rollout_status("web").returncode == 0
    assert slack.calls("apps.connections.open")[0].ok, "the bot should open its socket via Slack"

    help_id = socket_mode.send_slash_command(
        slash_command_payload("help", response_url=slack.response_url("help"))
    )
    ack = socket_mode.wait_for_ack(help_id, timeout=3)  # Slack's deadline for the ack
    shown = message_text(ack["payload"])
    assert "/rollout status DEPLOY [-n NS]" in shown
    assert "/rollout undo DEPLOY [--to-revision=N] [-n NS] [--reason=TEXT]" in shown

    bad_id = socket_mode.send_slash_command(
        slash_command_payload(f"scale web --replicas=lots -n {ns}")
    )
    shown = message_text(socket_mode.wait_for_ack(bad_id, timeout=3)["payload"])
    assert "got `lots`" in shown and "/rollout scale DEPLOY --replicas=N" in shown

    status_id = socket_mode.send_slash_command(
        slash_command_payload(f"status web -n {ns}", response_url=slack.response_url("status"))
    )
    ack = socket_mode.wait_for_ack(status_id, timeout=3)
    assert not ack.get("payload"), "a read is answered on the response_url, not in the ack"
    reply = slack.wait_for("response_url", lambda c: c.params.get("_tag") == "status", timeout=30)
    answer = message_text(reply.params)
    oracle = kubectl.run("rollout", "status", "deployment/web", "--watch=false").stdout.strip()
    assert oracle == 'deployment "web" successfully rolled out'
    assert oracle in answer
    assert reply.params.get("response_type") == "ephemeral"

    scale_id = socket_mode.send_slash_command(
        slash_command_payload(
            f"scale web --replicas=3 -n {ns}", response_url=slack.response_url("s")
        )
    )
    socket_mode.wait_for_ack(scale_id, timeout=3)
    post = slack.wait_for("chat.postMessage", lambda c: "scaled" in message_text(c.params))
    assert "replicas: 2 → 3" in message_text(post.params)
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.get("deployment/web")["status"]["readyReplicas"] == 3


def test_socket_mode_serves_health_readiness_and_metrics_on_the_health_port(
    socket_bot: BotProcess, socket_mode: SocketModeStandin, slack: SlackStandin
) -> None:
    import json
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    base = f"http://127.0.0.1:{socket_bot.env['ROLLOUT_BOT_HEALTH_PORT']}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(base + "/readyz", timeout=5) as resp:
        body = json.loads(resp.read())
    assert resp.status == 200 and body["kubernetes"] is True and body["redis"] is True
    assert body["policy"] == "ok"

    help_id = socket_mode.send_slash_command(
        slash_command_payload("help", response_url=slack.response_url("h"))
    )
    socket_mode.wait_for_ack(help_id, timeout=3)
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    helps = [
        s.value
        for s in families["rollout_bot_commands"].samples
        if s.name.endswith("_total") and s.labels == {"verb": "help", "outcome": "ok"}
    ]
    assert helps == [1.0]
    assert families["rollout_bot_ack_seconds"].samples
