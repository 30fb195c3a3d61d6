"""One bot, several clusters: two real local control planes at once, `east` (the session's
cluster) and `west` (started here), merged through KUBECONFIG=east:west as kubectl merges it.

The same namespace and Deployment name exist in both; kubectl against each cluster is the
oracle for which one a command changed.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.keys import Keys
from handlers.views.cards import APPROVE_ACTION
from tests.conftest import grant_bot, install_bot_rbac
from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import BotProcess, SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest
from tests.support.multicluster import kubeconfig_path, named_kubeconfig
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(300)]

CHANNEL = "C0DEPLOYS"  # bound to no context: the default one (east)
EAST_ONLY = "C0EAST"  # bound to east, and only east
WEST = "C0WEST"  # bound to west: west only (no `contexts` listed)
OLD, NEW = "app:1", "app:2"
FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"}


def policy_text(namespace: str) -> str:
    return textwrap.dedent(
        f"""\
        channels:
          {CHANNEL}: {{namespace: {namespace}}}
          {EAST_ONLY}: {{namespace: {namespace}, context: east, contexts: [east]}}
          {WEST}: {{namespace: {namespace}, context: west}}
        permissions:
          - users: ["*"]
            namespaces: ["*"]
            actions: [list, status, history, diff, approvals, audit]
          - users: [U0ALICE]
            namespaces: ["*"]
            actions: ["*"]
          - users: [U0CAROL]
            namespaces: ["*"]
            actions: ["*"]
            contexts: [east]
        approvals:
          - namespaces: ["*"]
            actions: [scale]
            contexts: [west]
            required: 1
            approvers: [U0BOB]
          - namespaces: ["*"]
            actions: [restart]
            required: 1
            approvers: [U0BOB]
        """
    )


# -- fixtures -----------------------------------------------------------------------------------


def _plane() -> Iterator[ClusterInfo]:
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="rollout-bot-cluster-")))
    info = plane.up()
    try:
        yield info
    finally:
        plane.down()


@pytest.fixture(scope="module")
def west_cluster() -> Iterator[ClusterInfo]:
    yield from _plane()


@pytest.fixture(scope="module")
def west_admin(west_cluster: ClusterInfo) -> Kubectl:
    install_bot_rbac(Kubectl(west_cluster.kubeconfig))
    return Kubectl(west_cluster.kubeconfig)


@pytest.fixture
def both(
    admin_kubectl: Kubectl, bot_rbac: str, west_admin: Kubectl
) -> Iterator[tuple[str, Kubectl, Kubectl]]:
    """The same namespace in both clusters, the bot's RBAC bound in each, Deployment `web`
    running OLD in each."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    pairs = []
    for admin in (admin_kubectl, west_admin):
        admin.run("create", "namespace", name)
        grant_bot(admin, name)
        kubectl = admin.in_namespace(name)
        kubectl.apply(deployment_manifest("web", OLD, replicas=2))
        pairs.append(kubectl)
    for kubectl in pairs:
        assert kubectl.rollout_status("web").returncode == 0
    yield name, pairs[0], pairs[1]
    for admin in (admin_kubectl, west_admin):
        admin.run("delete", "namespace", name, "--wait=false", check=False)


def kubeconfigs(tmp_path: Path, *clusters: tuple[str, ClusterInfo]) -> str:
    return kubeconfig_path(
        [
            named_kubeconfig(info.bot_kubeconfig, name, tmp_path / f"{name}.kubeconfig")
            for name, info in clusters
        ]
    )


@pytest.fixture
def driver(
    start_bot: Any,
    slack: SlackStandin,
    cluster: ClusterInfo,
    west_cluster: ClusterInfo,
    both: tuple[str, Kubectl, Kubectl],
    tmp_path: Path,
) -> SlackDriver:
    namespace = both[0]
    policy = tmp_path / "multi-policy.yaml"
    policy.write_text(policy_text(namespace))
    env = {
        **FAST,
        "KUBECONFIG": kubeconfigs(tmp_path, ("east", cluster), ("west", west_cluster)),
        "ROLLOUT_BOT_CONTEXTS": "east,west",
    }
    return SlackDriver(slack, start_bot(policy=policy, env=env))


