"""Impersonate mode, without I/O: the policy's `identity`, the identity a Slack user gets, the
headers that carry it, and kubectl's words for a forbidden request."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.adapters.k8s.impersonation import impersonation_headers
from bot.domain.identity import (
    EXTRA_APPROVED_BY,
    EXTRA_SLACK_USER,
    IdentityRule,
    KubeIdentity,
    SlackPerson,
    forbidden_message,
    identity_of,
    refusal_of,
)
from bot.domain.policy import PolicyError, load_policy

pytestmark = pytest.mark.timeout(30)

ALICE = SlackPerson("U0ALICE", "alice", "alice@example.com", usergroup_handles=("sre", "web"))


def policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_grammar_loads_and_defaults_to_the_bot(tmp_path: Path) -> None:
    loaded = load_policy(
        policy(
            tmp_path,
            """\
            identity:
              mode: impersonate
              user: "{email}"
              groups: ["rollout-bot:users", "slack:{usergroup_handle}"]
              reads: bot
            """,
        )
    )
    rule = loaded.identity_for("anything")
    assert rule.impersonates and not rule.reads_as_person
    assert rule.needs("email") and rule.needs("usergroup_handle")
    assert not load_policy(policy(tmp_path, "gitops: warn\n")).identity_for("").impersonates


def test_several_clusters_take_the_first_rule_matching_the_context(tmp_path: Path) -> None:
    loaded = load_policy(
        policy(
            tmp_path,
            """\
            identity:
              - {mode: impersonate, contexts: [prod-*], reads: impersonate}
              - {mode: bot}
            """,
        )
    )
    assert loaded.identity_for("prod-eu").reads_as_person
    assert not loaded.identity_for("staging").impersonates


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('identity: {mode: impersonate, user: "{mail}"}', "identity"),
        ('identity: {mode: impersonate, user: "{usergroup_handle}"}', "identity"),
        ("identity: {mode: sudo}", "identity"),
        ("identity: {mode: impersonate, read: bot}", "identity"),
    ],
)
def test_a_broken_identity_is_reported_with_its_line(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(policy(tmp_path, text + "\n"))
    (problem,) = raised.value.problems
    assert problem.line == 1 and field in str(problem)


def test_usergroup_handle_makes_one_group_per_user_group() -> None:
    rule = IdentityRule(
        mode="impersonate", user="{email}", groups=["rollout-bot:users", "slack:{usergroup_handle}"]
    )
    identity = identity_of(rule, ALICE)
    assert identity.user == "alice@example.com"
    assert identity.groups == ("rollout-bot:users", "slack:sre", "slack:web")
    assert identity.extras == {EXTRA_SLACK_USER: ("U0ALICE",)}
    lonely = SlackPerson("U0CAROL", "carol", "carol@example.com")
    assert identity_of(rule, lonely).groups == ("rollout-bot:users",)


def test_slack_id_and_handle_templates() -> None:
    rule = IdentityRule(mode="impersonate", user="slack:{handle}", groups=["id:{slack_id}"])
    identity = identity_of(rule, ALICE)
    assert (identity.user, identity.groups) == ("slack:alice", ("id:U0ALICE",))


@pytest.mark.parametrize(
    ("person", "words"),
    [
        (SlackPerson("U1", "g", "g@example.com", guest=True), "guests"),
        (SlackPerson("U2", "b", "", bot=True), "Bot and app users"),
        (SlackPerson("U3", "n", ""), "no email address"),
        (SlackPerson("U4", "d", "d@example.com", deleted=True), "deactivated"),
    ],
)
def test_who_cannot_get_an_identity_is_told_why(person: SlackPerson, words: str) -> None:
    refusal = refusal_of(IdentityRule(mode="impersonate"), person)
    assert refusal is not None and words in refusal


def test_no_email_is_fine_when_the_templates_do_not_use_it() -> None:
    rule = IdentityRule(mode="impersonate", user="slack:{slack_id}")
    assert refusal_of(rule, SlackPerson("U3", "n", "")) is None


def test_headers_repeat_per_group_and_value_and_escape_extra_keys() -> None:
    identity = KubeIdentity("alice@example.com", ("a", "b")).with_extra(
        EXTRA_APPROVED_BY, ["U0BOB", "U0ERIN"]
    )
    assert impersonation_headers(identity) == [
        ("Impersonate-User", "alice@example.com"),
        ("Impersonate-Group", "a"),
        ("Impersonate-Group", "b"),
        ("Impersonate-Extra-rollout-bot.io%2Fapproved-by", "U0BOB"),
        ("Impersonate-Extra-rollout-bot.io%2Fapproved-by", "U0ERIN"),
    ]


def test_forbidden_message_is_the_api_servers() -> None:
    alice = KubeIdentity("alice@example.com")
    assert forbidden_message(alice, "patch", "deployments", "apps", "team-b", "web") == (
        'deployments.apps "web" is forbidden: User "alice@example.com" cannot patch resource '
        '"deployments" in API group "apps" in the namespace "team-b"'
    )


def test_clients_per_identity_are_bounded_and_share_the_bots_connection_pool() -> None:
    from kubernetes import client as k8s

    from bot.adapters.k8s.impersonation import ImpersonatingClients

    configuration = k8s.Configuration()
    configuration.host = "https://127.0.0.1:1"
    base = k8s.ApiClient(configuration)
    clients = ImpersonatingClients(base, name="test", capacity=2)
    people = [KubeIdentity(f"user{i}@example.com") for i in range(3)]
    first = clients.cluster(people[0])
    assert clients.cluster(people[0]) is first
    for identity in people[1:]:
        clients.cluster(identity)
    assert len(clients) == 2
    assert clients.cluster(people[0]) is not first  # evicted, rebuilt on demand
    transport = first.api_client.rest_client
    assert transport._shared is base.rest_client  # type: ignore[attr-defined]
    transport.close()  # an evicted identity never closes the bot's pool
    assert base.rest_client.pool_manager is not None


def test_a_name_that_cannot_travel_in_a_header_is_not_used() -> None:
    rule = IdentityRule(mode="impersonate", user="{email}", groups=["slack:{usergroup_handle}"])
    person = SlackPerson("U5", "zoë", "zoë@example.com", usergroup_handles=("ok", "bad\nline"))
    with pytest.raises(ValueError):
        identity_of(rule, person)
    fine = SlackPerson("U6", "zoe", "zoe@example.com", usergroup_handles=("ok", "bad\nline"))
    assert identity_of(rule, fine).groups == ("slack:ok",)
