"""Several clusters, the pure parts: `--context` in the grammar, `contexts` in the policy, which
context a command resolves to, and the Redis keys that carry it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.adapters.k8s.contexts import available
from bot.adapters.redis.keys import Keys, context_part
from bot.domain import verbs as cmd
from bot.domain.errors import UnknownContext
from bot.domain.policy import PolicyError, load_policy
from bot.services.clusters import Contexts, single


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# -- grammar --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "set image web web=nginx:2 -n shop --context west",
        "set image web --context=west web=nginx:2 -n shop",
        "status sts/db --context admin@prod-eu",
        "list --context arn:aws:eks:eu-west-1:1234:cluster/prod",
        "audit web --context west --limit=5",
    ],
)
def test_every_verb_takes_context_and_render_gives_it_back(text: str) -> None:
    command = cmd.parse_command(text)
    assert command.context is not None  # type: ignore[union-attr]
    assert cmd.parse_command(cmd.render_command(command)) == command


def test_without_context_the_command_and_its_record_are_as_before() -> None:
    command = cmd.parse_command("scale web --replicas=3 -n shop")
    assert command.context is None  # type: ignore[union-attr]
    assert "--context" not in cmd.render_command(command)
    assert "context" not in cmd.command_record(command)["fields"]
    record = cmd.command_record(cmd.parse_command("scale web --replicas=3 --context west"))
    assert record["fields"]["context"] == "west"
    assert cmd.from_record(record).context == "west"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("status web --context", "needs a value"),
        ("status web --context a --context b", "more than once"),
        ("status web --context 'we st'", "not a valid context name"),
    ],
)
def test_a_bad_context_flag_is_a_usage_error(text: str, message: str) -> None:
    with pytest.raises(cmd.CommandError) as caught:
        cmd.parse_command(text)
    assert message in caught.value.message


# -- policy ---------------------------------------------------------------------------------------


def test_rules_and_channels_take_contexts(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            channels:
              C0EU: {context: prod-eu, contexts: [prod-eu], namespace: shop}
              C0ANY: {namespace: shop}
            permissions:
              - users: [U0ALICE]
                namespaces: [shop]
                actions: ["*"]
                contexts: [prod-*]
              - users: [U0BOB]
                namespaces: [shop]
                actions: ["*"]
            approvals:
              - namespaces: [shop]
                actions: [scale]
                contexts: [prod-eu]
                approvers: [U0BOB]
            """,
        )
    )
    assert policy.default_context("C0EU") == "prod-eu"
    assert policy.default_context("C0ANY") is None
    assert policy.channel_allows_context("C0EU", "prod-eu")
    assert not policy.channel_allows_context("C0EU", "prod-us")
    assert policy.channel_allows_context("C0ANY", "anything")
    no_groups: frozenset[str] = frozenset()
    assert policy.is_allowed("U0ALICE", no_groups, "scale", "shop", "prod-us")
    assert not policy.is_allowed("U0ALICE", no_groups, "scale", "shop", "staging")
    assert policy.is_allowed("U0BOB", no_groups, "scale", "shop", "staging")  # default "*"
    assert policy.approval_rule_for("scale", "shop", "prod-eu") is not None
    assert policy.approval_rule_for("scale", "shop", "prod-us") is None


def test_a_bad_context_in_the_policy_is_reported_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(
            write(
                tmp_path,
                """\
                channels:
                  C0EU: {context: prod-eu, contexts: [prod-us]}
                permissions:
                  - users: [U0ALICE]
                    namespaces: [shop]
                    actions: ["*"]
                    contexts: ["prod eu"]
                """,
            )
        )
    problems = {(p.line, p.field): p.message for p in caught.value.problems}
    assert "not among its contexts" in problems[(2, "channels.C0EU")]
    assert "not a valid context pattern" in problems[(7, "permissions[0].contexts[0]")]


