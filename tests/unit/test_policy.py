"""The policy: what the example file means, and how a broken file is reported."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bot.domain.policy import (
    EVERYONE,
    POLICY_ACTIONS,
    POLICY_ENV_VAR,
    READ_ONLY_NOTICE,
    ApprovalRule,
    Policy,
    PolicyError,
    PolicyProblem,
    load_policy,
    read_only_default,
)
from bot.domain.verbs import ACTIONS

pytestmark = pytest.mark.timeout(30)

NOBODY: frozenset[str] = frozenset()
#: A full member of the workspace, whom `*` stands for.
MEMBER: frozenset[str] = frozenset({EVERYONE})

EXAMPLE = """\
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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert all(problem.file == str(path) for problem in caught.value.problems)
    return [(p.line, p.field, p.message) for p in caught.value.problems]


@pytest.fixture
def example(tmp_path: Path) -> Policy:
    return load_policy(write(tmp_path, EXAMPLE))


# --- the example -----------------------------------------------------------------------------


def test_the_documented_example_loads_as_written(example: Policy) -> None:
    assert example.channels["C0PROD"].namespaces == ["prod", "prod-*"]
    assert example.permissions[1].users == ["U0ALICE", "S0DEVS"]
    rule = example.approvals[0]
    assert rule.required == 1
    assert rule.ttl == timedelta(minutes=30)
    assert rule.on_failure == "notify"


def test_the_policy_knows_every_action_the_grammar_has_except_help() -> None:
    assert set(ACTIONS) == POLICY_ACTIONS
    assert "help" not in POLICY_ACTIONS


def test_a_loaded_policy_cannot_be_changed(example: Policy) -> None:
    with pytest.raises(ValidationError):
        example.approvals = []  # type: ignore[misc]


# --- decisions -------------------------------------------------------------------------------


def test_a_channel_binding_names_the_default_namespace(example: Policy) -> None:
    assert example.default_namespace("C0PROD") == "prod"
    assert example.default_namespace("C0DEPLOYS") == "default"
    assert example.default_namespace("C0ELSEWHERE") == "default"


def test_a_channel_follows_outside_rollouts_only_when_it_says_so(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            channels:
              C0PROD: {namespace: prod, follow_outside: true}
              C0STAGING: {namespace: staging}
            """,
        )
    )
    assert policy.channels["C0PROD"].follow_outside is True
    assert policy.channels["C0STAGING"].follow_outside is False


@pytest.mark.parametrize(
    ("channel", "namespace", "allowed"),
    [
        ("C0PROD", "prod", True),
        ("C0PROD", "prod-eu", True),
        ("C0PROD", "production", False),
        ("C0PROD", "staging", False),
        ("C0PROD", "preprod-eu", False),
        ("C0DEPLOYS", "staging", True),
        ("C0UNBOUND", "anything", True),
    ],
)
def test_a_channel_with_namespaces_only_works_on_those(
    example: Policy, channel: str, namespace: str, allowed: bool
) -> None:
    assert example.channel_allows_namespace(channel, namespace) is allowed


@pytest.mark.parametrize(
    ("user", "groups", "action", "namespace", "allowed"),
    [
        # `*` is matched only once the caller has put EVERYONE among the user's groups.
        ("U0CAROL", MEMBER, "list", "prod", True),
        ("U0CAROL", MEMBER, "diff", "kube-system", True),
        ("U0CAROL", NOBODY, "list", "prod", False),
        ("U0CAROL", NOBODY, "scale", "staging", False),
        ("U0CAROL", NOBODY, "audit", "staging", False),
        ("U0ALICE", NOBODY, "scale", "prod", True),
        ("U0ALICE", NOBODY, "audit", "prod", True),
        ("U0CAROL", frozenset({"S0DEVS"}), "restart", "prod-eu", True),
        ("U0CAROL", frozenset({"S0OTHER"}), "restart", "prod-eu", False),
        ("U0CAROL", NOBODY, "help", "prod", True),
        ("U0ALICE", NOBODY, "delete", "prod", False),
        ("U0ALICE", NOBODY, "*", "prod", False),
    ],
)
def test_permissions_are_granted_by_any_matching_rule(
    example: Policy, user: str, groups: frozenset[str], action: str, namespace: str, allowed: bool
) -> None:
    assert example.is_allowed(user, groups, action, namespace) is allowed


def test_namespace_patterns_match_the_whole_name(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            permissions:
              - users: [U0ALICE]
                namespaces: ["team-?", "*-staging"]
                actions: [scale]
            """,
        )
    )
    assert policy.is_allowed("U0ALICE", NOBODY, "scale", "team-a")
    assert policy.is_allowed("U0ALICE", NOBODY, "scale", "web-staging")
    assert not policy.is_allowed("U0ALICE", NOBODY, "scale", "team-ab")
    assert not policy.is_allowed("U0ALICE", NOBODY, "scale", "web-staging-2")