@pytest.fixture
def audit(redis_server: RedisServer, redis_url: str) -> RedisAuditLog:
    return RedisAuditLog(redis_server.client(), Keys())


def image(kubectl: Kubectl) -> str:
    return kubectl.images("web")["web"]


def replicas(kubectl: Kubectl) -> int:
    return int(kubectl.get("deployment", "web")["spec"]["replicas"])


def restarted(kubectl: Kubectl) -> bool:
    template = kubectl.get("deployment", "web")["spec"]["template"]
    return "kubectl.kubernetes.io/restartedAt" in (template["metadata"].get("annotations") or {})


# -- commands go to the cluster they name ---------------------------------------------------------


def test_a_command_changes_only_the_cluster_it_names(
    driver: SlackDriver, both: tuple[str, Kubectl, Kubectl]
) -> None:
    namespace, east, west = both

    said = driver.run(f"set image web web={NEW} -n {namespace} --context west")
    assert "image updated" in said and "cluster `west`" in said
    assert image(west) == NEW and image(east) == OLD

    # Without --context, in a channel bound to none: the default context (the first file's).
    said = driver.run(f"scale web --replicas=4 -n {namespace}")
    assert "scaled" in said and "cluster `east`" in said
    assert replicas(east) == 4 and replicas(west) == 2

    # Without --context, in a channel bound to west: west.
    said = driver.run("set image web web=app:3", channel=WEST)
    assert "cluster `west`" in said
    assert image(west) == "app:3" and image(east) == OLD

    # Reads name the cluster too, and show that cluster's object.
    status = driver.ask(f"history web -n {namespace} --context west")
    assert "cluster `west`" in status and "app:3" in status
    status = driver.ask(f"history web -n {namespace}")
    assert "cluster `east`" in status and "app:3" not in status


def test_an_unknown_context_is_refused_with_the_known_ones_and_a_suggestion(
    driver: SlackDriver, both: tuple[str, Kubectl, Kubectl]
) -> None:
    namespace, east, west = both
    said = driver.run(f"set image web web={NEW} -n {namespace} --context wset")
    assert "Unknown context `wset`" in said and "Did you mean `west`?" in said
    assert "`east`" in said and "`west`" in said
    assert image(east) == OLD and image(west) == OLD


def test_a_channel_bound_to_one_context_cannot_touch_the_other(
    driver: SlackDriver, both: tuple[str, Kubectl, Kubectl]
) -> None:
    namespace, east, west = both
    said = driver.run(f"set image web web={NEW} --context west", channel=EAST_ONLY)
    assert "may not act on context `west`" in said
    assert image(west) == OLD and image(east) == OLD

    # A permission rule limited to east: carol may change east, not west.
    said = driver.run(
        f"set image web web={NEW} -n {namespace} --context west", user="U0CAROL", name="carol"
    )
    assert "not allowed" in said and "`west`" in said
    assert image(west) == OLD
    said = driver.run(f"set image web web={NEW} -n {namespace}", user="U0CAROL", name="carol")
    assert "image updated" in said
    assert image(east) == NEW and image(west) == OLD


# -- approvals are per cluster --------------------------------------------------------------------


def _cards(slack: SlackStandin, channel: str) -> list[PostedMessage]:
    return [
        m
        for m in slack.messages(channel)
        if m.thread_ts is None and "Waiting for approval" in message_text(m.as_api_dict())
    ]


def _request_id(message: PostedMessage) -> str:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == APPROVE_ACTION:
                return str(element["value"])
    raise AssertionError("no Approve button on the card")