def test_a_channel_bound_to_a_context_reaches_only_it_unless_it_lists_more(
    tmp_path: Path,
) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            channels:
              C0US: {context: prod-us, namespace: shop}
              C0BOTH: {context: prod-us, contexts: [prod-*], namespace: shop}
            """,
        )
    )
    assert policy.channel_allows_context("C0US", "prod-us")
    assert not policy.channel_allows_context("C0US", "prod-eu")
    assert policy.channel_allows_context("C0BOTH", "prod-eu")
    # Bound by its kubeconfig name on a one-cluster bot: the same cluster.
    assert policy.channel_allows_context("C0US", "test", {"prod-us": "test"})


def test_a_contexts_pattern_matching_no_served_context_is_a_problem_at_its_line(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """\
        channels:
          C0EU: {contexts: [prod-eu, qa-*]}
        permissions:
          - users: [U0ALICE]
            namespaces: [shop]
            actions: ["*"]
            contexts: [prod-*]
        approvals:
          - namespaces: [shop]
            actions: [scale]
            approvers: [U0BOB]
            contexts:
              - prdo-eu
        """,
    )
    load_policy(path)  # without the served contexts: nothing to check against
    with pytest.raises(PolicyError) as caught:
        load_policy(path, served_contexts=("prod-eu", "prod-us"))
    problems = {(p.line, p.field): p.message for p in caught.value.problems}
    assert set(problems) == {(2, "channels.C0EU.contexts[1]"), (13, "approvals[0].contexts[0]")}
    assert problems[(13, "approvals[0].contexts[0]")].startswith(
        "`prdo-eu` matches no context the bot serves (`prod-eu`, `prod-us`)"
    )


# -- which context a command works on --------------------------------------------------------------


def test_context_resolution_with_several_clusters() -> None:
    contexts = Contexts(("east", "west"), "east")
    assert contexts.multi
    assert contexts.resolve(None) == "east"
    assert contexts.resolve(None, "west") == "west"
    assert contexts.resolve("east", "west") == "east"  # --context beats the channel's
    with pytest.raises(UnknownContext) as caught:
        contexts.resolve("wset")
    message = caught.value.user_message
    assert "Unknown context `wset`" in message and "Did you mean `west`?" in message
    assert "`east`, `west`" in message


def test_with_one_cluster_the_context_is_unsaid() -> None:
    contexts = Contexts(("test",), "test", {"kind-dev": "test"})
    assert not contexts.multi
    assert contexts.resolve(None) == ""
    assert contexts.resolve("test") == ""
    assert contexts.resolve("kind-dev") == ""  # its kubeconfig name is accepted too
    assert contexts.label("") == "test"
    with pytest.raises(UnknownContext):
        contexts.resolve("prod")
    assert single("default").resolve(None) == ""


# -- keys -----------------------------------------------------------------------------------------


def test_keys_carry_the_context_and_a_single_cluster_keeps_its_layout() -> None:
    keys = Keys()
    assert keys.ours("u1", 3) == "{rollout-bot}:ours:u1:3"
    assert keys.ours("u1", 3, "east") == "{rollout-bot}:ours:east:u1:3"
    assert keys.notice("u1", 2, "west") == "{rollout-bot}:notice:west:u1:2"
    assert keys.rollouts_active_in("") == keys.rollouts_active
    assert keys.rollouts_active_in("east") != keys.rollouts_active_in("west")
    odd = context_part("arn:aws:eks:eu-west-1:1234:cluster/prod")
    assert Keys.valid_part(odd) and odd != context_part("arn:aws:eks:eu-west-1:1234:cluster/dev")


# -- kubeconfig merging ----------------------------------------------------------------------------


def _kubeconfig(path: Path, name: str, current: str | None) -> Path:
    lines = [
        "apiVersion: v1",
        "kind: Config",
        f"clusters: [{{name: {name}, cluster: {{server: 'https://{name}.invalid'}}}}]",
        f"users: [{{name: {name}, user: {{token: t}}}}]",
        f"contexts: [{{name: {name}, context: {{cluster: {name}, user: {name}}}}}]",
    ]
    if current:
        lines.append(f"current-context: {current}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kubeconfig_files_merge_as_kubectl_merges_them(tmp_path: Path) -> None:
    east = _kubeconfig(tmp_path / "east", "east", "east")
    west = _kubeconfig(tmp_path / "west", "west", "west")
    found = available(f"{east}:{tmp_path / 'missing'}:{west}", "in-cluster")
    assert found.names == ("east", "west")
    assert found.current == "east"  # the first file that sets one
    assert available(f"{west}:{east}", "in-cluster").current == "west"
