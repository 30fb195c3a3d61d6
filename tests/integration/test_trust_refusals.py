"""Refusals that could be walked around (issue 19, items 5, 7, 8, 9 and 11), each through the
real bot process, Redis, the Slack stand-in and the control plane; kubectl is the oracle for
what the cluster holds afterwards.

    5   `gitops: refuse`, put in force by a reload, stops pause, resume, both buttons and a
        request approved after the reload, in every process
    7   a channel bound to a context reaches only it; a `contexts:` pattern that matches no
        served context stops the bot (and a reload of it keeps the last good policy)
    8   a Roll back button posted for revision N does nothing once the workload moved on
    9   `<!channel>`, `<@U…>`, a link, `*` and a backtick from the cluster, Redis or a user are
        inert in every view
    11  an approval id with a trailing newline is refused before it is logged; `*` means full
        members of the workspace; a cluster named `default` is named on a card
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.views.cards import (
    APPROVE_ACTION,
    REJECT_ACTION,
    REJECT_REASON_ACTION,
    REJECT_REASON_BLOCK,
)
from handlers.views.progress import PAUSE_ACTION, ROLLBACK_ACTION
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import ROLLOUT_BOT, BotProcess, SlackDriver, bot_env, message_text
from tests.support.kubectl import Kubectl, deployment_manifest
from tests.support.multicluster import kubeconfig_path, named_kubeconfig
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(240)]

CHANNEL = "C0DEPLOYS"
FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5", "ROLLOUT_BOT_POLICY_RELOAD_INTERVAL": "0.5"}


def policy_text(namespace: str, *, gitops: str = "warn", extra: str = "") -> str:
    """Everyone reads, alice changes anything, a restart in `namespace` needs bob."""
    return textwrap.dedent(
        f"""\
        channels:
          {CHANNEL}: {{namespace: {namespace}, follow_outside: true}}
        permissions:
          - users: ["*"]
            namespaces: ["*"]
            actions: [list, status, history, diff, approvals, audit]
          - users: [U0ALICE]
            namespaces: ["*"]
            actions: ["*"]
        approvals:
          - namespaces: [{namespace}]
            actions: [restart]
            required: 1
            approvers: [U0BOB]
        gitops: {gitops}
        """
    ) + textwrap.dedent(extra)


def metric(bot: BotProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        series, _, number = line.rpartition(" ")
        if series == (f"{name}{{{wanted}}}" if wanted else name):
            return float(number)
    return 0.0


def request_id(said: str) -> str:
    found = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert found, f"expected an approval card, the bot said:\n{said}"
    return found.group(1)


def card(slack: SlackStandin, approval_id: str) -> PostedMessage:
    for message in slack.messages(CHANNEL):
        if message.thread_ts is None and approval_id in message_text(message.as_api_dict()):
            return message
    raise AssertionError(f"no card for {approval_id}")


def ephemeral(driver: SlackDriver, tag: str) -> str:
    return message_text(driver.reply(tag).params)


def progress_of(slack: SlackStandin, thread_ts: str, verdict: str) -> PostedMessage | None:
    for message in slack.messages(CHANNEL):
        if message.thread_ts == thread_ts and f"rollout *{verdict}*" in message_text(
            message.as_api_dict()
        ):
            return message
    return None


def buttons(message: PostedMessage) -> dict[str, str]:
    """action_id -> value of the message's buttons."""
    return {
        element["action_id"]: element.get("value", "")
        for block in message.blocks
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }


def revision(kubectl: Kubectl, name: str = "web") -> int:
    annotations = kubectl.get(f"deployment/{name}")["metadata"].get("annotations") or {}
    return int(annotations["deployment.kubernetes.io/revision"])


# -- 5: gitops: refuse, reloaded, on every change path --------------------------------------------