def test_an_approval_rule_for_one_context_leaves_the_other_alone(
    driver: SlackDriver, both: tuple[str, Kubectl, Kubectl], slack: SlackStandin
) -> None:
    namespace, east, west = both
    # scale needs approval in west only.
    said = driver.run(f"scale web --replicas=3 -n {namespace} --context east")
    assert "scaled" in said
    assert replicas(east) == 3
    driver.command(f"scale web --replicas=5 -n {namespace} --context west")
    card = driver.wait(lambda: _cards(slack, CHANNEL), what="an approval card")[0]
    assert "cluster `west`" in message_text(card.as_api_dict())
    assert replicas(west) == 2


def test_a_click_on_one_clusters_request_does_not_approve_the_others(
    driver: SlackDriver,
    both: tuple[str, Kubectl, Kubectl],
    slack: SlackStandin,
    audit: RedisAuditLog,
) -> None:
    namespace, east, west = both
    driver.command(f"restart web -n {namespace} --context east")
    driver.wait(lambda: len(_cards(slack, CHANNEL)) == 1, what="the east card")
    driver.command(f"restart web -n {namespace} --context west")
    driver.wait(lambda: len(_cards(slack, CHANNEL)) == 2, what="the west card")
    east_card, west_card = _cards(slack, CHANNEL)
    assert "cluster `east`" in message_text(east_card.as_api_dict())
    assert "cluster `west`" in message_text(west_card.as_api_dict())

    driver.click(APPROVE_ACTION, _request_id(west_card), user="U0BOB", message_ts=west_card.ts)
    west.wait_for(lambda: restarted(west), what="west restarted")
    assert not restarted(east)
    # The east request still waits for its own approval.
    pending = driver.ask(f"approvals -n {namespace} --context east")
    assert _request_id(east_card) in pending
    pending = driver.ask(f"approvals -n {namespace} --context west")
    assert _request_id(west_card) not in pending

    # Every audit entry of the run names its cluster; `audit --context` filters by it.
    mine = [e for e in audit.recent(50, namespace=namespace) if e.action == "restart"]
    assert {e.cluster for e in mine} == {"east", "west"}
    executions = [e for e in mine if e.event == "execution"]
    assert [e.cluster for e in executions] == ["west"]
    west_audit = driver.ask(f"audit web -n {namespace} --context west")
    east_audit = driver.ask(f"audit web -n {namespace} --context east")
    assert "cluster `west`" in west_audit and "execution" in west_audit
    assert "cluster `east`" in east_audit and "execution" not in east_audit


# -- one cluster down -----------------------------------------------------------------------------


def readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _verdict(slack: SlackStandin, channel: str, thread_ts: str, verdict: str) -> bool:
    return any(
        f"rollout *{verdict}*" in message_text(m.as_api_dict())
        for m in slack.messages(channel)
        if m.thread_ts == thread_ts
    )


def _announcement(slack: SlackStandin, contains: str) -> PostedMessage:
    for message in slack.messages(CHANNEL):
        if message.thread_ts is None and contains in message_text(message.as_api_dict()):
            return message
    raise AssertionError(f"no announcement containing {contains!r}")


