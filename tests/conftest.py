"""Shared fixtures: the real local control plane (session-wide), a fresh namespace per test.

Set CLUSTER_DIR to reuse a control plane started with `make cluster-up CLUSTER_DIR=DIR`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.support.kubectl import Kubectl


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterInfo]:
    reuse = os.environ.get("CLUSTER_DIR")
    if reuse and (Path(reuse) / "cluster.json").exists():
        info = ClusterInfo.load(Path(reuse))
        if info.is_ready():
            yield info
            return
    directory = Path(tempfile.mkdtemp(prefix="rollout-bot-cluster-"))
    plane = ControlPlane(directory)
    info = plane.up()
    try:
        yield info
    finally:
        plane.down()


@pytest.fixture(scope="session")
def admin_kubectl(cluster: ClusterInfo) -> Kubectl:
    return Kubectl(cluster.kubeconfig, executable=cluster.kubectl)


@pytest.fixture
def namespace(admin_kubectl: Kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin_kubectl.run("create", "namespace", name)
    yield name
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(admin_kubectl: Kubectl, namespace: str) -> Kubectl:
    return admin_kubectl.in_namespace(namespace)


# -- the bot and its real neighbours -------------------------------------------------------------

import json as _json  # noqa: E402
import textwrap  # noqa: E402

from tests.devkit.redis_server import RedisServer  # noqa: E402
from tests.devkit.slack.web_api import SlackStandin  # noqa: E402
from tests.support.bot_process import BotProcess, SlackDriver, bot_env  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

TEST_POLICY = textwrap.dedent(
    """\
    channels:
      C0DEPLOYS: {namespace: default}
    permissions:
      - users: ["*"]
        namespaces: ["*"]
        actions: [list, status, history, diff, approvals, audit]
      - users: [U0ALICE, U0CAROL, S0DEVS]
        namespaces: ["*"]
        actions: ["*"]
    approvals:
      - namespaces: [prod-*]
        actions: [create, set-image, scale, undo, pause, resume, restart]
        required: 1
        approvers: [U0BOB, S0SRE]
        ttl: 30m
    """
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    standin = SlackStandin().start()
    standin.add_user("U0ALICE", "alice")
    standin.add_user("U0BOB", "bob")
    standin.add_user("U0CAROL", "carol")
    standin.add_user("U0MALLORY", "mallory")
    standin.set_usergroup("S0DEVS", ["U0DAVE"])
    standin.set_usergroup("S0SRE", ["U0ERIN"])
    yield standin
    standin.stop()


def chart_rbac_rules() -> list[dict[str, Any]]:
    """The rules the chart grants the bot in each namespace, read from the rendered manifests
    (deploy/manifests/rollout-bot.yaml, which a test keeps equal to `helm template`)."""
    import yaml

    text = (REPO_ROOT / "deploy" / "manifests" / "rollout-bot.yaml").read_text()
    roles = [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Role"]
    assert roles, "deploy/manifests/rollout-bot.yaml has no Role"
    rules: list[dict[str, Any]] = roles[0]["rules"]
    return rules


def install_bot_rbac(admin_kubectl: Kubectl) -> str:
    """The chart's RBAC rules as the ClusterRole `rollout-bot`, bound per namespace to the test
    identity `slack-bot` (grant_bot); reading namespaces is granted cluster-wide, as the chart
    does with rbac.namespaces=["*"], so "namespace does not exist" answers can be tested."""
    admin_kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "rollout-bot"},
            "rules": chart_rbac_rules(),
        }
    )
    admin_kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "rollout-bot-namespaces"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}],
        }
    )
    admin_kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "slack-bot-namespaces"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "rollout-bot-namespaces",
            },
            "subjects": [{"kind": "User", "name": "slack-bot"}],
        }
    )
    return "slack-bot"


@pytest.fixture(scope="session")
def bot_rbac(admin_kubectl: Kubectl) -> str:
    return install_bot_rbac(admin_kubectl)


def grant_bot(kubectl: Kubectl, namespace: str) -> None:
    """What an admin does per namespace: bind the bot's ClusterRole there."""
    kubectl.in_namespace(namespace).apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rollout-bot", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "rollout-bot",
            },
            "subjects": [{"kind": "User", "name": "slack-bot"}],
        }
    )


@pytest.fixture
def granted_namespace(namespace: str, admin_kubectl: Kubectl, bot_rbac: str) -> str:
    grant_bot(admin_kubectl, namespace)
    return namespace


@pytest.fixture
def prod_namespace(admin_kubectl: Kubectl, bot_rbac: str) -> Iterator[str]:
    """A namespace TEST_POLICY's approval rule covers (`prod-*`), with the bot's RBAC in it."""
    name = f"prod-{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", name)
    grant_bot(admin_kubectl, name)
    yield name
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(TEST_POLICY)
    return path


@pytest.fixture
def start_bot(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, policy_file: Path, tmp_path: Path
) -> Iterator[Any]:
    """start_bot(policy=..., env=...) -> BotProcess; every bot started is stopped at the end."""
    started: list[BotProcess] = []

    def start(
        *,
        policy: Path | str | None = "default",
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
    ) -> BotProcess:
        chosen = policy_file if policy == "default" else policy
        process = BotProcess(
            bot_env(
                slack=slack,
                redis_url=redis_url,
                kubeconfig=kubeconfig or cluster.bot_kubeconfig,
                policy=chosen if not isinstance(chosen, str) else Path(chosen),
                extra=env,
            ),
            tmp_path / f"bot-{len(started)}.log",
        )
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        logs = process.logs()
        assert "Traceback" not in logs, f"a traceback reached the bot's log:\n{logs[-4000:]}"
        assert "xoxb-test-token" not in logs and "test-signing-secret" not in logs
        assert "test-state-key-for-sealing" not in logs


@pytest.fixture
def driver(start_bot: Any, slack: SlackStandin) -> SlackDriver:
    return SlackDriver(slack, start_bot())


_ = _json