def test_gitops_refuse_put_in_force_by_a_reload_stops_every_change_path(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    ns = granted_namespace
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(ns, gitops="warn"))
    bot = start_bot(policy=policy, env=FAST)
    driver = SlackDriver(slack, bot)
    manifest = deployment_manifest("web", "app:1", replicas=1)
    manifest["metadata"]["labels"] = {"argocd.argoproj.io/instance": "shop"}
    kubectl.apply(manifest)
    assert kubectl.rollout_status("web").returncode == 0
    # Asked for under `warn`; approved once `refuse` is in force.
    approval = request_id(driver.run(f"restart web -n {ns}"))

    policy.write_text(policy_text(ns, gitops="refuse"))
    eventually(
        "the reload",
        lambda: metric(bot, "rollout_bot_policy_reloads_total", result="applied") == 1,
        30,
    )
    time.sleep(2)  # several reload intervals: every worker process has read the file too

    for attempt in range(4):  # the commands land on different worker processes
        said = driver.run(f"pause web -n {ns}")
        assert "gitops: refuse" in said and "Nothing was changed" in said, (attempt, said)
    assert not kubectl.get("deployment/web")["spec"].get("paused")

    kubectl.run("rollout", "pause", "deployment/web")
    said = driver.run(f"resume web -n {ns}")
    assert "gitops: refuse" in said, said
    assert kubectl.get("deployment/web")["spec"].get("paused") is True
    kubectl.run("rollout", "resume", "deployment/web")

    at = f"{ns}/web@{revision(kubectl)}"  # what the bot puts on a failed rollout's buttons
    for action in (ROLLBACK_ACTION, PAUSE_ACTION):
        _, tag = driver.click(action, at, user="U0ALICE", name="alice")
        assert "gitops: refuse" in ephemeral(driver, tag), action
    assert not kubectl.get("deployment/web")["spec"].get("paused")
    assert kubectl.history_revisions("web") == [1]

    _, tag = driver.click(
        APPROVE_ACTION, approval, user="U0BOB", message_ts=card(slack, approval).ts
    )
    driver.wait(
        lambda: "gitops: refuse" in message_text(card(slack, approval).as_api_dict()),
        what="the approved request to be refused",
    )
    template = kubectl.get("deployment/web")["spec"]["template"]["metadata"]
    assert "kubectl.kubernetes.io/restartedAt" not in (template.get("annotations") or {})
    assert kubectl.history_revisions("web") == [1]


# -- 7: cluster scoping closed by default ---------------------------------------------------------


@pytest.fixture
def two_contexts(cluster: ClusterInfo, tmp_path: Path) -> str:
    """KUBECONFIG with contexts `default` and `west`: two names the bot serves as two
    clusters (both reach the session's control plane, so kubectl sees what either did)."""
    return kubeconfig_path(
        [
            named_kubeconfig(cluster.bot_kubeconfig, name, tmp_path / f"{name}.kubeconfig")
            for name in ("default", "west")
        ]
    )


def test_a_channel_bound_to_a_context_reaches_no_other(
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
    two_contexts: str,
) -> None:
    ns = granted_namespace
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        policy_text(ns).replace(
            f"{{namespace: {ns}, follow_outside: true}}", f"{{context: default, namespace: {ns}}}"
        )
    )
    env = {"KUBECONFIG": two_contexts, "ROLLOUT_BOT_CONTEXTS": "default,west"}
    driver = SlackDriver(slack, start_bot(policy=policy, env=env))
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    assert kubectl.rollout_status("web").returncode == 0

    said = driver.run("scale web --replicas=2 --context west")
    assert "may not act on context `west`" in said, said
    assert "`{context: default, namespace: " in said and "Nothing was changed" in said
    assert kubectl.get("deployment/web")["spec"]["replicas"] == 1
    # Its own context still works.
    assert "scaled" in driver.run("scale web --replicas=2")
    assert kubectl.get("deployment/web")["spec"]["replicas"] == 2


