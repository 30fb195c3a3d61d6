"""Issue 21: the bot says and does what kubectl of the cluster's version (v1.36) says and does.

One test per row of the issue's table (rows 9-13, the pod-template text, are the parity
fixture of tests/integration/test_describe_template.py). Every test runs on the real control
plane and asks the cluster's own kubectl for the oracle: where kubectl acts, it acts on a twin
object made the same way, and the bot's words and the cluster's state must match its.
"""

from __future__ import annotations

import copy
import html
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.adapters.k8s.cluster import KubeCluster, load_api_client
from bot.domain import verbs as cmd
from bot.domain.errors import Refused
from bot.domain.targets import Actor, Target
from bot.services.rollouts import Rollouts
from handlers.views.changes import change_message
from handlers.views.reads import history_message
from tests.devkit.control_plane import ClusterInfo
from tests.support.bot_process import SlackDriver
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

ALICE = Actor("U0ALICE", "alice", "C0DEPLOYS")
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}
CAUSE = "kubernetes.io/change-cause"


def manifest(kind: str, name: str, image: str = "app:1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        },
        **spec,
    }
    if kind != "daemonset":
        body.setdefault("replicas", 1)
    return {"apiVersion": "apps/v1", "kind": KINDS[kind], "metadata": {"name": name}, "spec": body}


def create(kubectl: Kubectl, body: dict[str, Any]) -> None:
    """`kubectl create`, so no last-applied-configuration annotation (apply would add one)."""
    kubectl.run("create", "-f", "-", input=json.dumps(body))


def kubectl_says(kubectl: Kubectl, *args: str) -> str:
    """kubectl's text: stdout when it succeeds, else stderr without the `error: ` prefix."""
    proc = kubectl.run(*args, check=False)
    if proc.returncode == 0:
        return proc.stdout.strip()
    return proc.stderr.strip().removeprefix("error: ")


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(Refused) as refused:
        call()
    return refused.value.user_message


def settled(kubectl: Kubectl, ref: str) -> None:
    proc = kubectl.run("rollout", "status", ref, "--timeout=90s", check=False)
    assert proc.returncode == 0, proc.stderr


def causes(kubectl: Kubectl, ref: str) -> dict[int, str]:
    """`kubectl rollout history`'s table: revision -> CHANGE-CAUSE."""
    table = {}
    for line in kubectl.run("rollout", "history", ref).stdout.splitlines():
        parts = line.split(maxsplit=1)
        if parts and parts[0].isdigit():
            table[int(parts[0])] = parts[1].strip()
    return table


def wait_for_revisions(kubectl: Kubectl, ref: str, count: int) -> dict[int, str]:
    return kubectl.wait_for(
        lambda: (table := causes(kubectl, ref)) and len(table) >= count and table,
        what=f"{count} revisions of {ref}",
    )


@pytest.fixture
def rollouts(cluster: ClusterInfo) -> Rollouts:
    return Rollouts(KubeCluster(load_api_client(str(cluster.kubeconfig))))


def target(namespace: str, name: str, kind: str = "deployment") -> Target:
    return Target(namespace, name, kind)


# -- 1. the bot's change-cause never labels a revision it did not make ---------------------------


