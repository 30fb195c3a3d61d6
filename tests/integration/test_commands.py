"""Acceptance tests for the /rollout slash command, through the real bot process.

Every verb runs through `rollout-bot serve --http` against the local control plane, and kubectl
is the independent oracle: where the bot claims a revision, an image, a change-cause or a
status, `kubectl rollout history|status` must say the same. Refusals must say what was refused
and that nothing changed, and kubectl must confirm that nothing did.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.signed_requests import (
    Response,
    send_raw,
    send_slash_command,
    sign,
    slash_command_payload,
)
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SIGNING_SECRET, BotProcess, SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

# What an ApiException (or any other library error) looks like when it leaks into a reply.
RAW_ERROR_MARKERS = ("Reason:", "HTTP response headers", "b'{", "Traceback", "ApiException")
# Slack gives up on a slash command that is not acknowledged within 3 seconds.
SLACK_ACK_DEADLINE = 3.0
# What Slack's (and macOS's) autocorrect makes of `--` and `-` as people type.
EM_DASH, EN_DASH = "\u2014", "\u2013"


# -- helpers ------------------------------------------------------------------------------------


def ack_text(response: Response) -> str:
    """What Slack shows for an ack that carries a message (empty for a bare ack)."""
    return message_text(response.json()) if response.body.strip() else ""


def code_rows(text: str, header: str) -> list[list[str]]:
    """The rows under the table whose header line starts with `header`, split on 2+ spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("```"):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def deploy(
    kubectl: Kubectl,
    name: str = "web",
    image: str = "nginx:1.18-alpine",
    *,
    replicas: int = 1,
    container: str = "nginx",
) -> None:
    """A Deployment made by an admin with kubectl (not by the bot), rolled out."""
    kubectl.apply(deployment_manifest(name, image, replicas=replicas, container=container))
    assert kubectl.rollout_status(name).returncode == 0


