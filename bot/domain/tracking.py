"""A rollout the bot follows in Slack: what it watches, where it reports, how it ended."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackedRollout:
    id: str
    channel: str
    thread_ts: str
    message_ts: str
    namespace: str
    deployment: str
    uid: str
    generation: int
    started_at: float
    deadline_seconds: int
    title: str
    on_failure: str = "notify"
    finished: bool = False
    verdict: str = ""
    rolled_back: bool = False
    #: "deployment", "statefulset" or "daemonset"; `deployment` holds the object's name.
    kind: str = "deployment"
    #: Started by the bot itself (an automatic rollback): never rolled back automatically.
    automatic: bool = False
    #: The kubeconfig context (cluster) the object lives in; "" in a one-cluster installation.
    context: str = ""
    #: The Slack user whose change started it: an automatic rollback acts as them (in
    #: impersonate mode); "" when unknown (outside changes, records from before).
    requester: str = ""