@pytest.mark.parametrize(
    ("action", "namespace", "needs_approval"),
    [
        ("scale", "prod", True),
        ("set-image", "prod-eu", True),
        ("scale", "staging", False),
        ("status", "prod", False),
        ("diff", "prod", False),
    ],
)
def test_an_approval_rule_covers_its_actions_in_its_namespaces(
    example: Policy, action: str, namespace: str, needs_approval: bool
) -> None:
    rule = example.approval_rule_for(action, namespace)
    assert (rule is example.approvals[0]) if needs_approval else rule is None


def test_the_first_matching_approval_rule_wins(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            approvals:
              - namespaces: [prod]
                actions: [scale]
                approvers: [U0BOB]
                ttl: 5m
              - namespaces: ["*"]
                actions: ["*"]
                required: 2
                approvers: [S0SRE]
                ttl: 1h
                on_failure: rollback
            """,
        )
    )
    assert policy.approval_rule_for("scale", "prod") is policy.approvals[0]
    assert policy.approval_rule_for("undo", "prod") is policy.approvals[1]
    assert policy.approval_rule_for("scale", "staging") is policy.approvals[1]
    assert policy.approvals[1].on_failure == "rollback"


def test_approvers_are_users_or_members_of_groups(example: Policy) -> None:
    rule = example.approvals[0]
    assert rule.is_approver("U0BOB", NOBODY)
    assert rule.is_approver("U0DAVE", frozenset({"S0SRE"}))
    assert not rule.is_approver("U0DAVE", frozenset({"S0DEVS"}))
    assert not rule.is_approver("U0ALICE", NOBODY)


def test_a_wildcard_approver_is_refused_with_its_line(tmp_path: Path) -> None:
    """`approvers: ["*"]` would let anyone approve (the requester's neighbour included), so the
    loader refuses it rather than have it mean nothing or everything."""
    path = write(
        tmp_path,
        """\
        approvals:
          - namespaces: [prod]
            actions: [scale]
            approvers: ["*"]
        """,
    )
    ((line, field, message),) = problems_of(path)
    assert (line, field) == (4, "approvals[0].approvers")
    assert "`*` cannot approve" in message


def test_referenced_groups_tell_the_caller_whether_to_resolve_groups(example: Policy) -> None:
    assert example.referenced_groups() == {"S0DEVS", "S0SRE"}
    assert read_only_default().referenced_groups() == set()


# --- without a file --------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["list", "status", "history", "diff", "help"])
def test_without_a_file_everyone_may_look(action: str) -> None:
    assert read_only_default().is_allowed("U0ANYONE", MEMBER, action, "prod")


@pytest.mark.parametrize(
    "action", [a for a in ACTIONS if a not in {"list", "status", "history", "diff"}]
)
def test_without_a_file_nobody_may_do_anything_else(action: str) -> None:
    policy = read_only_default()
    assert not policy.is_allowed("U0ANYONE", frozenset({"S0SRE"}), action, "default")
    assert policy.approval_rule_for(action, "default") is None


def test_the_read_only_notice_shows_a_policy_that_works() -> None:
    assert POLICY_ENV_VAR in READ_ONLY_NOTICE
    snippet = READ_ONLY_NOTICE.split("```")[1]
    policy = Policy.model_validate(yaml.safe_load(snippet))
    assert policy.is_allowed("U0123ABCD", NOBODY, "scale", "staging")
    assert not policy.is_allowed("U0OTHER", NOBODY, "scale", "staging")


# --- ttl -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "ttl"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("1s", timedelta(seconds=1)),
        (1800, timedelta(minutes=30)),
        ('"1800"', timedelta(minutes=30)),
    ],
)
def test_ttl_is_a_duration_or_seconds(tmp_path: Path, written: object, ttl: timedelta) -> None:
    policy = load_policy(
        write(
            tmp_path,
            f"""\
            approvals:
              - namespaces: [prod]
                actions: [scale]
                approvers: [U0BOB]
                ttl: {written}
            """,
        )
    )
    assert policy.approvals[0].ttl == ttl


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("30x", "`30x` is not a duration such as `90s`, `30m`, `2h` or `1h30m`, or a number"),
        ("1.5h", "`1.5h` is not a duration"),
        ("-5m", "`-5m` is not a duration"),
        ("m", "`m` is not a duration"),
        ('""', "`` is not a duration"),
        ("true", "`True` is not a duration"),
        ("99999999999d", "`99999999999d` is not a duration"),
        ("999999999d", "must be between 1 second and 7 days"),
        ("0", "must be between 1 second and 7 days"),
        ("8d", "must be between 1 second and 7 days"),
        ("169h", "must be between 1 second and 7 days"),
    ],
)
def test_a_bad_ttl_is_reported_on_its_line(tmp_path: Path, written: str, message: str) -> None:
    path = write(
        tmp_path,
        f"""\
        approvals:
          - namespaces: [prod]
            actions: [scale]
            approvers: [U0BOB]
            ttl: {written}
        """,
    )
    [(line, field, text)] = problems_of(path)
    assert (line, field) == (5, "approvals[0].ttl")
    assert text.startswith(message)


def test_ttl_defaults_to_thirty_minutes() -> None:
    rule = ApprovalRule(namespaces=["prod"], actions=["scale"], approvers=["U0BOB"])
    assert rule.ttl == timedelta(minutes=30)


# --- broken files ----------------------------------------------------------------------------


def test_a_misspelt_key_is_reported_on_its_line_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        approvals:
          - namespaces: [prod]
            actions: [scale]
            approver: [U0BOB]
            ttl: 30m
        """,
    )
    # One mistake, one problem: the suggestion already says `approvers` is what is missing.
    assert problems_of(path) == [
        (4, "approvals[0].approver", "unknown key `approver`; did you mean `approvers`?"),
    ]


@pytest.mark.parametrize(
    ("snippet", "field", "message"),
    [
        (
            "actions: [list, deploy]",
            "permissions[0].actions[1]",
            "unknown action `deploy`; actions are list, status, create, set-image, scale, "
            "history, diff, undo, pause, resume, restart, approvals, audit, freeze, freezes, "
            "promote, promotions, or `*` for all",
        ),
        (
            "actions: [list, set_image]",
            "permissions[0].actions[1]",
            "unknown action `set_image` (did you mean `set-image`?); actions are ",
        ),
        ("actions: []", "permissions[0].actions", "the list is empty: name at least one"),
        ("actions: list", "permissions[0].actions", "`list` is not a list: write `[a, b]`"),
    ],
)
def test_a_bad_action_is_reported_on_its_line(
    tmp_path: Path, snippet: str, field: str, message: str
) -> None:
    path = write(
        tmp_path,
        f"""\
        permissions:
          - users: ["*"]
            namespaces: ["*"]
            {snippet}
        """,
    )
    [(line, found_field, text)] = problems_of(path)
    assert (line, found_field) == (4, field)
    assert text.startswith(message)


@pytest.mark.parametrize(
    ("required", "message"),
    [
        ("0", "`0` is too small: use 1 or more"),
        ("-1", "`-1` is too small: use 1 or more"),
        ('"2"', "`2` is quoted: write the number without quotes"),
        ("true", "true is not a whole number"),
        ("1.5", "`1.5` is not a whole number"),
    ],
)
def test_required_is_a_whole_number_of_at_least_one(
    tmp_path: Path, required: str, message: str
) -> None:
    path = write(
        tmp_path,
        f"""\
        approvals:
          - namespaces: [prod]
            actions: [scale]
            required: {required}
            approvers: [U0BOB, U0CAROL]
        """,
    )
    [(line, field, text)] = problems_of(path)
    assert (line, field) == (4, "approvals[0].required")
    assert text.startswith(message)


def test_more_required_approvals_than_named_approvers_can_never_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        approvals:
          - namespaces: [prod]
            actions: [scale]
            required: 2
            approvers:
              - U0BOB
              - U0BOB
        """,
    )
    assert problems_of(path) == [
        (
            6,
            "approvals[0].approvers",
            "`required` is 2 but only 1 approver is listed, so nothing could ever be approved",
        )
    ]


def test_a_group_can_supply_any_number_of_approvers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        approvals:
          - namespaces: [prod]
            actions: [scale]
            required: 3
            approvers: [S0SRE]
        """,
    )
    assert load_policy(path).approvals[0].required == 3


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ("[u0bob]", "`u0bob` is not a Slack user id (U… or W…) or user-group id (S…), or `*`"),
        ("[bob]", "`bob` is not a Slack user id"),
        ("['@bob']", "`@bob` is not a Slack user id"),
        ("[C0PROD]", "`C0PROD` is not a Slack user id"),
        ("[U0-BOB]", "`U0-BOB` is not a Slack user id"),
        ("[123]", "`123` is not text: write it in quotes"),
    ],
)
def test_a_bad_user_id_is_reported_on_its_line(tmp_path: Path, users: str, message: str) -> None:
    path = write(
        tmp_path,
        f"""\
        permissions:
          - namespaces: ["*"]
            actions: [list]
            users:
              - U0ALICE
              - W0ENTERPRISE
              - S0GROUP
              - {users[1:-1]}
        """,
    )
    [(line, field, text)] = problems_of(path)
    assert (line, field) == (8, "permissions[0].users[3]")
    assert text.startswith(message)


