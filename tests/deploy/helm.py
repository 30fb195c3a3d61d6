"""The helm CLI (built from its Go module by deploy/build-helm.sh) and rendering."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "rollout-bot"
MANIFESTS = REPO / "deploy" / "manifests" / "rollout-bot.yaml"
BUILD_SCRIPT = REPO / "deploy" / "build-helm.sh"


@functools.cache
def helm_binary() -> str:
    out = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def helm_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """helm against a cluster (KUBECONFIG in `env`), with its caches in a throwaway HOME."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="helm-home-") as home:
        full = {**os.environ, "HOME": home, **env}
        proc = subprocess.run(
            [helm_binary(), *args], capture_output=True, text=True, timeout=180, env=full
        )
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def template(
    *sets: str, namespace: str = "rollout-bot", release: str = "rollout-bot", check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = ["template", release, str(CHART), "--namespace", namespace]
    for item in sets:
        argv += ["--set", item]
    return helm(*argv, check=check)


def render(*sets: str, namespace: str = "rollout-bot", release: str = "rollout-bot") -> str:
    return template(*sets, namespace=namespace, release=release).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def of_kind(text: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in documents(text) if d["kind"] == kind]
