"""The README's install block, run as written against a fresh local control plane.

The block is read from README.md itself (the fenced block after the `install-block` marker), so
the test and the documentation cannot drift apart. It runs as `bash -euo pipefail` would type it,
line by line, in a directory holding the repository's `bot/`, `deploy/`, `.venv` and `Makefile`
(the README says: from a clone), with the admin kubeconfig of a control plane of its own (the
README speaks of a fresh cluster and names fixed namespaces).

Two substitutions. There is no container engine here: the line that builds and pushes the
image (`make image … && docker push …`) is replaced by a no-op. Its variables (`IMAGE`, `TAG`)
stay as written, and the fake kubelet "runs" any image, so the rest is exercised unchanged:
helm from the cache, the namespaces, the Secret, the policy copied and checked, `helm upgrade
--install`, and `kubectl rollout status`. The block is run twice, as a user retrying would, and
then the README's uninstall lines; the last one with `--wait=false`, since the local control
plane has no controller to lift the claim's protection finalizer.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helm import REPO, helm_binary
from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

README = REPO / "README.md"
MARKER = "<!-- install-block"
IMAGE_STEP = re.compile(r"^make image .*&& docker push ")


def fenced_block_after(text: str, marker: str) -> str:
    start = text.index(marker)
    fence = text.index("```\n", start) + len("```\n")
    return text[fence : text.index("\n```", fence) + 1]


def readme_install_block() -> str:
    return fenced_block_after(README.read_text(), MARKER)


def readme_uninstall_lines() -> list[str]:
    section = README.read_text().split("### Uninstall", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def without_the_image_step(block: str) -> str:
    lines = block.splitlines()
    steps = [i for i, line in enumerate(lines) if IMAGE_STEP.match(line)]
    assert len(steps) == 1, "the README's install block should build and push the image once"
    lines[steps[0]] = ": the image step is skipped here: no container engine"
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fresh_cluster() -> Iterator[ClusterInfo]:
    directory = Path(tempfile.mkdtemp(prefix="readme-install-cluster-"))
    plane = ControlPlane(directory)
    info = plane.up()
    try:
        yield info
    finally:
        plane.down()


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory that looks like a clone (what the block reads), where it may write."""
    for name in ("bot", "deploy", ".venv", "Makefile", "pyproject.toml"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def run_as_typed(script: str, cwd: Path, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    helm_binary()  # built once for the test session; the block finds it in the same cache
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HOME": str(cwd / "home"),
        "ROLLOUT_BOT_CACHE": os.environ.get(
            "ROLLOUT_BOT_CACHE", str(Path.home() / ".cache" / "rollout-bot")
        ),
    }
    # Nothing but what a user's shell has: no helm on PATH until the block puts it there.
    env["PATH"] = ":".join(
        part
        for part in env.get("PATH", "/usr/bin:/bin").split(":")
        if part and not (Path(part) / "helm").exists()
    )
    (cwd / "home").mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_readme_install_block_works_as_typed_twice_then_uninstalls(
    fresh_cluster: ClusterInfo, clone: Path
) -> None:
    admin = Kubectl(fresh_cluster.kubeconfig)
    script = without_the_image_step(readme_install_block())

    first = run_as_typed(script, clone, fresh_cluster.kubeconfig)
    assert first.returncode == 0, first.stdout + first.stderr
    assert 'deployment "rollout-bot" successfully rolled out' in first.stdout
    assert (clone / "policy.yaml").read_text() == (REPO / "deploy/examples/policy.yaml").read_text()
    assert "policy: policy.yaml OK" in first.stdout

    deployment = admin.in_namespace("rollout-bot").get("deployment", "rollout-bot")
    [container] = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "rollout-bot"
    ]
    assert container["image"] == "registry.example.com/team/rollout-bot:0.1.0"
    for namespace in ("staging", "prod"):
        assert admin.in_namespace(namespace).get("role", "rollout-bot")["rules"]
    state_key = admin.in_namespace("rollout-bot").get("secret", "rollout-bot")["data"][
        "ROLLOUT_BOT_STATE_KEY"
    ]

    # Typed again (a user retrying after a failure, or upgrading): every step still works, and
    # the Secret, with the state key that seals the approvals in Redis, is kept.
    again = run_as_typed(script, clone, fresh_cluster.kubeconfig)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        admin.in_namespace("rollout-bot").get("secret", "rollout-bot")["data"][
            "ROLLOUT_BOT_STATE_KEY"
        ]
        == state_key
    )
    releases = run_as_typed(
        'export PATH="$(dirname "$(deploy/build-helm.sh)"):$PATH"\n'
        "helm -n rollout-bot history rollout-bot -o json",
        clone,
        fresh_cluster.kubeconfig,
    )
    assert releases.stdout.count('"revision"') == 2, releases.stdout

    # The README's uninstall: the release goes, the Redis volume stays until deleted by name.
    helm_line, delete_pvc = readme_uninstall_lines()
    prefix = 'export PATH="$(dirname "$(deploy/build-helm.sh)"):$PATH"\n'
    uninstalled = run_as_typed(prefix + helm_line, clone, fresh_cluster.kubeconfig)
    assert uninstalled.returncode == 0, uninstalled.stderr
    home = admin.in_namespace("rollout-bot")
    assert home.run("get", "deployment", "rollout-bot", check=False).returncode != 0
    pvc = delete_pvc.split()[-1]
    assert home.get("pvc", pvc)["metadata"]["name"] == pvc
    # The local control plane runs no pvc-protection controller, which is what lifts the
    # claim's finalizer once no pod uses it: without waiting for that, the claim is seen
    # marked for deletion.
    deleted = run_as_typed(delete_pvc + " --wait=false", clone, fresh_cluster.kubeconfig)
    assert deleted.returncode == 0, deleted.stderr
    assert home.get("pvc", pvc)["metadata"].get("deletionTimestamp")