@pytest.mark.parametrize(
    ("channels", "line", "field", "message"),
    [
        ("c0prod: {namespace: prod}", 2, "channels.c0prod", "`c0prod` is not a Slack channel id"),
        ("U0BOB: {namespace: prod}", 2, "channels.U0BOB", "`U0BOB` is not a Slack channel id"),
        ("C0PROD: {namespace: Prod}", 2, "channels.C0PROD.namespace", "`Prod` is not a valid"),
        (
            "C0PROD: {namespace: prod, namespaces: [prod_eu]}",
            2,
            "channels.C0PROD.namespaces[0]",
            "`prod_eu` is not a valid namespace",
        ),
        (
            "C0PROD: {namespaces: ['prod.*']}",
            2,
            "channels.C0PROD.namespaces[0]",
            "`prod.*` is not a valid namespace pattern",
        ),
        (
            "C0PROD: {namespace: staging, namespaces: [prod, prod-*]}",
            2,
            "channels.C0PROD",
            "the channel's namespace `staging` is not among its namespaces",
        ),
        (
            "C0PROD: {namespaces: []}",
            2,
            "channels.C0PROD.namespaces",
            "the list is empty: name at least one",
        ),
        ("C0PROD: {namespce: prod}", 2, "channels.C0PROD.namespce", "unknown key `namespce`"),
        (
            "C0PROD: {namespace: prod, follow_outside: sometimes}",
            2,
            "channels.C0PROD.follow_outside",
            "`sometimes` is not `true` or `false`",
        ),
        (
            "C0PROD: {namespaces: [prod], follow_outside: true}",
            2,
            "channels.C0PROD",
            "`follow_outside` needs the channel's `namespace`",
        ),
        ("C0PROD: prod", 2, "channels.C0PROD", "`prod` is not a mapping: write `key: value` pairs"),
    ],
)
def test_a_bad_channel_binding_is_reported_on_its_line(
    tmp_path: Path, channels: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, f"channels:\n  {channels}\n")
    [(found_line, found_field, text)] = problems_of(path)
    assert (found_line, found_field) == (line, field)
    assert text.startswith(message)


