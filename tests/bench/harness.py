"""What every bench phase shares: the control plane, Redis, the Slack stand-in, the bot.

Everything started here is registered on one ExitStack, so `Bench.close()` stops all of it
(in reverse order) whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.domain.status import rollout_status
from tests.conftest import TEST_POLICY, grant_bot, install_bot_rbac
from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.devkit.loopback import free_port
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.http_server import StandinHTTPServer
from tests.devkit.slack.records import RecordedCall
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env, message_text
from tests.support.kubectl import Kubectl

REPO = Path(__file__).resolve().parents[2]
# The bot's default listener/waitress thread count; the bare app gets the same.
THREADS = int(Settings.model_fields["listener_threads"].default)
USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    every: float = 0.2,
    progress: Callable[[], str] | None = None,
) -> Any:
    """`predicate()` once truthy; TimeoutError naming `what` (and `progress()`) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" ({progress()})" if progress else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(every)


class Server:
    """A helper HTTP process (the bare Bolt app) started like BotProcess, probed on /healthz."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.argv, self.env, self.port, self.log_path = argv, env, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self, timeout: float = 30) -> Server:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv} exited: {self.log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                opener.open(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.argv} did not start within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stack = contextlib.ExitStack()
        self.cluster: ClusterInfo
        self.admin: Kubectl
        self.redis: RedisServer
        self.slack: SlackStandin
        self.policy = workdir / "policy.yaml"
        self._bots = 0
        # Namespaces get this suffix, so a reused control plane (BENCH_CLUSTER_DIR) never clashes.
        self.run_id = uuid.uuid4().hex[:6]

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        reuse = os.environ.get("BENCH_CLUSTER_DIR")
        if (
            reuse
            and (Path(reuse) / "cluster.json").exists()
            and ClusterInfo.load(Path(reuse)).is_ready()
        ):
            log(f"reusing the control plane in {reuse}")
            self.cluster = ClusterInfo.load(Path(reuse))
        else:
            log("starting the control plane (etcd, apiserver, controller-manager, fake kubelet)")
            plane = ControlPlane(self.workdir / "cluster")
            self.stack.callback(plane.down)
            self.cluster = plane.up()
        self.admin = Kubectl(self.cluster.kubeconfig)
        self.redis = RedisServer()
        self.stack.callback(self.redis.close)
        self.redis.start()
        # socketserver's listen backlog of 5 makes the stand-in reset connections when the bot
        # and the bench's clients burst at once (real Slack does not); only this process's
        # stand-in class is changed.
        StandinHTTPServer.request_queue_size = 256
        self.slack = SlackStandin().start()
        self.stack.callback(self.slack.stop)
        for user, name in USERS.items():
            self.slack.add_user(user, name)
        self.slack.set_usergroup("S0DEVS", ["U0DAVE"])
        self.slack.set_usergroup("S0SRE", ["U0ERIN"])
        self.policy.write_text(TEST_POLICY)
        # The chart's RBAC, bound to the bot's test identity (as tests/conftest.py).
        install_bot_rbac(self.admin)

    def close(self) -> None:
        self.stack.close()

    # -- processes -------------------------------------------------------------------------------

    def start_bot(
        self, kubeconfig: Path | None = None, env: dict[str, str] | None = None
    ) -> BotProcess:
        self._bots += 1
        bot = BotProcess(
            bot_env(
                slack=self.slack,
                redis_url=self.redis.url,
                kubeconfig=kubeconfig or self.cluster.bot_kubeconfig,
                policy=self.policy,
                extra=env,
            ),
            self.workdir / f"bot-{self._bots}.log",
        )
        self.stack.callback(bot.stop)
        bot.start()
        return bot

    def start_bare_app(self, runner: str = "polling") -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        env.update(
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN=self.slack.token,
            SLACK_API_URL=self.slack.base_url,
            PYTHONUNBUFFERED="1",
        )
        port = free_port()
        argv = [sys.executable, "-m", "tests.bench.bare_app", "--port", str(port)]
        server = Server(
            [*argv, "--threads", str(THREADS), "--runner", runner],
            env,
            port,
            self.workdir / f"bare-app-{runner}.log",
        )
        self.stack.callback(server.stop)
        return server.start()

    # -- cluster helpers ---------------------------------------------------------------------------

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{self.run_id}"
        self.admin.run("create", "namespace", name)
        grant_bot(self.admin, name)
        return name

    def create_deployments(
        self, namespace: str, names: list[str], image: str, replicas: int = 1
    ) -> None:
        """All at once, one `kubectl create` of a List (container name = Deployment name)."""
        items = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": name, "image": image}]},
                    },
                },
            }
            for name in names
        ]
        manifest = {"apiVersion": "v1", "kind": "List", "items": items}
        self.admin.run("create", "-f", "-", input=json.dumps(manifest), timeout=300)

    def rolled_out(self, namespace: str, min_generation: int = 1) -> tuple[int, int]:
        """(done, total) by kubectl's verdict, for Deployments at min_generation or later."""
        items = self.admin.in_namespace(namespace).get("deployments")["items"]
        done = 0
        for item in items:
            generation = int(item["metadata"].get("generation") or 0)
            if generation >= min_generation and rollout_status(item).done:
                done += 1
        return done, len(items)

    def wait_rolled_out(
        self, namespace: str, count: int, timeout: float, generation: int = 1
    ) -> None:
        def check() -> bool:
            done, total = self.rolled_out(namespace, generation)
            return total >= count and done >= count

        wait_until(check, timeout, f"{count} Deployments rolled out in {namespace}", every=1.0)

    # -- Slack helpers -----------------------------------------------------------------------------

    def replies_by_tag(self) -> dict[str, RecordedCall]:
        found: dict[str, RecordedCall] = {}
        for call in self.slack.calls("response_url"):
            tag = str(call.params.get("_tag", ""))
            found.setdefault(tag, call)
        return found


def text_of(call: RecordedCall) -> str:
    return message_text(call.params)


APPROVAL_ID = re.compile(r"request `([A-Za-z0-9_-]+)`")
