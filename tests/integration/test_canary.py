"""Canaries of plain Deployments through the real bot, a real Redis and the local control plane.

kubectl is the oracle: what `web-canary` is, which pods a Service selects, and that `web`'s own
ReplicaSets, revisions and `kubectl rollout history` are untouched by the canary.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.views.canary import ABORT_ACTION, PROMOTE_ACTION
from tests.conftest import grant_bot
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

CHANNEL = "C0DEPLOYS"
FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.3"}
TRACK = "rollout-bot/track"


# -- helpers --------------------------------------------------------------------------------------


def deploy_web(kubectl: Kubectl, replicas: int = 3) -> None:
    kubectl.apply(deployment_manifest("web", "app:1", replicas=replicas))
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        }
    )
    assert kubectl.rollout_status("web").returncode == 0


def web_state(kubectl: Kubectl) -> dict[str, Any]:
    """What must not change while a canary runs beside `web`."""
    web = kubectl.get("deployment/web")
    owned = sorted(
        rs["metadata"]["name"]
        for rs in kubectl.get("replicasets")["items"]
        if any(
            o.get("uid") == web["metadata"]["uid"]
            for o in rs["metadata"].get("ownerReferences", [])
        )
    )
    return {
        "generation": web["metadata"]["generation"],
        "template": web["spec"]["template"],
        "replicas": web["spec"]["replicas"],
        "replica_sets": owned,
        "history": kubectl.run("rollout", "history", "deployment/web").stdout,
    }


def text_of(message: PostedMessage) -> str:
    return message_text({"text": message.text, "blocks": message.blocks})


def canary_message(driver: SlackDriver, announcement_ts: str, timeout: float = 60) -> PostedMessage:
    def found() -> PostedMessage | None:
        return next(
            (
                m
                for m in driver.slack.messages(CHANNEL)
                if m.thread_ts == announcement_ts and "Canary of" in text_of(m)
            ),
            None,
        )

    message: PostedMessage = driver.wait(found, timeout, what="the canary message")
    return message


def wait_for_message(
    driver: SlackDriver, ts: str, marker: str, timeout: float = 90
) -> PostedMessage:
    def current() -> PostedMessage | None:
        message = next(m for m in driver.slack.messages(CHANNEL) if m.ts == ts)
        return message if marker in text_of(message) else None

    found: PostedMessage = driver.wait(
        current, timeout, what=f"the canary message to say {marker!r}"
    )
    return found


def start_canary(driver: SlackDriver, text: str, **kwargs: Any) -> tuple[str, PostedMessage]:
    said = driver.run(text, **kwargs)
    assert "ran `canary`" in said and "web-canary created" in said, said
    head = next(
        m
        for m in driver.slack.messages(CHANNEL)
        if m.thread_ts is None and "web-canary created" in text_of(m)
    )
    return said, canary_message(driver, head.ts)


def button(message: PostedMessage, action_id: str) -> dict[str, Any]:
    return next(
        e
        for b in message.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )


def canary_gone(kubectl: Kubectl) -> bool:
    return kubectl.run("get", "deployment/web-canary", check=False).returncode != 0


# -- creation, promote, abort ---------------------------------------------------------------------


def test_canary_runs_beside_web_behind_its_service_and_promote_rolls_web(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy_web(kubectl)
    before = web_state(kubectl)

    said, message = start_canary(
        driver, f"canary deploy/web --image web=app:2 --analysis 10s -n {granted_namespace}"
    )
    assert "web: app:1 → app:2" in said and "1 canary pod(s) beside 3 of `web`" in said

    canary = kubectl.get("deployment/web-canary")
    template = canary["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "app:2"
    assert template["metadata"]["labels"] == {"app": "web", TRACK: "canary"}
    assert canary["spec"]["selector"]["matchLabels"] == {"app": "web", TRACK: "canary"}
    assert canary["spec"]["replicas"] == 1
    assert canary["metadata"]["annotations"]["rollout-bot/canary-of"] == "web"
    assert kubectl.rollout_status("web-canary").returncode == 0

    # The Service's selector picks the canary's pod along with web's three (the local control
    # plane runs no EndpointSlice controller: kubectl applies the Service's own selector).
    selector = kubectl.get("service/web")["spec"]["selector"]
    selected = kubectl.get("pods", "-l", ",".join(f"{k}={v}" for k, v in selector.items()))
    names = [p["metadata"]["name"] for p in selected["items"]]
    assert len(names) == 4 and sum(n.startswith("web-canary-") for n in names) == 1, names
    # The canary's ReplicaSet is the canary's, not web's: web's ReplicaSets, revisions and
    # `kubectl rollout history` are exactly as before, and web still counts its own 3 pods.
    canary_rs = [
        rs
        for rs in kubectl.get("replicasets", "-l", f"{TRACK}=canary")["items"]
        if rs["metadata"]["ownerReferences"][0]["name"] == "web-canary"
    ]
    assert len(canary_rs) == 1
    assert web_state(kubectl) == before
    assert kubectl.get("deployment/web")["status"]["replicas"] == 3

    text = text_of(message)
    assert "Services routing to it: `web`" in text
    ready = wait_for_message(driver, message.ts, "ready to promote")
    assert "web-canary-" in text_of(ready)

    promote = button(ready, PROMOTE_ACTION)
    response, _ = driver.click(
        PROMOTE_ACTION, promote["value"], user="U0ALICE", name="alice", message_ts=ready.ts
    )
    assert response.status == 200
    kubectl.wait_for(lambda: kubectl.images("web") == {"web": "app:2"}, what="web to get app:2")
    assert kubectl.rollout_status("web").returncode == 0
    kubectl.wait_for(lambda: canary_gone(kubectl), what="web-canary to be deleted")
    final = wait_for_message(driver, message.ts, "*promoted*")
    assert "`web` runs `web=app:2` on every pod; `web-canary` was deleted" in text_of(final)
    # Promote went through the normal path: a new revision whose change-cause says who and why.
    history = kubectl.history_table("web")
    assert (
        "set image web=app:2 by @alice via Slack: promoted from canary web-canary"
        in (history[max(history)])
    )


def test_abort_deletes_the_canary_and_leaves_web_as_it_was(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy_web(kubectl)
    kubectl.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 6,
            },
        }
    )
    before = web_state(kubectl)
    said, message = start_canary(
        driver, f"canary deploy/web --image web=app:2 --weight 50% -n {granted_namespace}"
    )
    assert kubectl.get("deployment/web-canary")["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler `web`: the canary keeps a fixed 3 replica(s)" in said
    assert "HorizontalPodAutoscaler `web`; the canary keeps its fixed replicas" in text_of(message)

    # One canary per Deployment.
    again = driver.run(f"canary deploy/web --image web=app:3 -n {granted_namespace}")
    assert "A canary of" in again and "already running" in again

    status = driver.ask(f"canary status web -n {granted_namespace}")
    assert "Canary of `" in status and "web-canary" in status

    abort = button(message, ABORT_ACTION)
    response, _ = driver.click(ABORT_ACTION, abort["value"], user="U0ALICE", message_ts=message.ts)
    assert response.status == 200
    kubectl.wait_for(lambda: canary_gone(kubectl), what="web-canary to be deleted")
    final = wait_for_message(driver, message.ts, "*aborted*")
    assert "Aborted by <@U0ALICE>" in text_of(final)
    assert web_state(kubectl) == before
    assert kubectl.images("web") == {"web": "app:1"}


def test_auto_promote_promotes_after_a_healthy_analysis(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy_web(kubectl, replicas=2)
    _, message = start_canary(
        driver,
        f"canary deploy/web --image web=app:2 --analysis 10s --auto-promote -n {granted_namespace}",
    )
    assert "Promotes itself when the analysis passes" in text_of(message)
    kubectl.wait_for(lambda: kubectl.images("web") == {"web": "app:2"}, what="web to be promoted")
    kubectl.wait_for(lambda: canary_gone(kubectl), timeout=90, what="web-canary to be deleted")
    wait_for_message(driver, message.ts, "*promoted*")
    history = kubectl.history_table("web")
    assert "by @alice via Slack: promoted from canary web-canary" in history[max(history)]


def test_a_canary_whose_image_cannot_start_aborts_on_its_own(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy_web(kubectl, replicas=2)
    before = web_state(kubectl)
    _, message = start_canary(
        driver, f"canary deploy/web --image web=app:broken-1 -n {granted_namespace}"
    )
    final = wait_for_message(driver, message.ts, "*aborted*")
    text = text_of(final)
    assert "ImagePullBackOff" in text and "`web` is untouched" in text
    assert [b for b in final.blocks if b["type"] == "actions"] == []
    kubectl.wait_for(lambda: canary_gone(kubectl), what="web-canary to be deleted")
    assert web_state(kubectl) == before


def test_a_change_to_web_under_the_canary_aborts_it(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy_web(kubectl, replicas=1)
    _, message = start_canary(driver, f"canary deploy/web --image web=app:2 -n {granted_namespace}")
    kubectl.run("set", "image", "deployment/web", "web=app:9")
    final = wait_for_message(driver, message.ts, "*aborted*")
    assert "was changed under it" in text_of(final)
    kubectl.wait_for(lambda: canary_gone(kubectl), what="web-canary to be deleted")


def test_statefulsets_are_refused_with_the_partition_hint(
    start_bot: Any, slack: SlackStandin, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    said = driver.run(f"canary sts/db --image db=app:2 -n {granted_namespace}")
    assert "a canary is for Deployments only" in said and "partition" in said


# -- a restart mid-canary -------------------------------------------------------------------------


def test_a_restarted_bot_resumes_the_canary_message(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    first = start_bot(env=FAST)
    driver = SlackDriver(slack, first)
    deploy_web(kubectl, replicas=1)
    _, message = start_canary(
        driver, f"canary deploy/web --image web=app:2 --analysis 15s -n {granted_namespace}"
    )
    first.kill()  # SIGKILL: no lease handed back, nothing flushed

    second = start_bot(env=FAST)
    driver = SlackDriver(slack, second)
    ready = wait_for_message(driver, message.ts, "ready to promote", timeout=120)
    # The same message, updated in place: no second canary message in the thread.
    thread = [
        m
        for m in slack.messages(CHANNEL)
        if m.thread_ts == message.thread_ts and "Canary of" in text_of(m)
    ]
    assert [m.ts for m in thread] == [ready.ts]
    response, _ = driver.click(ABORT_ACTION, button(ready, ABORT_ACTION)["value"], user="U0ALICE")
    assert response.status == 200
    kubectl.wait_for(lambda: canary_gone(kubectl), what="web-canary to be deleted")


# -- approvals: as for set image, four-eyes on Promote ------------------------------------------

NAMES = {"U0ALICE": "alice", "U0BOB": "bob"}


@pytest.fixture
def prod(admin_kubectl: Kubectl, bot_rbac: str) -> Iterator[Kubectl]:
    name = f"prod-{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", name)
    grant_bot(admin_kubectl, name)
    kubectl = admin_kubectl.in_namespace(name)
    deploy_web(kubectl, replicas=1)
    yield kubectl
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def approve(driver: SlackDriver, said: str, user: str) -> str:
    """Clicks Approve on the card of the request `said` names; the click's answer."""
    found = re.search(r"request(?: |ed \()`([A-Za-z0-9_-]+)`", said)
    assert found, said
    card = next(
        m for m in driver.slack.messages(CHANNEL) if f"request `{found.group(1)}`" in text_of(m)
    )
    response, tag = driver.click(
        "rollout_approve", found.group(1), user=user, name=NAMES[user], message_ts=card.ts
    )
    assert response.status == 200
    return tag


