"""The playground's little world: users, channels, the policy, the Deployments, the tour."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MANAGED_BY = "rollout-bot-playground"
# Short, so the failing-image step of the tour fails within half a minute, not ten.
PROGRESS_DEADLINE_SECONDS = 30


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str
    color: str


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    namespace: str
    topic: str


@dataclass(frozen=True)
class Step:
    title: str
    text: str
    command: str  # empty: the step only switches user and channel
    user: str
    channel: str


USERS = (
    User("U0ALICE", "alice", "developer: may run anything; prod needs approval", "#2f7d5b"),
    User("U0BOB", "bob", "SRE: approves changes in prod", "#b0562f"),
    User("U0CAROL", "carol", "read-only: list, status, history, diff, audit", "#6b4fa0"),
)

CHANNELS = (
    Channel("C0STAGING", "staging", "staging", "Deploys to the staging namespace"),
    Channel("C0PROD", "prod", "prod", "Production: changes need an approval from bob"),
)

# Approvals in prod, auto rollback of a failed prod rollout; alice may change anything in the
# demo namespaces, bob approves, everyone (carol included) may read them. Nothing outside the
# demo namespaces is granted, whatever cluster the playground is pointed at. Changes made with
# kubectl are announced in the namespace's channel and followed there.
POLICY_YAML = """\
# The playground's policy (ROLLOUT_BOT_POLICY); deploy/examples/policy.yaml explains each field.
channels:
  C0STAGING: {namespace: staging, follow_outside: true}
  C0PROD: {namespace: prod, namespaces: [prod], follow_outside: true}
permissions:
  - users: ["*"]
    namespaces: [staging, prod]
    actions: [list, status, history, diff, approvals, audit]
  - users: [U0ALICE]
    namespaces: [staging, prod]
    actions: ["*"]
approvals:
  - namespaces: [prod]
    actions: [create, set-image, scale, undo, pause, resume, restart]
    required: 1
    approvers: [U0BOB]
    ttl: 30m
    on_failure: rollback
# A change window: prod is frozen for an hour every Sunday night (Berlin time); undo and pause
# still work. `/rollout freeze` adds one from Slack, and `/rollout freezes` lists them.
freezes:
  - name: maintenance-hour
    namespaces: [prod]
    weekly: {from: "Sun 03:00", to: "Sun 04:00", timezone: "Europe/Berlin"}
    reason: "the database is being maintained"
# Who may let one change through a freeze (never the person asking).
break_glass:
  approvers: [U0BOB]
  approvals: 1
"""

DEPLOYMENTS = (
    ("staging", "web", "nginx:1.18-alpine", 3),
    ("prod", "web", "nginx:1.18-alpine", 3),
)

TOUR = (
    Step(
        "Create a Deployment",
        "Alice creates one in #staging, exactly as kubectl create deployment would.",
        "/rollout create shop --image=nginx:1.18-alpine",
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "Scale it",
        "The announcement says who, what and why; a progress message follows in its thread.",
        '/rollout scale shop --replicas=3 --reason="more traffic"',
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "Set a new image",
        "Watch the progress bar move while the new ReplicaSet comes up.",
        '/rollout set image shop nginx=nginx:1.19-alpine --reason="fixes CVE-2026-1234"',
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "History",
        "Revisions come from the ReplicaSets, with the change-cause the bot recorded.",
        "/rollout history shop",
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "Diff two revisions",
        "The pod-template diff between revision 1 and 2.",
        "/rollout diff shop 1 2",
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "Undo to revision 1",
        "The old template comes back as a new revision: kubectl renumbers it.",
        "/rollout undo shop --to-revision=1",
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "See the renumbering",
        "Revision 1 is now revision 3, shown as 3 (was 1).",
        "/rollout history shop",
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "A failing image",
        f"Tags starting with `broken` never pull. After the {PROGRESS_DEADLINE_SECONDS}s "
        "progress deadline the message turns red with a Roll back button.",
        "/rollout set image web nginx=nginx:broken-1.20",
        "U0ALICE",
        "C0STAGING",
    ),
    Step(
        "Ask for an approval in prod",
        "In #prod the change waits for bob: alice gets a card, not a rollout.",
        '/rollout set image web nginx=nginx:1.19-alpine --reason="fixes CVE-2026-1234"',
        "U0ALICE",
        "C0PROD",
    ),
    Step(
        "Approve it as bob",
        "This step only switches to bob. Click Approve on the card (or type a reason and "
        "Reject): the rollout and its progress appear in the card's thread.",
        "",
        "U0BOB",
        "C0PROD",
    ),
    Step(
        "Freeze prod for an incident",
        "Alice stops changes in prod for 15 minutes; #prod is told why and until when.",
        '/rollout freeze -n prod --for 15m --reason "incident 4711: payments are flaky"',
        "U0ALICE",
        "C0PROD",
    ),
    Step(
        "A change during the freeze",
        "Refused, with the freeze's reason, when it ends and how to break glass. Reads work.",
        "/rollout scale web --replicas=4",
        "U0ALICE",
        "C0PROD",
    ),
    Step(
        "Break glass",
        "The same change with a reason: a break-glass card for bob (alice can never approve it).",
        '/rollout scale web --replicas=4 --break-glass "more capacity is the fix for 4711"',
        "U0ALICE",
        "C0PROD",
    ),
    Step(
        "Approve the break-glass as bob",
        "This step only switches to bob. Approve the card: the change runs once, is announced "
        "in #prod as break-glass and audited with the reason and both names.",
        "",
        "U0BOB",
        "C0PROD",
    ),
    Step(
        "Lift the freeze",
        "Freezes end on their own; this ends it now. `/rollout freezes` lists what is left.",
        "/rollout unfreeze -n prod",
        "U0ALICE",
        "C0PROD",
    ),
    Step(
        "Read-only carol",
        "Carol may look but not change: the bot tells her why.",
        "/rollout scale web --replicas=5",
        "U0CAROL",
        "C0STAGING",
    ),
    Step(
        "Status",
        "kubectl's rollout-status verdict, the ReplicaSets and the pods.",
        "/rollout status web",
        "U0CAROL",
        "C0PROD",
    ),
    Step(
        "The audit trail",
        "Every request, decision and outcome, hash-chained in Redis.",
        "/rollout audit web",
        "U0BOB",
        "C0PROD",
    ),
)


def bootstrap() -> dict[str, Any]:
    """What the page needs to draw itself before the first message arrives."""
    return {
        "users": [asdict(u) for u in USERS],
        "channels": [asdict(c) for c in CHANNELS],
        "tour": [asdict(s) for s in TOUR],
        "bot": {"name": "rollout-bot"},
    }


def user_names() -> dict[str, str]:
    return {u.id: u.name for u in USERS} | {"UBOT": "rollout-bot"}


def deployment_manifest(namespace: str, name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**labels, "app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "nginx", "image": image}]},
            },
        },
    }
