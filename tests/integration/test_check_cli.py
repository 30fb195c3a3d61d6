"""`rollout-bot check` and start-up configuration errors, run as the operator runs them.

The CLI is a separate process with the bot's environment (`bot_env`), pointed at the real
Redis, the local control plane (with the bot's own, namespace-limited identity) and the
Slack stand-in.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.devkit.control_plane import ClusterInfo
from tests.devkit.loopback import free_port
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import ROLLOUT_BOT, SIGNING_SECRET, bot_env

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(60)]

# Four mistakes at once: an unknown action, required: 0, a typo'd key (`approver`) and a ttl
# that is not a duration.
BAD_POLICY = textwrap.dedent(
    """\
    channels:
      C0DEPLOYS: {namespace: default}
    permissions:
      - users: [U0ALICE]
        namespaces: ["*"]
        actions: [list, deploy]
    approvals:
      - namespaces: [prod-*]
        actions: [set-image]
        required: 0
        approver: [U0BOB]
        ttl: soon
    """
)
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>[0-9]+): (?P<field>[\w.\[\]]+): (?P<msg>.+)$")


@pytest.fixture
def env(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, policy_file: Path
) -> dict[str, str]:
    return bot_env(
        slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=policy_file
    )


def rollout_bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROLLOUT_BOT), *args], env=env, capture_output=True, text=True, timeout=40
    )


def test_check_passes_with_a_good_policy_and_every_service_reachable(
    env: dict[str, str], policy_file: Path
) -> None:
    result = rollout_bot(env, "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"policy: {policy_file} OK",
        "state key: set (approval requests, votes and tracked rollouts are sealed)",
        "redis: OK",
        "kubernetes: OK",
        "slack: OK",
    ]


def test_check_says_approvals_need_a_state_key(env: dict[str, str]) -> None:
    del env["ROLLOUT_BOT_STATE_KEY"]
    result = rollout_bot(env, "check")
    assert result.returncode == 1
    assert "ROLLOUT_BOT_STATE_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_lists_every_problem_of_a_bad_policy_with_file_line_and_field(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "bad-policy.yaml"
    path.write_text(BAD_POLICY)

    result = rollout_bot({**env, "ROLLOUT_BOT_POLICY": str(path)}, "check")

    assert result.returncode != 0
    problems = [m for line in result.stderr.splitlines() if (m := PROBLEM_LINE.match(line))]
    assert {m["file"] for m in problems} == {str(path)}
    found = {(int(m["line"]), m["field"]): m["msg"] for m in problems}
    assert "unknown action `deploy`" in found[(6, "permissions[0].actions[1]")]
    assert found[(10, "approvals[0].required")] == "`0` is too small: use 1 or more"
    assert (
        found[(11, "approvals[0].approver")] == "unknown key `approver`; did you mean `approvers`?"
    )
    assert "`soon` is not a duration" in found[(12, "approvals[0].ttl")]
    # The typo is one mistake: no second "missing required key `approvers`".
    assert (8, "approvals[0].approvers") not in found
    assert len(problems) == 4, result.stderr
    # The connections are still checked, so one run shows everything to fix.
    assert "redis: OK" in result.stdout and "slack: OK" in result.stdout


def test_check_names_an_unreachable_redis_without_printing_its_password(
    env: dict[str, str],
) -> None:
    url = f"redis://:hunter2-redis-password@127.0.0.1:{free_port()}/0"

    result = rollout_bot({**env, "REDIS_URL": url}, "check")

    assert result.returncode != 0
    assert "redis: cannot reach REDIS_URL" in result.stderr
    assert "redis: OK" not in result.stdout
    assert "kubernetes: OK" in result.stdout and "slack: OK" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def test_check_reports_a_rejected_slack_token_without_printing_it(env: dict[str, str]) -> None:
    result = rollout_bot({**env, "SLACK_BOT_TOKEN": "xoxb-revoked-token-value"}, "check")

    assert result.returncode != 0
    assert "slack: SLACK_BOT_TOKEN rejected (invalid_auth)" in result.stderr
    assert "xoxb-revoked" not in result.stdout + result.stderr


@pytest.mark.parametrize("argv", [["serve", "--http"], ["check"]], ids=["serve", "check"])
def test_missing_slack_bot_token_stops_start_up_naming_the_variable_and_no_secret(
    env: dict[str, str], argv: list[str]
) -> None:
    without_token = {k: v for k, v in env.items() if k != "SLACK_BOT_TOKEN"}
    without_token["REDIS_URL"] = "redis://:hunter2-redis-password@127.0.0.1:6379/0"

    result = rollout_bot(without_token, *argv)

    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is required but not set" in result.stderr
    output = result.stdout + result.stderr
    assert SIGNING_SECRET not in output and "hunter2" not in output
    assert "Traceback" not in output