def test_canary_and_its_promote_need_approval_and_the_requester_cannot_approve_promote(
    start_bot: Any, slack: SlackStandin, prod: Kubectl, tmp_path: Path
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    namespace = prod.namespace
    said = driver.run(f"canary deploy/web --image web=app:2 --analysis 10s -n {namespace}")
    assert "Waiting for approval" in said and canary_gone(prod)
    approve(driver, said, "U0BOB")
    prod.wait_for(lambda: not canary_gone(prod), what="the approved canary to be created")
    head = driver.wait(
        lambda: next(
            (m for m in slack.messages(CHANNEL) if "web-canary created" in text_of(m)), None
        ),
        what="the canary's announcement",
    )
    message = canary_message(driver, head.thread_ts or head.ts)
    ready = wait_for_message(driver, message.ts, "ready to promote")

    response, tag = driver.click(
        PROMOTE_ACTION, button(ready, PROMOTE_ACTION)["value"], user="U0ALICE", message_ts=ready.ts
    )
    assert response.status == 200
    promote_said = message_text(driver.reply(tag).params)
    assert "Approval requested" in promote_said
    # Four eyes: alice requested the promotion, her own approval does not count.
    own = approve(driver, promote_said, "U0ALICE")
    driver.reply(own)
    assert prod.images("web") == {"web": "app:1"}
    approve(driver, promote_said, "U0BOB")
    prod.wait_for(lambda: prod.images("web") == {"web": "app:2"}, what="web to be promoted")
    prod.wait_for(lambda: canary_gone(prod), what="web-canary to be deleted after the rollout")
    wait_for_message(driver, message.ts, "*promoted*")