def test_a_contexts_pattern_matching_no_served_context_stops_the_bot_and_a_reload(
    start_bot: Any,
    slack: SlackStandin,
    redis_url: str,
    cluster: ClusterInfo,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
) -> None:
    ns = granted_namespace
    typo = policy_text(ns).replace(
        "actions: [list, status,", "contexts: [prod]\n    actions: [list, status,"
    )
    bad = tmp_path / "typo.yaml"
    bad.write_text(typo)
    line = typo.splitlines().index("    contexts: [prod]") + 1
    env = bot_env(slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=bad)
    done = subprocess.run(
        [str(ROLLOUT_BOT), "serve", "--http", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert f"{bad}:{line}: permissions[0].contexts[0]: `prod` matches no context" in done.stderr
    assert "Traceback" not in done.stderr

    # A reload to it is refused the same way, and the last good policy stays in force.
    good = tmp_path / "policy.yaml"
    good.write_text(policy_text(ns))
    bot = start_bot(policy=good, env=FAST)
    driver = SlackDriver(slack, bot)
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    assert kubectl.rollout_status("web").returncode == 0
    assert "1/1" in driver.ask("list")  # the worker process is up, with the good policy
    good.write_text(typo)
    eventually(
        "the refused reload",
        lambda: metric(bot, "rollout_bot_policy_reloads_total", result="invalid") == 1,
        30,
    )
    assert "`prod` matches no context" in bot.logs()
    assert "1/1" in driver.ask("list")  # the `*` read rule still applies everywhere


# -- 8: a button outlives its moment --------------------------------------------------------------


def test_a_roll_back_button_does_nothing_once_a_newer_deploy_landed(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    ns = granted_namespace
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(ns))
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    manifest = deployment_manifest("web", "app:1", replicas=1, progress_deadline=3)
    kubectl.apply(manifest)
    assert kubectl.rollout_status("web").returncode == 0
    assert "image updated" in driver.run("set image web web=app:broken-1")
    head = next(
        m
        for m in slack.messages(CHANNEL)
        if m.thread_ts is None and "image updated" in message_text(m.as_api_dict())
    )
    failed = driver.wait(lambda: progress_of(slack, head.ts, "failed"), 90, "the failed verdict")
    values = buttons(failed)
    assert values[ROLLBACK_ACTION] == f"{ns}/web@2"

    # A good deploy lands after the failure (CI, kubectl, the GitOps tool): revision 3.
    kubectl.run("set", "image", "deployment/web", "web=app:3")
    assert kubectl.rollout_status("web").returncode == 0
    assert revision(kubectl) == 3

    for action in (ROLLBACK_ACTION, PAUSE_ACTION):
        _, tag = driver.click(
            action, values[action], user="U0ALICE", name="alice", message_ts=failed.ts
        )
        said = ephemeral(driver, tag)
        assert "was for revision 2" in said and "`web` is now at revision 3" in said, said
        assert "Nothing was changed" in said
    assert kubectl.images("web") == {"web": "app:3"}
    assert revision(kubectl) == 3
    assert not kubectl.get("deployment/web")["spec"].get("paused")


# -- 9: formatting injection from the cluster, Redis and users ------------------------------------

PAYLOAD = "<!channel> <@U0EVIL> <https://evil.example|click> *bold* `tick`"
# The tracking id's application is what precedes its first colon: no link there.
TRACKING = "<!channel> <@U0EVIL> <!subteam^S0EVIL> *bold* `tick`:apps/Deployment:ns/web"
IMAGE_PAYLOAD = "<!channel><@U0EVIL><https://evil.example|click>*`"
RAW = ("<!channel>", "<@U0EVIL", "<!subteam^S0EVIL", "<https://evil")


def strings(node: Any) -> Iterator[str]:
    """Every string a Slack client would render: text fields, in blocks and the fallback."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "value") and isinstance(value, str):
                yield value
            else:
                yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def shown(slack: SlackStandin) -> list[tuple[str, str]]:
    """(method, text) of every message the bot sent, in every version."""
    found = []
    for call in slack.calls():
        if call.method in ("chat.postMessage", "chat.update", "response_url", "chat.postEphemeral"):
            params = {"text": call.params.get("text"), "blocks": call.params.get("blocks")}
            if isinstance(params["blocks"], str):
                params["blocks"] = json.loads(params["blocks"])
            found.extend((call.method, text) for text in strings(params))
    return found


def test_markup_from_the_cluster_redis_and_users_is_inert_in_every_view(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    ns = granted_namespace
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(ns))
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    manifest = deployment_manifest("web", "app:1", replicas=1)
    manifest["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": TRACKING,
        "kubernetes.io/change-cause": PAYLOAD,
    }
    manifest["spec"]["template"]["metadata"]["annotations"] = {"note": PAYLOAD}
    kubectl.apply(manifest)
    assert kubectl.rollout_status("web").returncode == 0
    # Revision 2 from outside the bot (its change-cause, the payload, names who made it).
    kubectl.run("set", "image", "deployment/web", f"web=app:2{IMAGE_PAYLOAD}")
    driver.wait(
        lambda: any("from outside the bot" in t for _, t in shown(slack)),
        60,
        "the outside change notice",
    )
    # What a user types can carry it too (Slack sends `&lt;` for a typed `<`).
    typed = PAYLOAD.replace("<", "&lt;").replace(">", "&gt;").replace('"', "")
    views = {
        "list": driver.ask("list"),
        "status": driver.ask("status web"),
        "history": driver.ask("history web"),
        "revision": driver.ask("history web --revision=2"),
        "diff": driver.ask("diff web 1 2"),
        "set image": driver.run(f'set image web web=app:3 --reason="{typed}"'),
    }
    approval = request_id(driver.run(f'restart web --reason="{typed}"', name="mal<!channel>"))
    views["approvals"] = driver.ask("approvals")
    driver.click(
        REJECT_ACTION,
        approval,
        user="U0BOB",
        message_ts=card(slack, approval).ts,
        state={"values": {REJECT_REASON_BLOCK: {REJECT_REASON_ACTION: {"value": PAYLOAD}}}},
    )
    driver.wait(
        lambda: "Rejected by" in message_text(card(slack, approval).as_api_dict()),
        what="the rejected card",
    )
    views["audit"] = driver.ask("audit web")
    views["card"] = message_text(card(slack, approval).as_api_dict())

    for name, text in views.items():
        assert "&lt;!channel&gt;" in text, (name, text)  # the payload reached the view, inert
    leaked = [(method, text) for method, text in shown(slack) if any(r in text for r in RAW)]
    assert leaked == [], leaked
    # In a code span a backtick would end it early: it shows as a quote there.
    assert (
        "Argo CD (Application `&lt;!channel&gt; &lt;@U0EVIL&gt; &lt;!subteam^S0EVIL&gt; "
        "*bold* 'tick'`)" in views["set image"]
    )


# -- 11: smaller items ----------------------------------------------------------------------------


def test_an_approval_id_with_a_trailing_newline_is_refused_before_it_is_logged(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    ns = granted_namespace
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(ns))
    bot = start_bot(policy=policy, env=FAST)
    driver = SlackDriver(slack, bot)
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    approval = request_id(driver.run("restart web"))
    forged = f"{approval}\n2026-12-07 04:00:00 INFO approval FORGED approved by U0BOB"
    _, tag = driver.click(APPROVE_ACTION, forged, user="U0BOB")
    said = ephemeral(driver, tag)
    assert "does not name an approval request" in said and "Nothing was changed" in said
    time.sleep(0.5)
    assert "FORGED" not in bot.logs()
    _, tag = driver.click(APPROVE_ACTION, f"{approval}\n", user="U0BOB")
    assert "does not name an approval request" in ephemeral(driver, tag)
    assert "Waiting for approval" in message_text(card(slack, approval).as_api_dict())


def test_star_means_full_members_of_the_workspace(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    ns = granted_namespace
    slack.add_user("U0GUEST", "guest", guest="multi-channel")
    slack.add_user("U0SINGLE", "single", guest="single-channel")
    slack.add_user("U0OTHER", "other", team_id="T0OTHERCO")  # Slack Connect
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(ns))
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    assert "web" in driver.ask("list", user="U0CAROL", name="carol")
    for user in ("U0GUEST", "U0SINGLE", "U0OTHER", "U0NOBODY"):
        said = driver.ask("list", user=user, name=user.lower())
        assert "full members of this workspace" in said, (user, said)
        assert "app:1" not in said
    # The policy can say more.
    policy.write_text(policy_text(ns) + "wildcard_users: anyone\n")
    eventually(
        "the reload to reach the workers",
        lambda: "app:1" in driver.ask("list", user="U0GUEST", name="guest"),
        30,
    )


def test_an_approval_card_names_a_cluster_called_default_when_several_are_served(
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
    two_contexts: str,
) -> None:
    ns = granted_namespace
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(ns))
    env = {"KUBECONFIG": two_contexts, "ROLLOUT_BOT_CONTEXTS": "default,west"}
    driver = SlackDriver(slack, start_bot(policy=policy, env=env))
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    approval = request_id(driver.run("restart web --context default"))
    assert "cluster `default`" in message_text(card(slack, approval).as_api_dict())
