"""`rollout-bot check --policy FILE` as a newcomer runs it first: on a laptop, with nothing set.

The CLI runs as a process with an empty environment: no Slack token, no Redis, no cluster.
It must answer from the file alone, at once, with nothing but its findings. With credentials
that lead nowhere it still answers promptly in its own words, without the Slack SDK's log lines.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.devkit.loopback import free_port, stop_listening
from tests.support.bot_process import ROLLOUT_BOT

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = REPO / "deploy" / "examples" / "policy.yaml"


def run_check(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The finished process and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [str(ROLLOUT_BOT), "check", *args], env=env, capture_output=True, text=True, timeout=30
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu


def test_check_policy_validates_the_example_with_an_empty_environment() -> None:
    started = time.monotonic()
    result, cpu = run_check({}, "--policy", str(EXAMPLE_POLICY))
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"policy: {EXAMPLE_POLICY} OK\n"
    assert result.stderr == ""
    # Under a second of work; the wall clock gets slack for a machine shared with other jobs.
    assert cpu < 1.0, cpu
    assert elapsed < 5.0, elapsed


def test_check_policy_prints_only_the_findings_of_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            permissions:
              - users: [U0ALICE]
                namespaces: ["*"]
                actions: [list]
            approvals:
              - namespaces: [prod]
                actions: [set-image]
                required: 0
                approver: [U0BOB]
            """
        )
    )

    result, _ = run_check({}, "--policy", str(path))

    assert result.returncode == 1
    assert result.stdout == ""
    # One line per mistake: the typo is not reported a second time as a missing key, and the
    # number is judged in the policy's terms, not the validator's.
    assert result.stderr.splitlines() == [
        f"{path}:8: approvals[0].required: `0` is too small: use 1 or more",
        f"{path}:9: approvals[0].approver: unknown key `approver`; did you mean `approvers`?",
    ]


def test_check_policy_reports_an_unclosed_brace_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("channels:\n  C0DEPLOYS: {namespace: default\npermissions: []\n")

    result, _ = run_check({}, "--policy", str(path))

    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}:2: YAML error: the `{{` opened on this line")


def test_check_without_policy_or_credentials_points_at_the_offline_check() -> None:
    result, _ = run_check({})

    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is required but not set" in result.stderr
    assert "`rollout-bot check --policy FILE` checks a policy file" in result.stderr


def test_check_with_credentials_that_lead_nowhere_answers_in_its_own_words(
    tmp_path: Path,
) -> None:
    closed = free_port()
    # A "Slack" that hangs up on every connection, counting them: the check tries once.
    slack = socket.create_server(("127.0.0.1", 0))
    attempts: list[int] = []

    def hang_up() -> None:
        while True:
            try:
                connection, _ = slack.accept()
            except OSError:
                return
            attempts.append(1)
            connection.close()

    listening = threading.Thread(target=hang_up, daemon=True)
    listening.start()
    env = {
        "SLACK_BOT_TOKEN": "xoxb-not-a-real-token",
        "SLACK_APP_TOKEN": "xapp-not-a-real-token",
        "SLACK_API_URL": f"http://127.0.0.1:{slack.getsockname()[1]}/api/",
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
        "ROLLOUT_BOT_STATE_KEY": "s" * 40,
    }
    try:
        result, _ = run_check(env, "--policy", str(EXAMPLE_POLICY))
    finally:
        stop_listening(slack)
        listening.join(timeout=5)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"policy: {EXAMPLE_POLICY} OK",
        "state key: set (approval requests, votes and tracked rollouts are sealed)",
    ]
    # Only the check's own lines: no slack_sdk log lines, no retries.
    problems = result.stderr.splitlines()
    assert [line.split(":", 1)[0] for line in problems] == ["redis", "kubernetes", "slack"]
    assert problems[2].startswith("slack: cannot reach SLACK_API_URL (")
    assert len(attempts) == 1