def test_with_one_cluster_down_the_bot_serves_the_other(
    start_bot: Any,
    slack: SlackStandin,
    cluster: ClusterInfo,
    admin_kubectl: Kubectl,
    bot_rbac: str,
    tmp_path: Path,
) -> None:
    # A cluster of its own, so stopping it leaves the module's `west` alone.
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="rollout-bot-cluster-")))
    north_cluster = plane.up()
    try:
        north_admin = Kubectl(north_cluster.kubeconfig)
        install_bot_rbac(north_admin)
        namespace = f"t-{uuid.uuid4().hex[:10]}"
        east = admin_kubectl.in_namespace(namespace)
        for admin in (admin_kubectl, north_admin):
            admin.run("create", "namespace", namespace)
            grant_bot(admin, namespace)
            admin.in_namespace(namespace).apply(deployment_manifest("web", OLD, replicas=2))
        policy = tmp_path / "multi-policy.yaml"
        # This bot serves north instead of west: a rule naming an unserved context is refused.
        policy.write_text(policy_text(namespace).replace("west", "north"))
        env = {
            **FAST,
            "KUBECONFIG": kubeconfigs(tmp_path, ("east", cluster), ("north", north_cluster)),
            "ROLLOUT_BOT_CONTEXTS": "east,north",
        }
        bot = start_bot(policy=policy, env=env)
        driver = SlackDriver(slack, bot)
        status, body = readyz(bot)
        assert status == 200 and body["clusters"] == {"east": True, "north": True}

        # A rollout in east under way, and north's control plane stops.
        said = driver.run(f"set image web web={NEW} -n {namespace}")
        assert "cluster `east`" in said
        plane.down()

        def north_down() -> tuple[int, dict[str, Any]] | None:
            answer = readyz(bot)
            return answer if answer[1]["clusters"]["north"] is False else None

        # /readyz answers from a result up to a second old: within two, north is down.
        status, body = eventually(
            "/readyz to see north down", north_down, timeout=2.5, detail=lambda: readyz(bot)
        )
        assert status == 200, body
        assert body["clusters"] == {"east": True, "north": False}
        assert body["unreachable"] == ["north"]

        said = driver.run(f"set image web web={NEW} -n {namespace} --context north")
        assert "cluster `north`" in said and "did not answer" in said
        assert "Traceback" not in said

        # East keeps working, and its progress keeps flowing.
        head = _announcement(slack, "image updated")
        driver.wait(lambda: _verdict(slack, CHANNEL, head.ts, "succeeded"), 120, "east's verdict")
        said = driver.run(f"set image web web=app:3 -n {namespace} --context east")
        assert "image updated" in said
        assert image(east) == "app:3"
        second = next(
            m
            for m in slack.messages(CHANNEL)
            if m.thread_ts is None and "app:3" in message_text(m.as_api_dict())
        )
        driver.wait(
            lambda: _verdict(slack, CHANNEL, second.ts, "succeeded"), 120, "the second verdict"
        )
        admin_kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
    finally:
        plane.down()


# -- rollout-bot check ----------------------------------------------------------------------------


def test_check_connects_to_each_context_and_reports_each(
    slack: SlackStandin,
    redis_url: str,
    cluster: ClusterInfo,
    west_cluster: ClusterInfo,
    tmp_path: Path,
) -> None:
    import subprocess

    from tests.support.bot_process import ROLLOUT_BOT, bot_env

    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text("shop").replace("context: west", "context: south"))
    stopped = tmp_path / "stopped.kubeconfig"
    config = json.loads(west_cluster.bot_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens
    stopped.write_text(json.dumps(config))
    env = bot_env(
        slack=slack,
        redis_url=redis_url,
        kubeconfig=cluster.bot_kubeconfig,
        policy=policy,
        extra={
            "KUBECONFIG": kubeconfigs(
                tmp_path,
                ("east", cluster),
                ("west", west_cluster),
                (
                    "gone",
                    ClusterInfo(
                        directory=west_cluster.directory,
                        server="https://127.0.0.1:1",
                        kubeconfig=stopped,
                        bot_kubeconfig=stopped,
                        kubectl=west_cluster.kubectl,
                    ),
                ),
            ),
            "ROLLOUT_BOT_CONTEXTS": "east,west,gone",
        },
    )
    out = subprocess.run(
        [str(ROLLOUT_BOT), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1, out
    assert "kubernetes (east): OK" in out.stdout and "kubernetes (west): OK" in out.stdout
    assert "kubernetes (gone): the API server is not reachable" in out.stderr
    assert "bound to context `south`, which the bot does not serve" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr

    # A context the kubeconfig does not define stops start-up with the ones it does.
    env["ROLLOUT_BOT_CONTEXTS"] = "east,nowhere"
    out = subprocess.run(
        [str(ROLLOUT_BOT), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "ROLLOUT_BOT_CONTEXTS names nowhere" in out.stderr and "east, west, gone" in out.stderr
