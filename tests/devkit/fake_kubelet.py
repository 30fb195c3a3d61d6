"""A fake kubelet for the local control plane: it makes pods look like a real node ran them.

Contract relied on by the tests and checks:
- it registers the nodes `fake-node-1` and `fake-node-2`, each with a Ready condition and no
  `node.kubernetes.io/not-ready` taint, so the DaemonSet controller runs a pod on each;
- pending pods are bound to the node their required node affinity names (the DaemonSet
  controller pins each of its pods with `matchFields metadata.name`), else to `fake-node-1`;
  pods on any of its nodes are made to look run (StatefulSet pods come one by one: the
  controller creates the next only when the previous is Ready, the kubelet readies whatever
  exists);
- a bound pod becomes Running and Ready after `--ready-delay` seconds (default 1);
- a container whose image tag starts with `broken` never becomes Ready: the pod shows
  `waiting` with reason `ImagePullBackOff`, so a short `progressDeadlineSeconds` is exceeded;
- terminating pods are deleted at once (grace period 0), as a kubelet would after the stop.

It speaks plain HTTP to the API server (list + watch on all pods) so it has no dependency on the
client library under test.

    python -m tests.devkit.fake_kubelet --kubeconfig DIR/kubeconfig [--ready-delay 1.0]
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import requests
import yaml

NODE_NAME = "fake-node-1"
NODE_NAMES = (NODE_NAME, "fake-node-2")
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
log = logging.getLogger("fake-kubelet")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_is_broken(image: str) -> bool:
    """`repo/name:broken-1` is broken; the tag is what follows the last ':' after the last '/'."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    _, _, tag = name.partition(":")
    return tag.startswith("broken")


def node_for(pod: dict[str, Any]) -> str:
    """The node a scheduler would pick: the one named by a required `metadata.name` node
    affinity (how the DaemonSet controller pins its pods), if it is ours; else the first."""
    affinity = pod["spec"].get("affinity") or {}
    required = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                for value in field.get("values") or []:
                    if value in NODE_NAMES:
                        return str(value)
    return NODE_NAME


class Api:
    def __init__(self, kubeconfig: str) -> None:
        with open(kubeconfig) as fh:
            config = yaml.safe_load(fh)
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self.session = requests.Session()
        # REQUESTS_CA_BUNDLE in the environment would otherwise override the cluster CA.
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {config['users'][0]['user']['token']}"
        self.session.verify = cluster.get("certificate-authority", True)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.server + path, **kwargs)


