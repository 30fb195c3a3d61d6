"""`history --revision=N` prints the pod template exactly as `kubectl rollout history
KIND/NAME --revision=N` does, for every workload kind.

The fixture (tests/fixtures/pod_templates.yaml) covers what a plain template leaves out:
projected, downwardAPI, csi, ephemeral, nfs, hostPath and secret volumes, resourceFieldRef with
and without limits and divisors, tolerations out of order, topology spread constraints,
seccomp profiles, probes of every kind and long or multi-line annotations. Issue 21 added one
template per difference it found: `annotation-bytes` (#9: the layout counts bytes and cuts mid-
character), `last-applied` and `only-last-applied` (#10: never shown), `more-volumes` (#11:
every volume type kubectl has a printer for), `trust-bundle` (#12: no line for it) and
`describe-gaps` (#13: devices, an empty selector, a zero size limit, an escaped probe path).
Each template is created on the real control plane, and the bot's text (through the real
cluster adapter) must equal that of the cluster's own kubectl version, byte for byte.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.adapters.k8s.cluster import KubeCluster, load_api_client
from bot.domain.targets import Target
from bot.services.rollouts import Rollouts
from tests.devkit.control_plane import ClusterInfo
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pod_templates.yaml"
TEMPLATES: dict[str, Any] = yaml.safe_load(FIXTURE.read_text())["templates"]
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}


def manifest(kind: str, name: str, template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    template["metadata"]["labels"] = {**template["metadata"].get("labels", {}), "app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": KINDS[kind],
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template},
    }


@pytest.fixture
def rollouts(cluster: ClusterInfo) -> Rollouts:
    return Rollouts(KubeCluster(load_api_client(str(cluster.kubeconfig))))


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fixture", sorted(TEMPLATES))
def test_revision_detail_is_kubectls_text(
    fixture: str, kind: str, kubectl: Kubectl, namespace: str, rollouts: Rollouts
) -> None:
    name = f"{fixture}-{kind}"[:50]
    kubectl.apply(manifest(kind, name, TEMPLATES[fixture]))
    ref = f"{kind}/{name}"

    def described() -> Any:
        proc = kubectl.run("rollout", "history", ref, "--revision=1", check=False)
        return proc if proc.returncode == 0 else None

    proc = kubectl.wait_for(described, what=f"revision 1 of {ref}")
    header, _, oracle = proc.stdout.partition("\n")
    assert header == f"{kind}.apps/{name} with revision #1"
    view = rollouts.history(Target(namespace, name, kind), 1)
    assert view.described == oracle.rstrip("\n")