def deploy_with_sidecar(kubectl: Kubectl) -> None:
    """`web` with two containers: `nginx` (nginx:1.18-alpine) and `sidecar` (envoy:1.30)."""
    manifest = deployment_manifest("web", "nginx:1.18-alpine", replicas=1, container="nginx")
    containers = manifest["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "sidecar", "image": "envoy:1.30"})
    kubectl.apply(manifest)
    assert kubectl.rollout_status("web").returncode == 0


def set_image_with_kubectl(kubectl: Kubectl, name: str, image: str) -> None:
    kubectl.run("set", "image", f"deployment/{name}", f"nginx={image}")
    assert kubectl.rollout_status(name).returncode == 0


def snapshot(kubectl: Kubectl, name: str) -> dict[str, Any]:
    """Everything a mutation would change: spec generation, replicas, images, annotations,
    revisions."""
    deployment = kubectl.get(f"deployment/{name}")
    return {
        "generation": deployment["metadata"]["generation"],
        "annotations": deployment["metadata"].get("annotations", {}),
        "replicas": deployment["spec"]["replicas"],
        "paused": deployment["spec"].get("paused", False),
        "images": kubectl.images(name),
        "revisions": kubectl.history_revisions(name),
    }


def verdict(kubectl: Kubectl, name: str) -> str:
    """kubectl's current status sentence, without waiting for the rollout."""
    out = kubectl.run("rollout", "status", f"deployment/{name}", "--watch=false").stdout
    return out.strip().splitlines()[-1]


def assert_no_raw_errors(*replies: str) -> None:
    for reply in replies:
        for marker in RAW_ERROR_MARKERS:
            assert marker not in reply, f"raw library error text {marker!r} in reply:\n{reply}"


def posts_after(slack: SlackStandin, count: int) -> list[str]:
    return [message_text(c.params) for c in slack.calls("chat.postMessage")[count:]]


# -- every verb, cross-checked with kubectl ------------------------------------------------------


def test_create_names_the_container_after_the_image_and_labels_the_app(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    said = driver.run(f"create web --image=nginx:1.18-alpine -n {ns}")
    assert "deployment.apps/web created" in said
    assert kubectl.rollout_status("web").returncode == 0
    deployment = kubectl.get("deployment/web")
    assert kubectl.images("web") == {"nginx": "nginx:1.18-alpine"}
    assert deployment["metadata"]["labels"] == {"app": "web"}
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "web"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert kubectl.history_revisions("web") == [1]

    said = driver.run(f"create api --image=ghcr.io/acme/api-server:2.1 --replicas=2 -n {ns}")
    assert "deployment.apps/api created" in said
    assert kubectl.images("api") == {"api-server": "ghcr.io/acme/api-server:2.1"}
    assert kubectl.get("deployment/api")["spec"]["replicas"] == 2

    said = driver.run(f"create web --image=nginx:1.27 -n {ns}")
    assert "already exists" in said and "Nothing was changed" in said
    assert kubectl.images("web") == {"nginx": "nginx:1.18-alpine"}


def test_list_shows_every_deployment_with_its_images(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    deploy(kubectl, "web", "nginx:1.18-alpine", replicas=2)
    deploy(kubectl, "api", "ghcr.io/acme/api:3.4", container="api")

    listed = driver.ask(f"list -n {granted_namespace}")

    rows = {row[1]: row for row in code_rows(listed, "KIND")}
    assert set(rows) == {"web", "api"}
    for name in rows:
        oracle = kubectl.get(f"deployment/{name}")
        kind, _, ready, _updated, _available, revision, images = rows[name]
        assert kind == "Deployment"
        expected = ", ".join(f"{c}={i}" for c, i in kubectl.images(name).items())
        assert images == expected
        assert ready == f"{oracle['status']['readyReplicas']}/{oracle['spec']['replicas']}"
        assert [int(revision)] == kubectl.history_revisions(name)


def test_status_shows_kubectls_verdict_replica_sets_and_pods(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl, "web", "nginx:1.18-alpine", replicas=2)

    status = driver.ask(f"status web -n {ns}")

    assert verdict(kubectl, "web") == 'deployment "web" successfully rolled out'
    assert verdict(kubectl, "web") in status
    replica_sets = kubectl.get("rs", "-l", "app=web")["items"]
    expected_rs = {
        (
            rs["metadata"]["name"],
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            ", ".join(
                f"{c['name']}={c['image']}" for c in rs["spec"]["template"]["spec"]["containers"]
            ),
        )
        for rs in replica_sets
    }
    shown_rs = {
        (row[0].removesuffix(" (current)"), row[1], row[4])
        for row in code_rows(status, "REPLICASET")
    }
    assert shown_rs == expected_rs
    pods = {p["metadata"]["name"] for p in kubectl.get("pods", "-l", "app=web")["items"]}
    shown_pods = {row[0]: row for row in code_rows(status, "POD")}
    assert set(shown_pods) == pods and len(pods) == 2
    for row in shown_pods.values():
        assert row[1:3] == ["1/1", "Running"]


def test_status_of_a_stuck_rollout_says_what_kubectl_says_and_shows_the_waiting_pod(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl, "web", "nginx:1.18-alpine", replicas=2)
    said = driver.run(f"set image web nginx=nginx:broken-1 -n {ns}")
    assert "image updated" in said

    def stuck() -> bool:
        pods = kubectl.get("pods", "-l", "app=web")["items"]
        waiting = [
            s["state"]["waiting"]["reason"]
            for p in pods
            for s in p["status"].get("containerStatuses", [])
            if "waiting" in s.get("state", {})
        ]
        return waiting == ["ImagePullBackOff"] and verdict(kubectl, "web").startswith("Waiting")

    kubectl.wait_for(stuck, timeout=30, what="the new pod to be stuck in ImagePullBackOff")
    before = verdict(kubectl, "web")
    status = driver.ask(f"status web -n {ns}")
    assert verdict(kubectl, "web") == before, "the rollout moved while the test looked at it"

    assert before in status  # e.g. 'Waiting for deployment "web" rollout to finish: 1 out of 2…'
    assert "successfully rolled out" not in status
    pods = {row[0]: row for row in code_rows(status, "POD")}
    broken = [row for row in pods.values() if row[2] == "ImagePullBackOff"]
    assert len(broken) == 1 and broken[0][1] == "0/1"
    current = [row for row in code_rows(status, "REPLICASET") if "(current)" in row[0]]
    assert len(current) == 1 and current[0][4] == "nginx=nginx:broken-1"


def test_set_image_history_and_diff_agree_with_kubectl(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    assert "created" in driver.run(f"create web --image=nginx:1.18-alpine -n {ns}")
    assert kubectl.rollout_status("web").returncode == 0
    said = driver.run(f"set image web nginx=nginx:1.19-alpine -n {ns} --reason=CVE-1")
    assert "image updated" in said and "nginx:1.18-alpine → nginx:1.19-alpine" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert "image updated" in driver.run(f"set image deploy/web nginx=nginx:1.20-alpine -n {ns}")
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.images("web") == {"nginx": "nginx:1.20-alpine"}

    history = driver.ask(f"history web -n {ns}")
    oracle = kubectl.history_table("web")
    assert list(oracle) == [1, 2, 3]
    shown = {}
    # Two lines a revision: REVISION CREATED [IMAGES], then its CHANGE-CAUSE in kubectl's words.
    rows = code_rows(history, "REVISION")
    assert rows[0] == ["CHANGE-CAUSE"]
    for line, cause in zip(rows[1::2], rows[2::2], strict=True):
        number = line[0]
        shown[int(number.split()[0])] = "  ".join(cause)
        assert number.endswith("*") == (number.split()[0] == "3"), "only rev 3 is current"
    assert shown == oracle
    assert oracle[2] == "set image nginx=nginx:1.19-alpine by @alice via Slack: CVE-1"

    detail = driver.ask(f"history web --revision=1 -n {ns}")
    kubectl_detail = kubectl.run("rollout", "history", "deployment/web", "--revision=1").stdout
    kubectl_image = re.search(r"Image:\s+(\S+)", kubectl_detail)
    assert kubectl_image is not None and kubectl_image.group(1) == "nginx:1.18-alpine"
    assert re.search(r"Image:\s+nginx:1\.18-alpine\s*$", detail, re.MULTILINE)
    assert "revision #1" in detail and "nginx:1.20-alpine" not in detail

    diff = driver.ask(f"diff web 1 2 -n {ns}")
    assert "-  - image: nginx:1.18-alpine" in diff.splitlines()
    assert "+  - image: nginx:1.19-alpine" in diff.splitlines()
    assert "pod-template-hash" not in diff

    diff = driver.ask(f"diff web 2 -n {ns}")  # against the current template
    assert "-  - image: nginx:1.19-alpine" in diff.splitlines()
    assert "+  - image: nginx:1.20-alpine" in diff.splitlines()
    assert "pod-template-hash" not in diff

    missing = driver.ask(f"diff web 1 7 -n {ns}")
    assert "revision 7" in missing and "1, 2, 3" in missing


def test_set_image_to_the_same_image_says_no_change_and_makes_no_revision(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    deploy(kubectl)
    before = snapshot(kubectl, "web")
    posts = len(slack.calls("chat.postMessage"))

    said = driver.run(f"set image web nginx=nginx:1.18-alpine -n {granted_namespace}")

    assert "no change" in said and "no new revision" in said
    assert snapshot(kubectl, "web") == before
    assert kubectl.history_revisions("web") == [1]
    assert posts_after(slack, posts) == [], "a no-op must not be announced in the channel"


def test_unknown_container_names_the_existing_ones(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    deploy_with_sidecar(kubectl)
    before = snapshot(kubectl, "web")

    said = driver.run(f"set image web redis=redis:7 -n {granted_namespace}")

    assert 'unable to find container named "redis"' in said
    assert "nginx" in said and "sidecar" in said, "the reply should name the real containers"
    assert snapshot(kubectl, "web") == before


def test_star_sets_every_container_in_one_revision(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    deploy_with_sidecar(kubectl)

    said = driver.run(f"set image web *=busybox:1.36 -n {granted_namespace}")

    assert "image updated" in said
    assert "nginx: nginx:1.18-alpine → busybox:1.36" in said
    assert "sidecar: envoy:1.30 → busybox:1.36" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.images("web") == {"nginx": "busybox:1.36", "sidecar": "busybox:1.36"}
    assert kubectl.history_revisions("web") == [1, 2]


def test_scale_changes_replicas_without_a_new_revision(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl)

    said = driver.run(f"scale deploy/web --replicas=3 -n {ns}")

    assert "deployment.apps/web scaled" in said and "replicas: 1 → 3" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.get("deployment/web")["status"]["readyReplicas"] == 3
    assert kubectl.history_revisions("web") == [1]

    said = driver.run(f"scale web --replicas=3 -n {ns}")
    assert "already at 3 replicas" in said and "nothing changed" in said

    said = driver.run(f"scale web --replicas=0 -n {ns}")
    assert "replicas: 3 → 0" in said
    kubectl.wait_for(
        lambda: not kubectl.get("pods", "-l", "app=web")["items"], what="every pod to go"
    )


def test_undo_to_previous_and_to_a_revision_renumbers_like_kubectl(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl, image="nginx:1.18-alpine")
    set_image_with_kubectl(kubectl, "web", "nginx:1.19-alpine")
    assert kubectl.history_revisions("web") == [1, 2]

    said = driver.run(f"undo web -n {ns}")
    assert "deployment.apps/web rolled back" in said and "revision 1" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.images("web") == {"nginx": "nginx:1.18-alpine"}
    assert kubectl.history_revisions("web") == [2, 3]  # revision 1 came back as 3

    before = snapshot(kubectl, "web")
    posts = len(slack.calls("chat.postMessage"))
    said = driver.run(f"undo web --to-revision=3 -n {ns}")
    assert "skipped rollback (current template already matches revision 3)" in said
    assert snapshot(kubectl, "web") == before
    assert posts_after(slack, posts) == []

    said = driver.run(f"undo web --to-revision=2 -n {ns} --reason=“back to 1.19”")
    assert "rolled back" in said and "revision 2" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.images("web") == {"nginx": "nginx:1.19-alpine"}
    assert kubectl.history_revisions("web") == [3, 4]
    assert kubectl.history_table("web")[4].endswith("via Slack: back to 1.19")

    before = snapshot(kubectl, "web")
    said = driver.run(f"undo web --to-revision=9 -n {ns}")
    assert "unable to find specified revision 9" in said
    assert "3, 4" in said, "the refusal should list the revisions that do exist"
    assert snapshot(kubectl, "web") == before


def test_pause_holds_template_changes_until_resume(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl, image="nginx:1.18-alpine")
    set_image_with_kubectl(kubectl, "web", "nginx:1.19-alpine")

    said = driver.run(f"pause web -n {ns}")
    assert "deployment.apps/web paused" in said
    assert kubectl.get("deployment/web")["spec"]["paused"] is True
    said = driver.run(f"pause web -n {ns}")
    assert "already paused" in said

    said = driver.run(f"set image web nginx=nginx:1.20-alpine -n {ns}")
    assert "image updated" in said
    assert kubectl.history_revisions("web") == [1, 2], "a paused Deployment makes no revision"
    assert "paused" in driver.ask(f"status web -n {ns}")

    before = snapshot(kubectl, "web")
    said = driver.run(f"undo web -n {ns}")
    assert "cannot rollback a paused deployment" in said and "resume" in said
    said = driver.run(f"restart web -n {ns}")
    assert "can't restart paused deployment" in said
    assert snapshot(kubectl, "web") == before

    said = driver.run(f"resume web -n {ns}")
    assert "deployment.apps/web resumed" in said
    assert not kubectl.get("deployment/web")["spec"].get("paused")
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1, 2, 3]
    assert kubectl.images("web") == {"nginx": "nginx:1.20-alpine"}
    said = driver.run(f"resume web -n {ns}")
    assert "is not paused" in said


def test_restart_makes_a_new_revision_stamped_with_restarted_at(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    deploy(kubectl, replicas=2)
    pods_before = {p["metadata"]["name"] for p in kubectl.get("pods", "-l", "app=web")["items"]}

    said = driver.run(f"restart web -n {granted_namespace} --reason=leak")

    assert "deployment.apps/web restarted" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1, 2]
    template = kubectl.get("deployment/web")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    revision_2 = kubectl.run("rollout", "history", "deployment/web", "--revision=2").stdout
    assert "kubectl.kubernetes.io/restartedAt" in revision_2
    assert kubectl.images("web") == {"nginx": "nginx:1.18-alpine"}

    def replaced() -> bool:
        pods = {p["metadata"]["name"] for p in kubectl.get("pods", "-l", "app=web")["items"]}
        return len(pods) == 2 and not pods & pods_before

    kubectl.wait_for(replaced, timeout=30, what="every pod to be replaced")


# -- errors ---------------------------------------------------------------------------------------


def test_deployment_not_found_suggests_the_close_name(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl)
    before = snapshot(kubectl, "web")

    for reply in (
        driver.ask(f"status wbe -n {ns}"),
        driver.ask(f"history webb -n {ns}"),
        driver.run(f"scale weeb --replicas=2 -n {ns}"),
    ):
        assert "was not found" in reply and "Did you mean `web`?" in reply
        assert_no_raw_errors(reply)
    assert snapshot(kubectl, "web") == before

    reply = driver.ask(f"status payments -n {ns}")
    assert "`payments` was not found" in reply and "Did you mean" not in reply
    assert f"/rollout list -n {ns}" in reply


def test_namespace_not_found_says_so(
    driver: SlackDriver, admin_kubectl: Kubectl, granted_namespace: str
) -> None:
    missing = f"{granted_namespace}-nope"
    replies = [
        driver.ask(f"status web -n {missing}"),
        driver.ask(f"list -n {missing}"),
        driver.run(f"scale web --replicas=2 -n {missing}"),
        driver.run(f"create web --image=nginx:1.27 -n {missing}"),
    ]
    for reply in replies:
        assert f"Namespace `{missing}` does not exist" in reply, reply
        assert "Nothing was changed" in reply
        assert_no_raw_errors(reply)
    probe = admin_kubectl.run("get", "namespace", missing, check=False)
    assert probe.returncode != 0, "the bot must not have created the namespace"


def test_forbidden_names_the_verb_and_resource_and_says_nothing_changed(
    driver: SlackDriver, kubectl: Kubectl, namespace: str
) -> None:
    """The bot has no RoleBinding in this namespace (plain `namespace`, not `granted_namespace`)."""
    deploy(kubectl)
    before = snapshot(kubectl, "web")

    read = driver.ask(f"status web -n {namespace}")
    listed = driver.ask(f"list -n {namespace}")
    scaled = driver.run(f"scale web --replicas=3 -n {namespace}")
    created = driver.run(f"create api --image=nginx:1.27 -n {namespace}")

    for reply, verb in ((read, "get"), (listed, "list"), (scaled, "get"), (created, "create")):
        assert f"not allowed to *{verb}* `deployments`" in reply, reply
        assert f"namespace `{namespace}`" in reply
        assert "Nothing was changed" in reply
        assert_no_raw_errors(reply)
    assert snapshot(kubectl, "web") == before
    assert [d["metadata"]["name"] for d in kubectl.get("deployments")["items"]] == ["web"]


def test_bad_input_is_answered_in_the_ack_with_usage_and_changes_nothing(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl)
    before = snapshot(kubectl, "web")
    posts = len(slack.calls("chat.postMessage"))
    scale_usage = "/rollout scale DEPLOY --replicas=N [-n NS] [--reason=TEXT]"
    cases = {
        f"scale Web_1 --replicas=2 -n {ns}": "is not a valid deployment name",
        f"scale web --replicas=abc -n {ns}": "must be a whole number from 0 to 100, got `abc`",
        f"scale web --replicas=1e3 -n {ns}": "got `1e3`",
        f"scale web --replicas=101 -n {ns}": "got `101`",
        f"scale web --replicas=2 --force -n {ns}": "unknown flag `--force`",
        f'scale web --replicas=2 -n {ns} --reason="forgot to close': "a quote is not closed",
    }
    for text, problem in cases.items():
        response, _ = driver.command(text)
        answer = ack_text(response)
        assert problem in answer, (text, answer)
        assert scale_usage in answer, (text, answer)
        assert_no_raw_errors(answer)

    response, _ = driver.command(f"create Bad_Name --image=nginx:1.27 -n {ns}")
    assert "/rollout create DEPLOY --image=IMAGE" in ack_text(response)

    assert snapshot(kubectl, "web") == before
    assert [d["metadata"]["name"] for d in kubectl.get("deployments")["items"]] == ["web"]
    assert posts_after(slack, posts) == []
    assert slack.calls("response_url") == [], "the ack should be the only answer"


def test_user_without_mutation_rights_is_refused_and_nothing_changes(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl)
    before = snapshot(kubectl, "web")
    posts = len(slack.calls("chat.postMessage"))
    mallory = {"user": "U0MALLORY", "name": "mallory"}

    for text, action in (
        (f"scale web --replicas=5 -n {ns}", "scale"),
        (f"set image web nginx=nginx:1.27 -n {ns}", "set-image"),
        (f"restart web -n {ns}", "restart"),
        (f"create evil --image=nginx:1.27 -n {ns}", "create"),
    ):
        said = driver.run(text, **mallory)
        assert f"You are not allowed to *{action}*" in said, said
        assert "Nothing was changed" in said

    assert snapshot(kubectl, "web") == before
    assert [d["metadata"]["name"] for d in kubectl.get("deployments")["items"]] == ["web"]
    assert posts_after(slack, posts) == []
    assert 'deployment "web" successfully rolled out' in driver.ask(
        f"status web -n {ns}", **mallory
    )


def test_without_a_policy_file_mutations_explain_rollout_bot_policy_and_reads_work(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl)
    before = snapshot(kubectl, "web")
    driver = SlackDriver(slack, start_bot(policy=None))

    said = driver.run(f"scale web --replicas=3 -n {ns}")

    assert "*scale* is not allowed" in said and "without a policy file" in said
    assert "ROLLOUT_BOT_POLICY" in said and "Nothing was changed" in said
    assert snapshot(kubectl, "web") == before
    assert 'deployment "web" successfully rolled out' in driver.ask(f"status web -n {ns}")
    assert "nginx=nginx:1.18-alpine" in driver.ask(f"list -n {ns}")
    assert "ROLLOUT_BOT_POLICY" in driver.run(f"undo web -n {ns}")


def test_slack_smart_punctuation_in_a_real_command(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    deploy(kubectl)

    said = driver.run(f"scale web {EM_DASH}replicas=2 {EN_DASH}n {ns} {EM_DASH}reason=“load test”")

    assert "replicas: 1 → 2" in said
    assert kubectl.rollout_status("web").returncode == 0
    deployment = kubectl.get("deployment/web")
    assert deployment["spec"]["replicas"] == 2
    # The reason was read whole from the curly quotes; scale is not a template change, so it is
    # announced (and audited) but not written as the change-cause, as kubectl does.
    assert "Reason: load test" in said
    assert "kubernetes.io/change-cause" not in (deployment["metadata"].get("annotations") or {})
    assert 'deployment "web" successfully rolled out' in driver.ask(f"status web {EN_DASH}n {ns}")


# -- HTTP surface ---------------------------------------------------------------------------------


def _post_with_headers(bot: BotProcess, body: bytes, headers: dict[str, Any]) -> Response:
    return send_raw(
        bot.events_url, body, {"Content-Type": "application/x-www-form-urlencoded", **headers}
    )


def _raw_http_post(bot: BotProcess, body: bytes, header_lines: list[bytes]) -> int:
    """POST with header bytes exactly as given (e.g. UTF-8 a client library would refuse)."""
    request = (
        b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + b"".join(line + b"\r\n" for line in header_lines)
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    with socket.create_connection(("127.0.0.1", bot.port), timeout=10) as conn:
        conn.sendall(request)
        status_line = conn.makefile("rb").readline()
    return int(status_line.split()[1])


def test_malformed_signature_headers_are_401_never_500(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    deploy(kubectl)
    fields = slash_command_payload(f"scale web --replicas=4 -n {granted_namespace}")
    body = urllib.parse.urlencode(fields).encode()
    now = str(int(time.time()))
    good = sign(SIGNING_SECRET, now, body)
    variants: dict[str, dict[str, Any]] = {
        "no headers": {},
        "no timestamp": {"X-Slack-Signature": good},
        "no signature": {"X-Slack-Request-Timestamp": now},
        "empty timestamp": {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": good},
        "non-numeric timestamp": {
            "X-Slack-Request-Timestamp": "yesterday",
            "X-Slack-Signature": good,
        },
        "float timestamp": {"X-Slack-Request-Timestamp": now + ".5", "X-Slack-Signature": good},
        # '²' is a digit to str.isdigit() but not to int(): the classic 500.
        "superscript digit": {
            "X-Slack-Request-Timestamp": now[:-1] + "²",
            "X-Slack-Signature": good,
        },
        "empty signature": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": ""},
        "other scheme": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v1" + good[2:]},
        "non-hex signature": {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": "v0=" + "z" * 64,
        },
        "latin-1 signature": {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": good[:-1] + "é",
        },
    }
    for what, headers in variants.items():
        response = _post_with_headers(driver.bot, body, headers)
        assert response.status == 401, (what, response.status, response.body)

    arabic_digits = "".join(chr(0x0660 + int(d)) for d in now).encode()
    for header_lines in (
        [b"X-Slack-Request-Timestamp: " + arabic_digits, b"X-Slack-Signature: " + good.encode()],
        [b"X-Slack-Request-Timestamp: " + now.encode(), "X-Slack-Signature: v0=ü".encode()],
    ):
        assert _raw_http_post(driver.bot, body, header_lines) == 401, header_lines

    assert kubectl.get("deployment/web")["spec"]["replicas"] == 1, "a forged command ran"
    # The same body, correctly signed, does run: the 401s above were about the headers.
    response = _post_with_headers(
        driver.bot, body, {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good}
    )
    assert response.status == 200
    kubectl.wait_for(lambda: kubectl.get("deployment/web")["spec"]["replicas"] == 4, timeout=20)


def test_wrong_signature_and_stale_timestamp_are_401_and_run_nothing(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    deploy(kubectl)
    text = f"scale web --replicas=4 -n {granted_namespace}"
    url = driver.bot.events_url
    now = int(time.time())

    wrong_secret = send_slash_command(url, "not-the-signing-secret", text)
    stale = send_slash_command(url, SIGNING_SECRET, text, timestamp=now - 6 * 60)
    future = send_slash_command(url, SIGNING_SECRET, text, timestamp=now + 6 * 60)

    for response in (wrong_secret, stale, future):
        assert response.status == 401, (response.status, response.body)
        assert_no_raw_errors(response.body)
    time.sleep(1)  # a listener that wrongly ran would have answered by now
    assert kubectl.get("deployment/web")["spec"]["replicas"] == 1
    assert slack.calls("chat.postMessage") == [] and slack.calls("response_url") == []


def _get(bot: BotProcess, path: str) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{bot.port}{path}", timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_healthz_and_readyz_report_redis_and_kubernetes(
    driver: SlackDriver, redis_server: RedisServer
) -> None:
    bot = driver.bot
    assert _get(bot, "/healthz")[0] == 200
    status, body = _get(bot, "/readyz")
    assert status == 200 and body["redis"] is True and body["kubernetes"] is True

    redis_server.stop()
    try:
        # Reported, but not "unready": without Redis this replica still serves every read.
        deadline = time.monotonic() + 10
        while (answer := _get(bot, "/readyz"))[1]["redis"] is not False:
            assert time.monotonic() < deadline, "Redis being down never showed in /readyz"
            time.sleep(0.2)
        status, body = answer
        assert status == 200
        assert body["redis"] is False and body["kubernetes"] is True
        assert _get(bot, "/healthz")[0] == 200, "liveness must not depend on Redis"
    finally:
        redis_server.start()
    deadline = time.monotonic() + 15
    while _get(bot, "/readyz")[1]["redis"] is not True:
        assert time.monotonic() < deadline, "the bot did not become ready again after Redis"
        time.sleep(0.2)


# -- the 3-second ack deadline, and Slack's rate limits -------------------------------------------


def test_forty_concurrent_status_commands_are_all_acked_within_slacks_deadline(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    deploy(kubectl, replicas=2)
    # Each listener keeps its thread after ack() until its answer is delivered, as it does when
    # Slack or the API server is slow: a starved listener pool would then leave acks late.
    slack.set_delay("response_url", 0.5)
    count = 40
    start = threading.Barrier(count)
    results: dict[int, tuple[float, int, str]] = {}
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            start.wait(timeout=30)
            began = time.monotonic()
            response, tag = driver.command(f"status web -n {granted_namespace}")
            results[index] = (time.monotonic() - began, response.status, tag)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == count
    for elapsed, status, _ in results.values():
        assert status == 200
        assert elapsed < SLACK_ACK_DEADLINE, f"an ack took {elapsed:.2f}s"
    for _, _, tag in results.values():
        answer = message_text(driver.reply(tag, timeout=60).params)
        assert 'deployment "web" successfully rolled out' in answer


def test_announcement_survives_a_slack_rate_limit(
    driver: SlackDriver, kubectl: Kubectl, slack: SlackStandin, granted_namespace: str
) -> None:
    deploy(kubectl)
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    said = driver.run(f"scale web --replicas=2 -n {granted_namespace}")

    assert "deployment.apps/web scaled" in said
    # Thread replies are the progress message that follows a scale; the announcement is not.
    posts = [c for c in slack.calls("chat.postMessage") if not c.params.get("thread_ts")]
    assert len(posts) == 2, "the announcement should be posted again after the 429"
    assert posts[0].status == 429 and posts[0].injected, "the first post should have hit the limit"
    assert posts[1].ok and posts[1].time - posts[0].time >= 1.0, "Retry-After was not honoured"
    announced = [m for m in slack.messages(driver.channel) if "scaled" in m.text]
    assert len(announced) == 1, "the announcement should appear exactly once in the channel"
    assert kubectl.get("deployment/web")["spec"]["replicas"] == 2
    assert kubectl.history_revisions("web") == [1]
