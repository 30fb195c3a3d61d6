"""Impersonate mode (policy `identity.mode: impersonate`) through the real bot in HTTP mode, the
Slack stand-in (users.info answers with emails), a real Redis and the local control plane with
RBAC and the API server's audit log on.

The bot's own identity (`slack-bot`) gets the chart's rules in each namespace plus the chart's
`impersonate` ClusterRole (rendered with identity.mode=impersonate). A Role and RoleBinding let
`alice@example.com` get and patch Deployments in team-a (and team-p, where changes need an
approval) only: Kubernetes RBAC decides, and the API server's audit log names the person.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.redis.approvals import RedisApprovalStore
from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.keys import Keys
from bot.domain.approval import Approval
from bot.domain.integrity import Sealer
from handlers.views.cards import APPROVE_ACTION
from tests.conftest import grant_bot
from tests.deploy.helm import documents, render
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import STATE_KEY, SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(180)]

CHANNEL = "C0DEPLOYS"
OLD_IMAGE = "nginx:1.18-alpine"
NEW_IMAGE = "nginx:1.19-alpine"

POLICY = """\
channels:
  C0DEPLOYS: {namespace: default}
identity:
  mode: impersonate
  user: "{email}"
  groups: ["rollout-bot:users", "slack:{usergroup_handle}"]
  reads: READS
# No permission rules: Kubernetes RBAC alone decides who may do what.
approvals:
  - namespaces: [team-b-*, team-p-*]
    actions: [set-image, scale, undo, pause, resume, restart]
    approvers: [U0BOB]
    on_failure: rollback
"""
# Rollouts in team-p fail within seconds when their pods never become ready.
DEADLINE = 5


@dataclass(frozen=True)
class Teams:
    a: str
    b: str
    p: str


@pytest.fixture(scope="module")
def impersonating_bot(admin_kubectl: Kubectl, bot_rbac: str) -> Iterator[str]:
    """The chart's impersonate ClusterRole (identity.mode=impersonate), bound to the bot's
    test identity as the chart binds it to the bot's ServiceAccount; removed afterwards, since
    other tests check the bot's identity can impersonate nobody."""
    rendered = documents(render("identity.mode=impersonate"))
    (role,) = [
        d
        for d in rendered
        if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-impersonate")
    ]
    role["metadata"] = {"name": "rollout-bot-impersonate"}
    admin_kubectl.apply(role)
    admin_kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "slack-bot-impersonate"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "rollout-bot-impersonate",
            },
            "subjects": [{"kind": "User", "name": bot_rbac}],
        }
    )
    yield bot_rbac
    admin_kubectl.run("delete", "clusterrolebinding", "slack-bot-impersonate", check=False)
    admin_kubectl.run("delete", "clusterrole", "rollout-bot-impersonate", check=False)


def team_role(kubectl: Kubectl, namespace: str, user: str) -> None:
    """What the README shows a platform team doing: a Role and a RoleBinding for a person."""
    kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployers", "namespace": namespace},
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
                {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            ],
        }
    )
    kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployers", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "deployers",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
    )


@pytest.fixture
def teams(admin_kubectl: Kubectl, impersonating_bot: str) -> Iterator[Teams]:
    suffix = uuid.uuid4().hex[:8]
    teams = Teams(f"team-a-{suffix}", f"team-b-{suffix}", f"team-p-{suffix}")
    for namespace in (teams.a, teams.b, teams.p):
        admin_kubectl.run("create", "namespace", namespace)
        grant_bot(admin_kubectl, namespace)
        kubectl = admin_kubectl.in_namespace(namespace)
        deadline = DEADLINE if namespace == teams.p else None
        kubectl.apply(
            deployment_manifest(
                "web", OLD_IMAGE, replicas=1, container="nginx", progress_deadline=deadline
            )
        )
    for namespace in (teams.a, teams.p):
        team_role(admin_kubectl, namespace, "alice@example.com")
    for namespace in (teams.a, teams.b, teams.p):
        assert admin_kubectl.in_namespace(namespace).rollout_status("web").returncode == 0
    yield teams
    for namespace in (teams.a, teams.b, teams.p):
        admin_kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def people(slack: SlackStandin) -> SlackStandin:
    slack.add_user("U0ALICE", "alice", email="alice@example.com")
    slack.add_user("U0BOB", "bob", email="bob@example.com")
    slack.add_user("U0CAROL", "carol", email="carol@example.com")
    slack.add_user("U0GUEST", "gus", email="gus@partner.example", guest=True)
    slack.add_user("U0NOMAIL", "nomail")
    slack.set_usergroup("S0WEB", ["U0ALICE"], handle="web-team")
    return slack