class FakeKubelet:
    def __init__(self, api: Api, ready_delay: float) -> None:
        self.api = api
        self.ready_delay = ready_delay
        self._due: list[tuple[float, str, str, str]] = []  # (when, namespace, name, uid)
        self._due_lock = threading.Condition()
        self._handled: dict[str, str] = {}  # uid -> last state we set: "ready" | "broken"
        self._stop = threading.Event()

    def ensure_node(self) -> None:
        """Register every node (idempotent) and report it Ready, as a kubelet's heartbeat does."""
        for name in NODE_NAMES:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            }
            resp = self.api.request("POST", "/api/v1/nodes", json=node)
            if resp.status_code not in (201, 409):
                resp.raise_for_status()
            self._mark_node_ready(name)

    def _mark_node_ready(self, name: str) -> None:
        resp = self.api.request("GET", f"/api/v1/nodes/{name}")
        resp.raise_for_status()
        taints = resp.json().get("spec", {}).get("taints") or []
        kept = [t for t in taints if t.get("key") not in NOT_READY_TAINTS]
        if len(kept) != len(taints):
            self.api.request(
                "PATCH",
                f"/api/v1/nodes/{name}",
                data=json.dumps({"spec": {"taints": kept or None}}),
                headers={"Content-Type": "application/merge-patch+json"},
            ).raise_for_status()
        now = _now()
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "fake kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        }
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            data=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()

    # -- watch loop ------------------------------------------------------------------------------

    def run(self) -> None:
        threading.Thread(target=self._ready_worker, daemon=True).start()
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except requests.RequestException as exc:
                log.warning("watch interrupted: %s", exc)
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        with self._due_lock:
            self._due_lock.notify_all()

    def _list_and_watch(self) -> None:
        resp = self.api.request("GET", "/api/v1/pods")
        resp.raise_for_status()
        listing = resp.json()
        for pod in listing["items"]:
            self._handle(pod)
        version = listing["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            with self.api.request(
                "GET",
                "/api/v1/pods",
                params={
                    "watch": "1",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                },
                stream=True,
                timeout=(10, 330),
            ) as stream:
                stream.raise_for_status()
                for line in stream.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        return  # e.g. 410 Gone: list again from scratch
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._handle(obj)
                    elif event["type"] == "DELETED":
                        self._handled.pop(obj["metadata"]["uid"], None)

    def _handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        try:
            if meta.get("deletionTimestamp"):
                self.api.request(
                    "DELETE",
                    f"/api/v1/namespaces/{namespace}/pods/{name}",
                    json={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                )
                return
            if not spec.get("nodeName"):
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node_for(pod)},
                }
                self.api.request(
                    "POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", json=binding
                )
                return
            if uid in self._handled or spec["nodeName"] not in NODE_NAMES:
                return
            images = [c["image"] for c in spec.get("containers", [])]
            if any(image_is_broken(image) for image in images):
                self._handled[uid] = "broken"
                self._patch_status(pod, ready=False)
            else:
                self._handled[uid] = "ready"
                with self._due_lock:
                    heapq.heappush(
                        self._due, (time.monotonic() + self.ready_delay, namespace, name, uid)
                    )
                    self._due_lock.notify()
        except requests.RequestException as exc:
            log.warning("pod %s/%s: %s", namespace, name, exc)

    def _ready_worker(self) -> None:
        while not self._stop.is_set():
            with self._due_lock:
                while not self._due or self._due[0][0] > time.monotonic():
                    if self._stop.is_set():
                        return
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._due_lock.wait(timeout=wait)
                _, namespace, name, uid = heapq.heappop(self._due)
            try:
                resp = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
                if resp.status_code == 200 and resp.json()["metadata"]["uid"] == uid:
                    pod = resp.json()
                    if not pod["metadata"].get("deletionTimestamp"):
                        self._patch_status(pod, ready=True)
            except requests.RequestException as exc:
                log.warning("pod %s/%s: %s", namespace, name, exc)

    def _patch_status(self, pod: dict[str, Any], *, ready: bool) -> None:
        now = _now()
        spec = pod["spec"]
        flag = "True" if ready else "False"
        containers = []
        for container in spec.get("containers", []):
            broken = image_is_broken(container["image"])
            state: dict[str, Any]
            if ready:
                state = {"running": {"startedAt": now}}
            elif broken:
                state = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{container["image"]}"',
                    }
                }
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            containers.append(
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": ready,
                    "started": ready,
                    "restartCount": 0,
                    "state": state,
                }
            )
        status = {
            "phase": "Running" if ready else "Pending",
            "hostIP": "127.0.0.1",
            "podIP": "10.244.0.1",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
            ],
            "containerStatuses": containers,
        }
        meta = pod["metadata"]
        patched = self.api.request(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            data=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if not patched.ok:
            # Forget the pod so its next watch event tries again.
            self._handled.pop(meta["uid"], None)
            return
        if not ready:
            # Mirror the kubelet's event so the bot can name recent Warning events.
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "kind": "Pod",
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                    "apiVersion": "v1",
                },
                "reason": "Failed",
                "message": "Error: ImagePullBackOff",
                "type": "Warning",
                "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            self.api.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", json=event)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-kubelet")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--ready-delay", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    kubelet = FakeKubelet(Api(args.kubeconfig), args.ready_delay)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    kubelet.ensure_node()
    log.info("ready (ready delay %.1fs)", args.ready_delay)
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
