"""Who else owns the target: a GitOps tool (Argo CD, Flux) or a HorizontalPodAutoscaler.

The reply says so and names the application; `gitops: refuse` in the policy refuses the change
(and kubectl confirms nothing changed); `scale` names the HPA that will override it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_POLICY
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SlackDriver
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

ARGO_LABELS = {"app.kubernetes.io/instance": "shop"}
ARGO_ANNOTATIONS = {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:ns/web"}
FLUX_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": "apps",
    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
}


def managed(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    manifest = deployment_manifest(name, "app:1", replicas=1)
    manifest["metadata"]["labels"] = labels
    manifest["metadata"]["annotations"] = annotations
    return manifest


def test_a_gitops_managed_target_is_named_in_the_reply(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    kubectl.apply(managed("web", ARGO_LABELS, ARGO_ANNOTATIONS))
    kubectl.apply(managed("api", FLUX_LABELS, {}))
    assert kubectl.rollout_status("web").returncode == 0

    said = html.unescape(driver.run(f"set image web web=app:2 -n {ns}"))
    assert "image updated" in said
    assert "Managed by Argo CD (Application `shop`)" in said
    assert kubectl.images("web") == {"web": "app:2"}

    said = html.unescape(driver.run(f"restart api -n {ns}"))
    assert "restarted" in said
    assert "Managed by Flux (Kustomization `flux-system/apps`)" in said


def test_gitops_refuse_leaves_a_managed_target_alone(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    ns = granted_namespace
    policy = tmp_path / "refuse.yaml"
    policy.write_text(TEST_POLICY + "gitops: refuse\n")
    driver = SlackDriver(slack, start_bot(policy=policy))
    kubectl.apply(managed("web", {"argocd.argoproj.io/instance": "shop"}, {}))
    kubectl.apply(deployment_manifest("plain", "app:1", replicas=1))
    assert kubectl.rollout_status("web").returncode == 0

    said = html.unescape(driver.run(f"set image web web=app:2 -n {ns}"))
    assert "Argo CD (Application `shop`)" in said and "Nothing was changed" in said
    assert kubectl.images("web") == {"web": "app:1"}
    assert kubectl.history_revisions("web") == [1]
    # An unmanaged Deployment is not affected by the setting.
    assert "image updated" in driver.run(f"set image plain plain=app:2 -n {ns}")


def test_scale_names_the_autoscaler_that_will_override_it(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    kubectl.apply(deployment_manifest("web", "app:1", replicas=1))
    kubectl.run("autoscale", "deployment/web", "--min=2", "--max=5", "--cpu-percent=80")
    hpa = kubectl.get("hpa/web")["spec"]
    said = html.unescape(driver.run(f"scale web --replicas=3 -n {ns}"))
    assert "scaled" in said
    assert (
        f"HorizontalPodAutoscaler `web` (min {hpa['minReplicas']}, max {hpa['maxReplicas']})"
        in said
    )
    # Another Deployment's scale says nothing about it.
    kubectl.apply(deployment_manifest("api", "app:1", replicas=1))
    said = html.unescape(driver.run(f"scale api --replicas=2 -n {ns}"))
    assert "scaled" in said and "HorizontalPodAutoscaler" not in said
