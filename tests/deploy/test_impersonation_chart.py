"""The chart grants `impersonate` only in impersonate mode, narrowed where the operator lists
names (rendered by a real helm; the grant's effect on a real API server is in
tests/integration/test_impersonation.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain.identity import EXTRA_APPROVED_BY, EXTRA_CONTINUED_BY, EXTRA_SLACK_USER
from tests.deploy.helm import of_kind, render, template

pytestmark = pytest.mark.timeout(120)


def impersonation_rules(*sets: str) -> list[dict[str, Any]]:
    roles = [
        role
        for role in of_kind(render(*sets), "ClusterRole")
        if role["metadata"]["name"].endswith("-impersonate")
    ]
    return [rule for role in roles for rule in role["rules"]]


def test_the_bots_own_identity_needs_no_impersonate_grant() -> None:
    assert impersonation_rules() == []
    assert impersonation_rules("identity.mode=bot", "rbac.namespaces={*}") == []


def test_impersonate_mode_grants_users_groups_and_exactly_the_extras_sent() -> None:
    rules = impersonation_rules("identity.mode=impersonate")
    by_resource = {resource: rule for rule in rules for resource in rule["resources"]}
    assert all(rule["verbs"] == ["impersonate"] for rule in rules)
    assert "resourceNames" not in by_resource["users"]
    assert "resourceNames" not in by_resource["groups"]
    extras = {r.removeprefix("userextras/") for r in by_resource if r.startswith("userextras/")}
    assert extras == {EXTRA_SLACK_USER, EXTRA_APPROVED_BY, EXTRA_CONTINUED_BY}
    binding = [
        b
        for b in of_kind(render("identity.mode=impersonate"), "ClusterRoleBinding")
        if b["metadata"]["name"].endswith("-impersonate")
    ]
    assert binding and binding[0]["subjects"][0]["kind"] == "ServiceAccount"


def test_listed_users_and_groups_narrow_the_grant() -> None:
    rules = impersonation_rules(
        "identity.mode=impersonate",
        "identity.users={alice@example.com,bob@example.com}",
        "identity.groups={rollout-bot:users}",
    )
    by_resource = {resource: rule for rule in rules for resource in rule["resources"]}
    assert by_resource["users"]["resourceNames"] == ["alice@example.com", "bob@example.com"]
    assert by_resource["groups"]["resourceNames"] == ["rollout-bot:users"]


def test_an_unknown_mode_is_refused_by_the_schema() -> None:
    proc = template("identity.mode=sudo", check=False)
    assert proc.returncode != 0 and "identity" in proc.stderr
