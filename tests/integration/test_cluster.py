"""The test bed is real: plain kubectl against the local control plane behaves like a cluster."""

from __future__ import annotations

import pytest

from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_rollout_set_image_and_undo_renumber_revisions_like_a_real_cluster(
    kubectl: Kubectl,
) -> None:
    kubectl.apply(deployment_manifest("web", "nginx:1.18-alpine", replicas=3, container="nginx"))
    assert kubectl.rollout_status("web").returncode == 0

    kubectl.run("set", "image", "deployment/web", "nginx=nginx:1.19-alpine")
    status = kubectl.rollout_status("web")
    assert status.returncode == 0, status.stderr
    assert 'deployment "web" successfully rolled out' in status.stdout
    assert kubectl.history_revisions("web") == [1, 2]
    ready = kubectl.get("deployment/web")["status"]
    assert ready["readyReplicas"] == 3 and ready["updatedReplicas"] == 3

    kubectl.run("rollout", "undo", "deployment/web", "--to-revision=1")
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [2, 3]
    assert kubectl.images("web") == {"nginx": "nginx:1.18-alpine"}


def test_pods_are_bound_and_ready_on_the_fake_node(kubectl: Kubectl) -> None:
    kubectl.apply(deployment_manifest("api", "api:1.0", replicas=2))
    assert kubectl.rollout_status("api").returncode == 0
    pods = kubectl.get("pods", "-l", "app=api")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "fake-node-1"
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"


def test_broken_image_exceeds_progress_deadline_with_image_pull_backoff(kubectl: Kubectl) -> None:
    kubectl.apply(deployment_manifest("bad", "nginx:1.18-alpine", replicas=2, progress_deadline=5))
    assert kubectl.rollout_status("bad").returncode == 0
    kubectl.run("set", "image", "deployment/bad", "bad=nginx:broken-1")

    status = kubectl.rollout_status("bad", timeout="60s")
    assert status.returncode != 0
    assert 'deployment "bad" exceeded its progress deadline' in status.stderr

    conditions = {c["type"]: c for c in kubectl.get("deployment/bad")["status"]["conditions"]}
    assert conditions["Progressing"]["reason"] == "ProgressDeadlineExceeded"
    waiting = [
        cs["state"]["waiting"]["reason"]
        for pod in kubectl.get("pods", "-l", "app=bad")["items"]
        for cs in pod["status"].get("containerStatuses", [])
        if "waiting" in cs["state"]
    ]
    assert "ImagePullBackOff" in waiting


def test_scale_down_removes_terminating_pods(kubectl: Kubectl) -> None:
    kubectl.apply(deployment_manifest("shrink", "app:1", replicas=3))
    assert kubectl.rollout_status("shrink").returncode == 0
    kubectl.run("scale", "deployment/shrink", "--replicas=1")
    kubectl.wait_for(
        lambda: len(kubectl.get("pods", "-l", "app=shrink")["items"]) == 1,
        what="terminating pods to be removed by the fake kubelet",
    )


def test_bot_identity_has_no_rights_of_its_own(cluster, namespace: str) -> None:  # type: ignore[no-untyped-def]
    bot = Kubectl(cluster.bot_kubeconfig, namespace)
    denied = bot.run("get", "deployments", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