def test_a_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        permissions:
          - users: ["*"
            actions: [list]
        """,
    )
    # The `[` left open on line 2 is the mistake; YAML only notices on line 3.
    [(line, field, message)] = problems_of(path)
    assert (line, field) == (2, "")
    assert message == (
        "YAML error: the `[` opened on this line is not closed by a `]` "
        "(line 3 starts something else)"
    )


def test_a_missing_closing_brace_is_reported_on_the_line_that_lacks_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        channels:
          C0DEPLOYS: {namespace: default
        permissions:
          - users: [U0ALICE]
        """,
    )
    [(line, _, message)] = problems_of(path)
    assert line == 2
    assert "`{` opened on this line is not closed by a `}`" in message


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    path = write(tmp_path, 'channels:\n  C0A: {namespace: "prod}\npermissions: []\n')
    [(line, _, message)] = problems_of(path)
    assert (line, message) == (2, "YAML error: the quote opened on this line is never closed")


def test_a_misindented_key_is_reported_on_its_line_in_plain_words(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  C0A: {namespace: prod}\n   permissions: []\n")
    [(line, _, message)] = problems_of(path)
    assert line == 3
    assert message.startswith("YAML error: this line is indented differently")


def test_an_unquoted_wildcard_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "permissions:\n  - users: [*]\n")
    [(line, _, message)] = problems_of(path)
    assert line == 2
    assert message.endswith('write a wildcard in quotes, as "*"')


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    path = write(tmp_path, "channels: !!python/object/apply:os.system [echo hi]\n")
    [(line, _, message)] = problems_of(path)
    assert line == 1
    assert "could not determine a constructor" in message


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        permissions:
          - users: [U0ALICE]
            namespaces: ["*"]
            actions: ["*"]
            users: ["*"]
        """,
    )
    assert problems_of(path) == [
        (
            5,
            "permissions[0].users",
            "`users` appears more than once; YAML would silently keep only the last one",
        )
    ]


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of(path) == [(None, "", "the policy file does not exist")]
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == f"{path}: the policy file does not exist"


def test_a_directory_is_one_problem(tmp_path: Path) -> None:
    [(line, field, message)] = problems_of(tmp_path)
    assert (line, field) == (None, "")
    assert message.startswith("cannot read the policy file")


def test_a_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"channels: {C0X: {namespace: \xff}}\n")
    [(line, _, message)] = problems_of(path)
    assert line is None
    assert message.startswith("the policy file is not UTF-8 text")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "the policy file is empty"),
        ("# only a comment\n", None, "the policy file is empty"),
        ("- users: []\n", 1, "the policy must be a mapping"),
        ("\n\njust text\n", 3, "the policy must be a mapping"),
        (
            "a: 1\n---\nb: 2\n",
            2,
            "YAML error: expected a single document in the stream, but found another document",
        ),
        ("channels: {}\x07\n", 1, "YAML error: special characters are not allowed"),
    ],
)
def test_a_file_that_is_not_a_policy_is_one_problem(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    [(found_line, _, found)] = problems_of(write(tmp_path, text))
    assert found_line == line
    assert found.startswith(message)


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        channels:
          C0PROD: {namespace: prod, namespaces: [prod, prod-*]}
        permisions: []
        permissions:
          - users: [U0ALICE, bob]
            namespaces: ["*"]
            actions: [list, deploy]
        approvals:
          - namespaces: [prod]
            actions: [scale]
            required: 0
            approvers: [U0BOB]
            ttl: 30x
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (3, "permisions"),
        (5, "permissions[0].users[1]"),
        (7, "permissions[0].actions[1]"),
        (11, "approvals[0].required"),
        (13, "approvals[0].ttl"),
    ]
    lines = str(caught.value).splitlines()
    assert (
        lines[0] == f"{path}:3: permisions: unknown key `permisions`; did you mean `permissions`?"
    )
    assert lines[3] == (f"{path}:11: approvals[0].required: `0` is too small: use 1 or more")


def test_a_problem_renders_as_file_line_field_message() -> None:
    assert (
        str(PolicyProblem("p.yaml", 4, "approvals[0].ttl", "bad"))
        == "p.yaml:4: approvals[0].ttl: bad"
    )
    assert str(PolicyProblem("p.yaml", 2, "", "bad")) == "p.yaml:2: bad"
    assert str(PolicyProblem("p.yaml", None, "", "bad")) == "p.yaml: bad"


def test_a_policy_built_in_code_is_validated_the_same_way() -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate(
            {"permissions": [{"users": ["*"], "namespaces": ["*"], "actions": ["*"], "x": 1}]}
        )
    with pytest.raises(ValidationError):
        ApprovalRule(namespaces=["prod"], actions=["scale"], approvers=[], ttl="5m")


def test_gitops_defaults_to_warn_and_takes_refuse(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "permissions: []\n")).gitops == "warn"
    assert load_policy(write(tmp_path, "permissions: []\ngitops: refuse\n")).gitops == "refuse"


@pytest.mark.parametrize("value", ["block", "true", "Warn", "[warn]"])
def test_a_bad_gitops_setting_is_reported_on_its_line(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"permissions: []\n\ngitops: {value}\n")
    [(line, field, text)] = problems_of(path)
    assert (line, field) == (3, "gitops")
    assert "is not allowed here: use `warn` or `refuse`" in text


# --- pipelines ---------------------------------------------------------------------------------

PIPELINES = """\
pipelines:
  web:
    from: {context: staging, namespace: web, workload: deploy/web}
    waves:
      - [{context: prod-eu, namespace: web, workload: deploy/web}]
      - [{context: prod-us, namespace: web, workload: sts/web},
         {context: prod-ap, namespace: web, workload: web}]
    gate: auto
    soak: 90s
    on_failure: rollback
