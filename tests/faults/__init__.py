"""Fault tests: the real bot against a faulty API server (through a proxy) or a stopped or
frozen redis-server, cross-checked with kubectl.

Shared helpers only; fixtures live in the modules that use them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.support.bot_process import BotProcess
from tests.support.kubectl import Kubectl, deployment_manifest

OLD_IMAGE = "nginx:1.18-alpine"
NEW_IMAGE = "nginx:1.19-alpine"
# What no reply and no log line may ever contain (besides tokens and passwords).
LEAK_MARKERS = ("Traceback", "ApiException", "HTTP response headers", "urllib3", "redis.exceptions")


def deploy_web(kubectl: Kubectl) -> None:
    """Deployment `web` (container `web`) fully rolled out at revision 1."""
    kubectl.apply(deployment_manifest("web", OLD_IMAGE, replicas=2))
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1]


def assert_unchanged(kubectl: Kubectl) -> None:
    assert kubectl.images("web") == {"web": OLD_IMAGE}
    assert kubectl.history_revisions("web") == [1]


def assert_clean(text: str, *secrets: str) -> None:
    for marker in (*LEAK_MARKERS, *secrets):
        assert marker not in text, f"{marker!r} leaked into:\n{text[-3000:]}"


def probe_until(
    bot: BotProcess, path: str, predicate: Any, timeout: float = 10
) -> tuple[int, dict[str, Any]]:
    """Probes until `predicate((status, body))` holds (/readyz answers are cached for 1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe(bot, path)
        if predicate(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def probe(bot: BotProcess, path: str) -> tuple[int, dict[str, Any]]:
    """GET /readyz or /healthz of a running bot: (status, JSON body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