@pytest.mark.parametrize("kind", ["statefulset", "daemonset"])
def test_1_undo_of_a_statefulset_or_daemonset_writes_no_change_cause(
    kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    for name in ("bot", "cli"):
        create(kubectl, manifest(kind, name))
        settled(kubectl, f"{kind}/{name}")
        kubectl.run("set", "image", f"{kind}/{name}", "app=app:2")
        settled(kubectl, f"{kind}/{name}")

    change = rollouts.undo(target(namespace, "bot", kind), 0, ALICE, "bad build")
    assert change.summary == f"{kind}.apps/bot rolled back"
    assert kubectl_says(kubectl, "rollout", "undo", f"{kind}/cli") == f"{kind}.apps/cli rolled back"
    for name in ("bot", "cli"):
        settled(kubectl, f"{kind}/{name}")
        # Someone else's next revision.
        kubectl.run("rollout", "restart", f"{kind}/{name}")
        settled(kubectl, f"{kind}/{name}")

    oracle = wait_for_revisions(kubectl, f"{kind}/cli", 3)
    assert oracle == {2: "<none>", 3: "<none>", 4: "<none>"}
    assert wait_for_revisions(kubectl, f"{kind}/bot", 3) == oracle
    annotations = kubectl.get(f"{kind}/bot")["metadata"].get("annotations") or {}
    assert CAUSE not in annotations


@pytest.mark.parametrize("kind", ["deployment", "statefulset", "daemonset"])
def test_1_the_bots_cause_labels_its_revision_and_not_the_next_one(
    kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    create(kubectl, manifest(kind, "web"))
    settled(kubectl, f"{kind}/web")

    rollouts.set_image(target(namespace, "web", kind), [("app", "app:2")], ALICE, "CVE-1")
    settled(kubectl, f"{kind}/web")
    kubectl.run("rollout", "restart", f"{kind}/web")
    settled(kubectl, f"{kind}/web")

    table = wait_for_revisions(kubectl, f"{kind}/web", 3)
    assert table == {
        1: "<none>",
        2: "set image app=app:2 by @alice via Slack: CVE-1",
        # kubectl's restart writes no cause: its revision shows none, not the bot's.
        3: "<none>",
    }


# -- 2. every refusal kubectl would give comes before an approval card ---------------------------


def test_2_every_refusal_kubectl_gives_comes_before_an_approval_card(
    driver: SlackDriver, admin_kubectl: Kubectl, prod_namespace: str
) -> None:
    ns = prod_namespace
    kubectl = admin_kubectl.in_namespace(ns)
    create(kubectl, manifest("deployment", "web"))
    create(kubectl, manifest("statefulset", "db"))
    create(kubectl, manifest("daemonset", "agent"))
    for ref in ("deployment/web", "statefulset/db", "daemonset/agent"):
        settled(kubectl, ref)
    kubectl.run("rollout", "pause", "deployment/web")

    # (the bot's command, kubectl's for the same thing); kubectl refuses every one.
    cases = [
        ("restart web", ("rollout", "restart", "deployment/web")),
        ("resume sts/db", ("rollout", "resume", "statefulset/db")),
        ("pause sts/db", ("rollout", "pause", "statefulset/db")),
        ("scale ds/agent --replicas=2", ("scale", "daemonset/agent", "--replicas=2")),
        ("undo web --to-revision=9", ("rollout", "undo", "deployment/web", "--to-revision=9")),
        ("undo sts/db --to-revision=-1", ("rollout", "undo", "statefulset/db", "--to-revision=-1")),
        ("undo sts/db", ("rollout", "undo", "statefulset/db")),
        ("set image web nope=app:2", ("set", "image", "deployment/web", "nope=app:2")),
        ("create web --image=app:2", ("create", "deployment", "web", "--image=app:2")),
    ]
    cards_before = len(driver.slack.messages("C0DEPLOYS"))
    for typed, args in cases:
        oracle = kubectl_says(kubectl, *args)
        said = html.unescape(driver.run(f"{typed} -n {ns}"))
        assert "request `" not in said, f"{typed}: a card was posted:\n{said}"
        assert oracle in said, f"{typed}: kubectl says {oracle!r}, the bot:\n{said}"
    assert len(driver.slack.messages("C0DEPLOYS")) == cards_before
    assert kubectl.get("deployment/web")["spec"]["paused"] is True


# -- 3. CHANGE-CAUSE: the template's annotation, the ReplicaSet's laid over it --------------------


def test_3_a_cause_in_the_pod_template_shows_in_the_history(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    body = manifest("deployment", "web")
    body["spec"]["template"]["metadata"]["annotations"] = {CAUSE: "set in the template"}
    create(kubectl, body)
    settled(kubectl, "deployment/web")
    kubectl.run("set", "image", "deployment/web", "app=app:2")
    kubectl.run("annotate", "deployment/web", f"{CAUSE}=on the deployment")
    settled(kubectl, "deployment/web")

    oracle = wait_for_revisions(kubectl, "deployment/web", 2)
    view = rollouts.history(target(namespace, "web"))
    assert {r.number: r.change_cause or "<none>" for r in view.revisions} == oracle
    assert oracle[1] == "set in the template"


# -- 4, 5, 6, 7. revision numbers and kubectl's words about them ----------------------------------


def test_4_history_revision_0_is_the_whole_list_and_a_negative_one_kubectls_error(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    create(kubectl, manifest("deployment", "web"))
    settled(kubectl, "deployment/web")
    kubectl.run("set", "image", "deployment/web", "app=app:2")
    settled(kubectl, "deployment/web")

    listed = kubectl_says(kubectl, "rollout", "history", "deployment/web", "--revision=0")
    command = cmd.parse_command(f"history web --revision=0 -n {namespace}")
    assert isinstance(command, cmd.History)
    view = rollouts.history(target(namespace, "web"), command.revision)
    assert view.detail is None
    assert [r.number for r in view.revisions] == [
        int(line.split()[0]) for line in listed.splitlines() if line[:1].isdigit()
    ]

    oracle = kubectl_says(kubectl, "rollout", "history", "deployment/web", "--revision=-1")
    with pytest.raises(cmd.CommandError) as refused:
        cmd.parse_command(f"history web --revision=-1 -n {namespace}")
    assert refused.value.message == oracle == "revision must be a positive integer: -1"


@pytest.mark.parametrize("kind", ["deployment", "statefulset"])
def test_5_undo_to_a_negative_revision_is_kubectls_error(
    kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    create(kubectl, manifest(kind, "web"))
    settled(kubectl, f"{kind}/web")

    oracle = kubectl_says(kubectl, "rollout", "undo", f"{kind}/web", "--to-revision=-1")
    command = cmd.parse_command(f"undo {kind}/web --to-revision=-1 -n {namespace}")
    assert isinstance(command, cmd.Undo) and command.to_revision == -1
    said = refusal(lambda: rollouts.undo(target(namespace, "web", kind), -1, ALICE, None))
    assert said == oracle == "unable to find specified revision -1 in history"


def test_6_a_revision_of_a_deployment_without_history_is_kubectls_no_history(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    create(kubectl, manifest("deployment", "web", paused=True))

    oracle = kubectl_says(kubectl, "rollout", "history", "deployment/web", "--revision=1")
    assert oracle == "deployment.apps/web with revision #1\nNo rollout history found."
    view = rollouts.history(target(namespace, "web"), 1)
    message = history_message(view)
    shown = html.unescape(json.dumps(message.blocks)).replace("*", "")
    for line in oracle.splitlines():
        assert line in shown, (line, shown)


@pytest.mark.parametrize("kind", ["deployment", "statefulset"])
def test_7_an_unknown_revision_is_kubectls_words_then_the_list(
    kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    create(kubectl, manifest(kind, "web"))
    settled(kubectl, f"{kind}/web")
    ref, where = f"{kind}/web", target(namespace, "web", kind)

    history_oracle = kubectl_says(kubectl, "rollout", "history", ref, "--revision=9")
    said = refusal(lambda: rollouts.history(where, 9))
    assert said.splitlines() == [history_oracle, "revisions in history: 1"]

    undo_oracle = kubectl_says(kubectl, "rollout", "undo", ref, "--to-revision=9")
    said = refusal(lambda: rollouts.undo(where, 9, ALICE, None))
    assert said.splitlines() == [undo_oracle, "revisions in history: 1"]


# -- 8. undo's warning for an object once managed with kubectl apply ------------------------------


@pytest.mark.parametrize("kind", ["deployment", "statefulset", "daemonset"])
def test_8_undo_of_an_applied_object_shows_kubectls_warning_even_when_skipped(
    kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    for name in ("bot", "cli"):
        kubectl.apply(manifest(kind, name))
        settled(kubectl, f"{kind}/{name}")
        kubectl.run("set", "image", f"{kind}/{name}", "app=app:2")
        settled(kubectl, f"{kind}/{name}")
    current = max(causes(kubectl, f"{kind}/cli"))

    proc = kubectl.run("rollout", "undo", f"{kind}/cli", f"--to-revision={current}")
    (warning,) = proc.stderr.strip().splitlines()
    assert warning.startswith(f"Warning: resource {kind}s/cli was previously managed with")
    change = rollouts.undo(target(namespace, "bot", kind), current, ALICE, None)
    assert change.summary == proc.stdout.strip().replace("/cli", "/bot")
    assert change.warnings == (warning.replace("/cli", "/bot"),)

    proc = kubectl.run("rollout", "undo", f"{kind}/cli")
    change = rollouts.undo(target(namespace, "bot", kind), 0, ALICE, None)
    assert change.summary == proc.stdout.strip().replace("/cli", "/bot")
    assert change.warnings == (proc.stderr.strip().replace("/cli", "/bot"),)
    text = html.unescape(json.dumps(change_message(change, ALICE, None).blocks))
    assert "Rolling back will not update the kubectl.kubernetes.io/last-applied" in text


# -- 14, 15, 16, 17. scale and set image ---------------------------------------------------------


def resource_version(kubectl: Kubectl, ref: str) -> str:
    return str(kubectl.get(ref)["metadata"]["resourceVersion"])


def test_14_scale_to_the_current_count_is_kubectls_line_and_changes_nothing(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    for name in ("bot", "cli"):
        create(kubectl, manifest("deployment", name, replicas=2))
        settled(kubectl, f"deployment/{name}")
    before = {name: kubectl.get(f"deployment/{name}") for name in ("bot", "cli")}

    oracle = kubectl_says(kubectl, "scale", "deployment/cli", "--replicas=2")
    change = rollouts.scale(target(namespace, "bot"), 2, ALICE, None)
    assert change.summary == oracle.replace("/cli", "/bot") == "deployment.apps/bot scaled"
    # The bot's own note beside it (see README "Where the bot differs from kubectl").
    assert change.details == ("already at 2 replicas: nothing changed",)
    # kubectl's patch changed no spec, no generation, no annotation (it only re-records who
    # owns spec.replicas); the bot sent nothing at all.
    for name in ("bot", "cli"):
        after = kubectl.get(f"deployment/{name}")
        assert after["spec"] == before[name]["spec"]
        for key in ("generation", "annotations", "labels"):
            assert after["metadata"].get(key) == before[name]["metadata"].get(key)
    assert resource_version(kubectl, "deployment/bot") == str(
        before["bot"]["metadata"]["resourceVersion"]
    )


def two_containers(name: str) -> dict[str, Any]:
    body = manifest("deployment", name)
    body["spec"]["template"]["spec"]["containers"].append({"name": "proxy", "image": "proxy:1"})
    return body


def images(kubectl: Kubectl, name: str) -> dict[str, str]:
    spec = kubectl.get(f"deployment/{name}")["spec"]["template"]["spec"]
    return {c["name"]: c["image"] for c in spec["containers"]}


def test_15_set_image_changes_the_container_found_and_errs_for_the_unknown_one(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    for name in ("bot", "cli"):
        create(kubectl, two_containers(name))
        settled(kubectl, f"deployment/{name}")

    proc = kubectl.run("set", "image", "deployment/cli", "app=app:2", "nope=x:1", check=False)
    assert proc.returncode == 1
    change = rollouts.set_image(
        target(namespace, "bot"), [("app", "app:2"), ("nope", "x:1")], ALICE, None
    )
    assert change.summary == proc.stdout.strip().replace("/cli", "/bot")
    assert change.warnings == tuple(proc.stderr.strip().splitlines())
    assert images(kubectl, "bot") == images(kubectl, "cli") == {"app": "app:2", "proxy": "proxy:1"}


def test_16_set_image_reads_its_pairs_as_kubectl_does(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    for name in ("bot", "cli"):
        create(kubectl, two_containers(name))
        settled(kubectl, f"deployment/{name}")

    # A container named twice keeps its last image.
    kubectl.run("set", "image", "deployment/cli", "app=app:2", "app=app:3")
    command = cmd.parse_command(f"set image bot app=app:2 app=app:3 -n {namespace}")
    assert isinstance(command, cmd.SetImage)
    rollouts.set_image(target(namespace, "bot"), command.images, ALICE, None)
    assert images(kubectl, "bot") == images(kubectl, "cli") == {"app": "app:3", "proxy": "proxy:1"}

    # `*` beside another pair: kubectl's error.
    oracle = kubectl_says(kubectl, "set", "image", "deployment/cli", "*=app:4", "app=app:5")
    with pytest.raises(cmd.CommandError) as refused:
        cmd.parse_command(f"set image bot *=app:4 app=app:5 -n {namespace}")
    assert refused.value.message == oracle

    # An image already set: kubectl prints nothing, and neither does the bot as kubectl.
    assert kubectl_says(kubectl, "set", "image", "deployment/cli", "app=app:3") == ""
    change = rollouts.set_image(target(namespace, "bot"), [("app", "app:3")], ALICE, None)
    assert not change.changed and change.summary == ""
    text = html.unescape(json.dumps(change_message(change, ALICE, None).blocks))
    assert "deployment.apps/bot" not in text and "image already set" in text


def test_17_scale_of_a_daemonset_is_the_servers_not_found(
    kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    create(kubectl, manifest("daemonset", "agent"))

    oracle = kubectl_says(kubectl, "scale", "daemonset/agent", "--replicas=2")
    said = refusal(lambda: rollouts.scale(target(namespace, "agent", "daemonset"), 2, ALICE, None))
    assert said == oracle


# -- 18. sts/ds "skipped rollback" compares the stored bytes --------------------------------------


@pytest.mark.parametrize("kind", ["statefulset", "daemonset"])
def test_18_a_revision_stored_in_older_bytes_is_rolled_back_to_not_skipped(
    kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    """A ControllerRevision written by an older version (its template with
    `"creationTimestamp":null`, which 1.36 no longer writes) holds the live template: the
    same template, other bytes. kubectl patches it back ("rolled back"); so does the bot."""
    for name in ("bot", "cli"):
        create(kubectl, manifest(kind, name))
        settled(kubectl, f"{kind}/{name}")
        kubectl.run("set", "image", f"{kind}/{name}", "app=app:2")
        settled(kubectl, f"{kind}/{name}")
        obj = kubectl.get(f"{kind}/{name}")
        revisions = kubectl.get("controllerrevisions", "-l", f"app={name}")["items"]
        first = next(r for r in revisions if r["revision"] == 1)
        kubectl.run("delete", "controllerrevision", first["metadata"]["name"])
        template = copy.deepcopy(obj["spec"]["template"])
        template["metadata"]["creationTimestamp"] = None
        template["$patch"] = "replace"
        old = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"{name}-from-an-older-version",
                "labels": {"app": name},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": KINDS[kind],
                        "name": name,
                        "uid": obj["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "revision": 1,
            "data": {"spec": {"template": template}},
        }
        create(kubectl, old)
    time.sleep(1)  # let the controllers look at the revisions they now own

    oracle = kubectl_says(kubectl, "rollout", "undo", f"{kind}/cli", "--to-revision=1")
    assert oracle == f"{kind}.apps/cli rolled back"
    change = rollouts.undo(target(namespace, "bot", kind), 1, ALICE, None)
    assert change.summary == f"{kind}.apps/bot rolled back"
    # The patch was the stored template: the live one is unchanged either way.
    for name in ("bot", "cli"):
        live = kubectl.get(f"{kind}/{name}")["spec"]["template"]["spec"]["containers"][0]
        assert live["image"] == "app:2"