"""


def test_a_pipeline_reads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(PIPELINES)
    pipeline = load_policy(path).pipelines["web"]
    assert pipeline.source.where() == "staging/web/deploy/web"
    assert [[t.kind for t in wave] for wave in pipeline.waves] == [
        ["deployment"],
        ["statefulset", "deployment"],
    ]
    assert pipeline.soak.total_seconds() == 90 and pipeline.gate == "auto"
    assert pipeline.on_failure == "rollback"


@pytest.mark.parametrize(
    ("edit", "line", "says"),
    [
        (
            ("gate: auto", "gate: maybe"),
            8,
            "pipelines.web.gate: `maybe` is not allowed here: use `approval` or `auto`",
        ),
        (("soak: 90s", "soak: 2d"), 9, "pipelines.web.soak: must be between `0s` and `1d`"),
        (("sts/web", "pod/web"), 6, "is not a Deployment, StatefulSet or DaemonSet"),
        (("on_failure: rollback", "on_falure: rollback"), 10, "did you mean `on_failure`?"),
        (
            ("prod-ap, namespace: web, workload: web", "prod-eu, namespace: web, workload: web"),
            7,
            "is named twice",
        ),
    ],
)
def test_pipeline_mistakes_name_the_file_and_line(
    tmp_path: Path, edit: tuple[str, str], line: int, says: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(PIPELINES.replace(*edit))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert f"{path}:" in text and says in text, text
    assert caught.value.problems[0].line is not None
