"""Shared fixtures: the real local control plane (session-wide), a fresh namespace per test.

Set CLUSTER_DIR to reuse a control plane started with `make cluster-up CLUSTER_DIR=DIR`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.control_plane import ClusterInfo, ControlPlane
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
    return Kubectl(cluster.kubeconfig)


@pytest.fixture
def namespace(admin_kubectl: Kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin_kubectl.run("create", "namespace", name)
    yield name
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(admin_kubectl: Kubectl, namespace: str) -> Kubectl:
    return admin_kubectl.in_namespace(namespace)
