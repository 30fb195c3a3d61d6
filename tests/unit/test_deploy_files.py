"""The files we ship are valid: the example policy loads, and so does the issue's own example;
the chart's RBAC says why for every rule and grants exactly the API calls the code makes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from bot.domain.policy import load_policy
from tests.support.api_calls import api_calls_in_cluster_adapter

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
    policy = load_policy(REPO / "deploy" / "examples" / "policy.yaml")
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


MANIFESTS = REPO / "deploy" / "manifests" / "rollout-bot.yaml"


def _rendered_role_rules() -> list[dict[str, list[str]]]:
    roles = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d and d["kind"] == "Role"]
    assert roles, "the default rendering grants a Role per namespace"
    rules: list[dict[str, list[str]]] = roles[0]["rules"]
    return rules


def test_rbac_rules_each_say_why() -> None:
    text = (REPO / "deploy" / "helm" / "rollout-bot" / "templates" / "rbac.yaml").read_text()
    block = text[text.index('define "rollout-bot.rbacRules"') :]
    lines = block.splitlines()
    rule_starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rule_starts) == len(_rendered_role_rules())
    for start in rule_starts:
        assert lines[start - 1].strip().startswith("# "), f"rule without a why: {lines[start]}"


def test_rbac_grants_exactly_the_calls_the_code_makes() -> None:
    granted = {
        (verb, resource)
        for rule in _rendered_role_rules()
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == api_calls_in_cluster_adapter()


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_image_lock_is_hashed_and_agrees_with_the_constraints() -> None:
    lock_text = (REPO / "requirements.lock").read_text()
    lock = _pins(lock_text)
    constraints = _pins((REPO / "constraints.txt").read_text())
    assert lock, "requirements.lock pins nothing"
    for name, version in lock.items():
        assert constraints.get(name) == version, f"{name}: lock {version}, constraints.txt differs"
    blocks = [b for b in lock_text.split("\n") if "==" in b and not b.startswith((" ", "#"))]
    assert all(b.endswith("\\") for b in blocks), "every pin carries --hash lines"
    import tomllib

    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in runtime:
        name = requirement.split(">")[0].split("=")[0].strip().lower().replace("_", "-")
        assert name in lock, f"{name} is a runtime dependency but not in requirements.lock"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    assert "org.opencontainers.image.version" in dockerfile
