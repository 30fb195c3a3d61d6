"""The bench's own view of the cluster: when did each Deployment finish rolling out?

One list + watch per namespace with the admin identity (plain HTTP streaming, no client models),
straight to the apiserver, not through any counting proxy. For each Deployment it records the
wall-clock time (`time.time()`, the clock the Slack stand-in stamps calls with) of the first
event in which kubectl's verdict (`bot.domain.status.rollout_status`) is "successfully rolled
out" for a generation at or above the one asked for — i.e. when the status change reached a
watcher.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bot.domain.status import rollout_status


class DeploymentObserver:
    def __init__(self, kubeconfig: Path, namespaces: list[str], min_generation: int) -> None:
        config = json.loads(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        self._server = cluster["server"]
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.verify = cluster["certificate-authority"]
        self._session.headers["Authorization"] = f"Bearer {config['users'][0]['user']['token']}"
        self._namespaces = namespaces
        self._min_generation = min_generation
        self._lock = threading.Lock()
        self.done_at: dict[tuple[str, str], float] = {}
        self.failed: dict[tuple[str, str], str] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Barrier(len(namespaces) + 1)
        self._threads = [
            threading.Thread(target=self._run, args=(ns,), name=f"observe-{ns}", daemon=True)
            for ns in namespaces
        ]

    def start(self, timeout: float = 30) -> DeploymentObserver:
        for thread in self._threads:
            thread.start()
        self._ready.wait(timeout)  # every watch is open: no event can be missed after this
        return self

    def stop(self) -> None:
        """The watch threads are daemons: closing a TLS stream under a reading thread can
        block, so they are left to end with the process (or with their watch's timeout)."""
        self._stop.set()

    def done(self, namespace: str, name: str) -> float | None:
        with self._lock:
            return self.done_at.get((namespace, name))

    def _see(self, obj: dict[str, Any], at: float) -> None:
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if int(meta.get("generation") or 0) < self._min_generation:
            return
        status = rollout_status(obj)
        with self._lock:
            if key in self.done_at:
                return
            if status.done:
                self.done_at[key] = at
            elif status.failed:
                self.failed[key] = status.message

    def _run(self, namespace: str) -> None:
        url = f"{self._server}/apis/apps/v1/namespaces/{namespace}/deployments"
        first = True
        while not self._stop.is_set():
            try:
                listing = self._session.get(url, timeout=30)
                listing.raise_for_status()
                body = listing.json()
                now = time.time()
                for item in body.get("items", []):
                    self._see(item, now)
                version = body["metadata"]["resourceVersion"]
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "900"}
                with self._session.get(url, params=params, stream=True, timeout=(10, 960)) as resp:
                    resp.raise_for_status()
                    if first:
                        first = False
                        self._ready.wait()
                    for line in resp.iter_lines():
                        if not line:
                            continue
                        at = time.time()
                        event = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._see(event["object"], at)
                        elif event.get("type") == "ERROR":
                            break
            except (requests.RequestException, ValueError, KeyError) as exc:
                if self._stop.is_set():
                    return
                self.errors.append(f"{namespace}: {type(exc).__name__}")
                time.sleep(0.2)