def start(
    start_bot: Any,
    people: SlackStandin,
    tmp_path: Path,
    reads: str = "bot",
    env: dict[str, str] | None = None,
) -> SlackDriver:
    path = tmp_path / "impersonate-policy.yaml"
    path.write_text(POLICY.replace("READS", reads))
    return SlackDriver(people, start_bot(policy=path, env=env))


@pytest.fixture
def driver(start_bot: Any, people: SlackStandin, tmp_path: Path) -> SlackDriver:
    return start(start_bot, people, tmp_path)


@pytest.fixture
def trail(redis_server: RedisServer, redis_url: str) -> RedisAuditLog:
    return RedisAuditLog(redis_server.client(), Keys())


def api_audit(cluster: ClusterInfo, namespace: str, verb: str = "patch") -> list[dict[str, Any]]:
    """The API server's audit events for `verb` of Deployments in `namespace`."""
    path = cluster.directory / "audit.log"
    assert path.exists(), "the control plane has no audit log: restart it (make cluster-up)"
    events = []
    for line in path.read_text().splitlines():
        if namespace not in line:
            continue
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event.get("verb") == verb
            and ref.get("resource") == "deployments"
            and ref.get("namespace") == namespace
        ):
            events.append(event)
    return events


def wait_for_audit(
    cluster: ClusterInfo, namespace: str, timeout: float = 15, extra: str = ""
) -> dict[str, Any]:
    """The last completed patch of Deployments in `namespace` (with the extra field `extra`)."""
    deadline = time.monotonic() + timeout
    while True:
        done = [
            e
            for e in api_audit(cluster, namespace)
            if e.get("stage") == "ResponseComplete"
            and (not extra or extra in (e.get("impersonatedUser") or {}).get("extra", {}))
        ]
        if done:
            return done[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no audited patch of deployments in {namespace}")
        time.sleep(0.2)


def cards(slack: SlackStandin) -> list[str]:
    return [
        message_text({"text": m.text, "blocks": m.blocks})
        for m in slack.messages(CHANNEL)
        if "request `" in m.text or any(b.get("type") == "actions" for b in m.blocks)
    ]


def forbidden(user: str, verb: str, namespace: str) -> str:
    return (
        f'User "{user}" cannot {verb} resource "deployments" in API group "apps" in the '
        f'namespace "{namespace}"'
    )


# -- changes as the person ------------------------------------------------------------------------


def test_alice_changes_her_teams_deployment_as_herself(
    driver: SlackDriver,
    teams: Teams,
    admin_kubectl: Kubectl,
    cluster: ClusterInfo,
    trail: RedisAuditLog,
) -> None:
    said = driver.run(f"set image web nginx={NEW_IMAGE} -n {teams.a}")
    assert "image updated" in said, said
    kubectl = admin_kubectl.in_namespace(teams.a)
    assert kubectl.images("web") == {"nginx": NEW_IMAGE}

    event = wait_for_audit(cluster, teams.a)
    assert event["user"]["username"] == "slack-bot"
    assert event["impersonatedUser"]["username"] == "alice@example.com"
    assert set(event["impersonatedUser"]["groups"]) >= {"rollout-bot:users", "slack:web-team"}
    assert event["impersonatedUser"]["extra"] == {"rollout-bot.io/slack-user-id": ["U0ALICE"]}
    assert event["responseStatus"]["code"] == 200

    outcome = next(e for e in trail.recent(10) if e.event == "outcome" and e.namespace == teams.a)
    assert outcome.parameters["kubernetes_user"] == "alice@example.com"
    assert "slack:web-team" in outcome.parameters["kubernetes_groups"]
    assert "as alice@example.com" in driver.ask(f"audit web -n {teams.a}")


def test_alice_is_refused_in_another_team_in_kubectls_words_before_any_card(
    driver: SlackDriver, teams: Teams, admin_kubectl: Kubectl, trail: RedisAuditLog
) -> None:
    said = driver.run(f"set image web nginx={NEW_IMAGE} -n {teams.b}")
    assert forbidden("alice@example.com", "patch", teams.b) in said, said
    assert 'Error from server (Forbidden): deployments.apps "web" is forbidden' in said
    assert "Nothing was changed" in said and "RoleBinding" in said
    assert cards(driver.slack) == [], "no approval card for a change RBAC would refuse"
    assert admin_kubectl.in_namespace(teams.b).images("web") == {"nginx": OLD_IMAGE}
    denial = next(e for e in trail.recent(10) if e.event == "denial" and e.namespace == teams.b)
    assert denial.outcome == "denied by RBAC"
    assert denial.parameters["kubernetes_user"] == "alice@example.com"


def test_a_person_without_any_binding_is_refused(
    driver: SlackDriver, teams: Teams, admin_kubectl: Kubectl
) -> None:
    said = driver.run(f"set image web nginx={NEW_IMAGE} -n {teams.a}", user="U0CAROL", name="carol")
    assert forbidden("carol@example.com", "patch", teams.a) in said, said
    assert admin_kubectl.in_namespace(teams.a).images("web") == {"nginx": OLD_IMAGE}


@pytest.mark.parametrize(
    ("user", "words"),
    [("U0GUEST", "Workspace guests cannot act"), ("U0NOMAIL", "no email address for you")],
)
def test_a_guest_or_a_person_without_email_is_refused_clearly(
    driver: SlackDriver, teams: Teams, admin_kubectl: Kubectl, user: str, words: str
) -> None:
    said = driver.run(f"scale web --replicas=2 -n {teams.a}", user=user, name=user.lower())
    assert words in said and "Nothing was changed" in said, said
    assert admin_kubectl.in_namespace(teams.a).get("deployment/web")["spec"]["replicas"] == 1


def test_an_approved_request_runs_as_the_requester_with_the_approver_named(
    driver: SlackDriver, teams: Teams, admin_kubectl: Kubectl, cluster: ClusterInfo
) -> None:
    approve(driver, f"set image web nginx={NEW_IMAGE} -n {teams.p}")
    kubectl = admin_kubectl.in_namespace(teams.p)
    kubectl.wait_for(lambda: kubectl.images("web") == {"nginx": NEW_IMAGE}, what="the new image")

    event = wait_for_audit(cluster, teams.p)
    assert event["impersonatedUser"]["username"] == "alice@example.com"
    assert event["impersonatedUser"]["extra"] == {
        "rollout-bot.io/slack-user-id": ["U0ALICE"],
        "rollout-bot.io/approved-by": ["U0BOB"],
    }


def approve(driver: SlackDriver, text: str) -> None:
    """alice asks for a change that needs approval; bob approves it."""
    before = {m.ts for m in driver.slack.messages(CHANNEL)}
    said = driver.run(text)
    found = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert found, said
    (card,) = [m for m in driver.slack.messages(CHANNEL) if m.ts not in before]
    response, _ = driver.click(
        APPROVE_ACTION, found.group(1), user="U0BOB", name="bob", message_ts=card.ts
    )
    assert response.status == 200


def test_an_automatic_rollback_acts_as_the_person_whose_change_it_undoes(
    start_bot: Any,
    people: SlackStandin,
    tmp_path: Path,
    teams: Teams,
    admin_kubectl: Kubectl,
    cluster: ClusterInfo,
) -> None:
    driver = start(start_bot, people, tmp_path, env={"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"})
    approve(driver, f"set image web nginx=nginx:broken -n {teams.p}")
    kubectl = admin_kubectl.in_namespace(teams.p)
    kubectl.wait_for(
        lambda: (
            kubectl.history_revisions("web") == [2, 3]
            and kubectl.images("web") == {"nginx": OLD_IMAGE}
        ),
        timeout=90,
        what="the automatic rollback",
    )
    event = wait_for_audit(cluster, teams.p, extra="rollout-bot.io/continued-by")
    assert event["impersonatedUser"]["username"] == "alice@example.com"
    assert event["impersonatedUser"]["extra"] == {
        "rollout-bot.io/slack-user-id": ["U0ALICE"],
        "rollout-bot.io/continued-by": ["auto-rollback"],
    }


def test_the_sweeper_runs_an_orphaned_approved_request_as_the_requester(
    start_bot: Any,
    people: SlackStandin,
    tmp_path: Path,
    teams: Teams,
    admin_kubectl: Kubectl,
    cluster: ClusterInfo,
    redis_server: RedisServer,
) -> None:
    """The replica that took the final click died between 'approved' and 'running'."""
    first = start(start_bot, people, tmp_path)
    before = {m.ts for m in people.messages(CHANNEL)}
    said = first.run(f"set image web nginx={NEW_IMAGE} -n {teams.p}")
    found = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert found, said
    first.bot.kill()
    store = RedisApprovalStore(redis_server.client(), Keys())
    now = datetime.now(UTC)
    vote = Approval(user_id="U0BOB", user_name="bob", at=now)
    sig = Sealer(STATE_KEY.encode()).seal("vote", vote.sealed_content(found.group(1)))
    assert store.approve(found.group(1), "U0BOB", "bob", now, sig=sig).should_execute
    assert [m for m in people.messages(CHANNEL) if m.ts not in before]

    start(start_bot, people, tmp_path, env={"ROLLOUT_BOT_APPROVAL_RESUME_AFTER": "1"})
    kubectl = admin_kubectl.in_namespace(teams.p)
    kubectl.wait_for(lambda: kubectl.images("web") == {"nginx": NEW_IMAGE}, what="the new image")
    event = wait_for_audit(cluster, teams.p, extra="rollout-bot.io/continued-by")
    assert event["impersonatedUser"]["username"] == "alice@example.com"
    assert event["impersonatedUser"]["extra"] == {
        "rollout-bot.io/slack-user-id": ["U0ALICE"],
        "rollout-bot.io/approved-by": ["U0BOB"],
        "rollout-bot.io/continued-by": ["approval-sweeper"],
    }


# -- reads as the person --------------------------------------------------------------------------


def test_reads_as_the_person_are_refused_where_rbac_forbids_get(
    start_bot: Any, people: SlackStandin, tmp_path: Path, teams: Teams
) -> None:
    driver = start(start_bot, people, tmp_path, reads="impersonate")
    assert "successfully rolled out" in driver.ask(f"status web -n {teams.a}")
    said = driver.ask(f"status web -n {teams.a}", user="U0CAROL", name="carol")
    assert forbidden("carol@example.com", "get", teams.a) in said, said
    assert "rolled out" not in said


# -- rollout-bot check ----------------------------------------------------------------------------


def test_check_says_which_identity_each_slack_user_would_get(
    cluster: ClusterInfo, people: SlackStandin, redis_url: str, tmp_path: Path
) -> None:
    import subprocess

    from tests.support.bot_process import ROLLOUT_BOT, bot_env

    path = tmp_path / "impersonate-policy.yaml"
    path.write_text(POLICY.replace("READS", "bot"))
    env = bot_env(slack=people, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=path)
    result = subprocess.run(
        [str(ROLLOUT_BOT), "check"], env=env, capture_output=True, text=True, timeout=40
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "identity (*): impersonate, reads as the bot" in lines
    assert (
        "  U0ALICE @alice -> alice@example.com (groups: rollout-bot:users, slack:web-team)" in lines
    )
    assert "  U0CAROL @carol -> carol@example.com (groups: rollout-bot:users)" in lines
    guest = next(line for line in lines if line.startswith("  U0GUEST @gus: refused:"))
    assert "guests" in guest
    assert any(line.startswith("  U0NOMAIL @nomail: refused:") for line in lines)
