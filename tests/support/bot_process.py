"""The real bot as a separate process (`rollout-bot serve --http`), and a driver that talks to it
the way Slack does: signed requests in, the Web API stand-in out.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.devkit.loopback import free_port
from tests.devkit.slack.records import RecordedCall
from tests.devkit.slack.signed_requests import Response, send_block_action, send_slash_command
from tests.devkit.slack.web_api import SlackStandin

REPO = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "test-signing-secret"
# Seals what the bot keeps in Redis (approvals, votes, tracked rollouts); 32 bytes at least.
STATE_KEY = "test-state-key-for-sealing-records-0123456789"
ROLLOUT_BOT = REPO / ".venv" / "bin" / "rollout-bot"
if not ROLLOUT_BOT.exists():  # running from another environment: use this interpreter
    ROLLOUT_BOT = Path(sys.executable).with_name("rollout-bot")

_tags = itertools.count(1)


def message_text(params: dict[str, Any]) -> str:
    """Everything a reader would see in a message: its text and every text in its blocks."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(params.get("blocks") or [])
    if not parts:
        parts.append(str(params.get("text") or ""))
    return "\n".join(parts)


class BotProcess:
    """`args` replaces `serve --http --port PORT` (e.g. `["serve"]` for Socket Mode); `ready`
    replaces the /healthz probe as the sign that the bot is up (e.g. a WebSocket connected)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        *,
        args: Sequence[str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path
        http = ["serve", "--http", "--port", str(self.port)]
        self.args = list(args) if args is not None else http
        self.ready = ready or self._healthy
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(ROLLOUT_BOT), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited with {self.proc.returncode}:\n{self.logs()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"bot did not start within {timeout}s:\n{self.logs()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def bot_env(
    *,
    slack: SlackStandin,
    redis_url: str,
    kubeconfig: Path,
    policy: Path | None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLOUT_BOT_"))}
    env.update(
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.base_url,
        REDIS_URL=redis_url,
        KUBECONFIG=str(kubeconfig),
        ROLLOUT_BOT_CLUSTER_NAME="test",
        ROLLOUT_BOT_STATE_KEY=STATE_KEY,
        # Socket Mode serves /healthz, /readyz and /metrics here; tests run bots side by side.
        ROLLOUT_BOT_HEALTH_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    if policy is not None:
        env["ROLLOUT_BOT_POLICY"] = str(policy)
    env.update(extra or {})
    return env


class SlackDriver:
    """Types commands and clicks buttons as a Slack user would, and reads what the bot says."""

    def __init__(self, slack: SlackStandin, bot: BotProcess, channel: str = "C0DEPLOYS") -> None:
        self.slack = slack
        self.bot = bot
        self.channel = channel

    def command(
        self, text: str, *, user: str = "U0ALICE", name: str = "alice", channel: str | None = None
    ) -> tuple[Response, str]:
        tag = f"cmd{next(_tags)}"
        response = send_slash_command(
            self.bot.events_url,
            SIGNING_SECRET,
            text,
            user_id=user,
            user_name=name,
            channel_id=channel or self.channel,
            response_url=self.slack.response_url(tag),
        )
        assert response.status == 200, (response.status, response.body)
        return response, tag

    def ask(self, text: str, **kwargs: Any) -> str:
        """A read: the ephemeral answer's visible text."""
        response, tag = self.command(text, **kwargs)
        if response.body.strip():
            return response.body  # answered in the ack itself (help, parse errors)
        return message_text(self.reply(tag).params)

    def reply(self, tag: str, timeout: float = 30) -> RecordedCall:
        return self.slack.wait_for(
            "response_url", lambda c: c.params.get("_tag") == tag, timeout=timeout
        )

    def run(self, text: str, timeout: float = 60, **kwargs: Any) -> str:
        """A mutation: the channel announcement's text, or the ephemeral refusal's."""
        before = len(self.slack.calls("chat.postMessage"))
        response, tag = self.command(text, **kwargs)
        if response.body.strip():
            return response.body
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Thread replies are progress messages (perhaps of an earlier command), not this
            # command's announcement.
            posts = [
                c
                for c in self.slack.calls("chat.postMessage")[before:]
                if c.ok and not c.params.get("thread_ts")
            ]
            if posts:
                return message_text(posts[0].params)
            replies = [c for c in self.slack.calls("response_url") if c.params.get("_tag") == tag]
            if replies:
                return message_text(replies[0].params)
            time.sleep(0.05)
        raise AssertionError(f"no answer to {text!r} within {timeout}s:\n{self.bot.logs()[-3000:]}")

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str,
        name: str = "",
        message_ts: str = "",
        state: dict[str, Any] | None = None,
    ) -> tuple[Response, str]:
        tag = f"act{next(_tags)}"
        # As Slack does: the clicked message as it is now, blocks included.
        message: dict[str, Any] = {"ts": message_ts, "type": "message"}
        posted = [m for m in self.slack.messages(self.channel) if m.ts == message_ts]
        if message_ts and posted:
            message = posted[0].as_api_dict()
        response = send_block_action(
            self.bot.events_url,
            SIGNING_SECRET,
            action_id,
            value,
            user,
            self.channel,
            message_ts,
            response_url=self.slack.response_url(tag),
            message=message,
            state=state,
            user_name=name or user.lower(),
        )
        return response, tag

    def wait(self, predicate: Callable[[], Any], timeout: float = 30, what: str = "it") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.bot.logs()[-3000:]}")
            time.sleep(0.1)
