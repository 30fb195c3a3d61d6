"""The files we ship are valid: the example policy loads, and so does the issue's own example."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from bot.domain.policy import load_policy

REPO = Path(__file__).resolve().parents[2]

ISSUE_EXAMPLE = textwrap.dedent(
    """\
    channels:
      C0DEPLOYS: {namespace: default}
      C0PROD: {namespace: prod, namespaces: [prod, prod-*]}
    permissions:
      - users: ["*"]
        namespaces: ["*"]
        actions: [list, status, history, diff]
      - users: [U0ALICE, S0DEVS]          # Slack user ids or user-group ids
        namespaces: ["*"]
        actions: ["*"]
    approvals:
      - namespaces: [prod, prod-*]
        actions: [create, set-image, scale, undo, pause, resume, restart]
        required: 1                       # distinct approvers needed
        approvers: [U0BOB, S0SRE]         # user ids or user-group ids
        ttl: 30m
    """
)


def test_example_policy_file_loads() -> None:
    policy = load_policy(REPO / "deploy" / "policy.example.yaml")
    rule = policy.approval_rule_for("set-image", "prod-eu")
    assert rule is not None and rule.on_failure == "rollback"


def test_the_issue_example_policy_is_accepted_as_written(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(ISSUE_EXAMPLE)
    policy = load_policy(path)
    assert policy.default_namespace("C0PROD") == "prod"
    assert policy.channel_allows_namespace("C0PROD", "prod-eu")
    assert not policy.channel_allows_namespace("C0PROD", "staging")
    assert policy.is_allowed("U0ALICE", frozenset(), "set-image", "prod")
    assert not policy.is_allowed("U0MALLORY", frozenset(), "set-image", "prod")


def test_rbac_rules_each_say_why() -> None:
    text = (REPO / "deploy" / "rbac.yaml").read_text()
    documents = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "ClusterRole"]
    assert documents
    rule_count = sum(len(d["rules"]) for d in documents)
    comment_count = sum(
        1 for line in text.splitlines() if line.strip().startswith("# ") and line.startswith("  #")
    )
    assert comment_count >= rule_count
