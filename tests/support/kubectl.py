"""kubectl as an independent oracle: the tests ask it what the cluster says.

The kubectl is the one built from the same k8s.io/kubernetes version as the control plane
(`tests.devkit.control_plane.kubectl_binary`), never whatever `kubectl` is on PATH: the bot
speaks that version's words, and an older kubectl prints older ones.
"""

from __future__ import annotations

import json
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

from tests.devkit.control_plane import kubectl_binary


@cache
def cluster_kubectl() -> Path:
    return kubectl_binary()


class Kubectl:
    def __init__(
        self, kubeconfig: Path, namespace: str | None = None, executable: Path | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.executable = executable or cluster_kubectl()

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.kubeconfig, namespace, self.executable)

    def run(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.executable), "--kubeconfig", str(self.kubeconfig)]
        if self.namespace:
            argv += ["-n", self.namespace]
        # Undecodable bytes (kubectl cuts long annotations at a byte count, even mid-character)
        # come back as U+FFFD, as the bot shows them.
        proc = subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            errors="replace",
            input=input,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("get", *args, "-o", "json").stdout)
        return out

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=json.dumps(manifest))

    def history_revisions(self, deployment: str) -> list[int]:
        """Revision numbers exactly as `kubectl rollout history` lists them."""
        out = self.run("rollout", "history", f"deployment/{deployment}").stdout
        revisions = []
        for line in out.splitlines():
            first = line.split(maxsplit=1)[0] if line.strip() else ""
            if first.isdigit():
                revisions.append(int(first))
        return revisions

    def history_table(self, deployment: str) -> dict[int, str]:
        """revision -> change-cause ('<none>' when empty), from `kubectl rollout history`."""
        out = self.run("rollout", "history", f"deployment/{deployment}").stdout
        table = {}
        for line in out.splitlines():
            parts = line.split(maxsplit=1)
            if parts and parts[0].isdigit():
                table[int(parts[0])] = parts[1].strip() if len(parts) > 1 else ""
        return table

    def rollout_status(
        self, deployment: str, timeout: str = "90s"
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "rollout", "status", f"deployment/{deployment}", f"--timeout={timeout}", check=False
        )

    def images(self, deployment: str) -> dict[str, str]:
        spec = self.get(f"deployment/{deployment}")["spec"]["template"]["spec"]
        return {c["name"]: c["image"] for c in spec["containers"]}

    def wait_for(self, predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.3)


def deployment_manifest(
    name: str,
    image: str,
    *,
    replicas: int = 3,
    container: str | None = None,
    progress_deadline: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": container or name, "image": image}]},
        },
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": spec,
    }
