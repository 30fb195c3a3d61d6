"""Everything the playground runs, started in order and stopped in reverse.

    Slack stand-in -> redis-server -> Kubernetes (the local control plane, or the user's
    cluster) -> demo Deployments -> the bot (`rollout-bot serve --http`) -> the web page

Only what the playground started is stopped: a cluster named by PLAYGROUND_KUBECONFIG or a
control plane reused from CLUSTER_DIR keeps running; the demo Deployments stay there too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.devkit.lifetime import ending_with_this_process
from tests.devkit.loopback import free_port
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.web_api import SlackStandin
from tests.playground import demo
from tests.playground.server import BotEndpoint, Playground, PlaygroundHTTPServer

BOT_START_TIMEOUT = 60.0
DEMO_READY_TIMEOUT = 120.0

Say = Callable[[str], None]


class SetupError(Exception):
    """Something the user has to do; the message says exactly what."""


@dataclass(frozen=True)
class Options:
    port: int = 8080
    host: str = "127.0.0.1"
    kubeconfig: Path | None = None  # the user's cluster (kind, minikube, ...)
    #: The person confirmed that the kubeconfig's cluster may be one on another machine.
    allow_remote_cluster: bool = False
    cluster_dir: Path | None = None  # a control plane from `make cluster-up` to reuse
    install_missing: bool = False  # apt-get install redis-server when it is missing
    ready_delay: float = 1.5  # seconds the fake kubelet takes to make a pod Ready
    log_dir: Path | None = None  # keep the bot's log here (default: removed on exit)


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def ensure_redis(install_missing: bool, say: Say) -> None:
    if shutil.which(os.environ.get("REDIS_SERVER") or "redis-server"):
        return
    command = "sudo apt-get install -y redis-server"
    can_install = install_missing and shutil.which("apt-get") and os.geteuid() == 0
    if not can_install:
        raise SetupError(f"redis-server is missing. Install it with: {command}")
    say("redis-server is missing: installing it with apt-get (once)")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, env=_apt_env())
        if done.returncode != 0:
            raise SetupError(f"apt-get could not install redis-server. Run: {command}")


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _require(command: str, why: str, install: str) -> None:
    if shutil.which(command) is None:
        raise SetupError(f"`{command}` is missing ({why}). Install it with: {install}")


class Stack:
    def __init__(self, options: Options, say: Say) -> None:
        self.options = options
        self.say = say
        self.workdir = Path(tempfile.mkdtemp(prefix="rollout-bot-playground-"))
        self.standin: SlackStandin | None = None
        self.redis: RedisServer | None = None
        self.control_plane: ControlPlane | None = None
        self.kubeconfig: Path | None = None
        self.bot: subprocess.Popen[bytes] | None = None
        self.bot_port = 0
        self._signing_secret = ""
        # Seals the bot's approvals and tracked rollouts in Redis; fresh each run, never shown.
        self._state_key = secrets.token_hex(32)
        self.web: PlaygroundHTTPServer | None = None
        self.timings: dict[str, float] = {}

    @property
    def bot_log(self) -> Path:
        return (self.options.log_dir or self.workdir) / "bot.log"

    @property
    def url(self) -> str:
        """The address to open: the page with this run's token (see server)."""
        return self.web.page_url if self.web else ""

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        ensure_redis(self.options.install_missing, self.say)
        # Bind the page's port first: a port in use is found in a second, not after the cluster.
        self.standin = SlackStandin().start()
        for user in demo.USERS:
            self.standin.add_user(user.id, user.name)
        for channel in demo.CHANNELS:
            self.standin.add_channel(channel.id, channel.name)
        self._bind_web()
        self.redis = RedisServer(ends_with_caller=True)
        self.redis.start()
        self._phase("redis", started)

        before = time.monotonic()
        self.kubeconfig = self._cluster()
        self._phase("kubernetes", before)

        before = time.monotonic()
        self._demo_deployments(self.kubeconfig)
        self._phase("demo deployments", before)

        before = time.monotonic()
        self._start_bot(self.kubeconfig)
        self._phase("bot", before)

        assert self.web is not None
        self.web.start()
        self.timings["total"] = time.monotonic() - started

    def _phase(self, name: str, since: float) -> None:
        self.timings[name] = time.monotonic() - since

    def _bind_web(self) -> None:
        assert self.standin is not None
        secret = secrets.token_hex(24)
        self.bot_port = free_port()
        endpoint = BotEndpoint(f"http://127.0.0.1:{self.bot_port}/slack/events", secret)
        self._signing_secret = secret
        try:
            self.web = PlaygroundHTTPServer(
                (self.options.host, self.options.port), Playground(self.standin, endpoint)
            )
        except OSError as exc:
            raise SetupError(
                f"port {self.options.port} is not free ({exc.strerror}). Pick another: "
                f"make playground PLAYGROUND_PORT={self.options.port + 1}"
            ) from None

    def _cluster(self) -> Path:
        if self.options.kubeconfig is not None:
            path = self.options.kubeconfig.expanduser()
            if not path.is_file():
                raise SetupError(f"PLAYGROUND_KUBECONFIG names no file: {path}")
            self._check_local(path)
            self.say(f"using the cluster of {path} (it keeps running afterwards)")
            return path
        cluster_dir = self.options.cluster_dir
        if cluster_dir is not None and (cluster_dir / "cluster.json").exists():
            info = ClusterInfo.load(cluster_dir)
            if info.is_ready():
                self.say(f"reusing the control plane in {cluster_dir} (it keeps running)")
                return info.kubeconfig
        _require("openssl", "it makes the control plane's certificates", "apt-get install openssl")
        self.say(
            "starting a local Kubernetes control plane (etcd, kube-apiserver, "
            "kube-controller-manager, a fake kubelet)"
        )
        plane = ControlPlane(
            self.workdir / "cluster", ready_delay=self.options.ready_delay, ends_with_caller=True
        )
        self.control_plane = plane
        try:
            info = plane.up()
        except subprocess.CalledProcessError:
            if shutil.which("go") is None:
                raise SetupError(
                    "Go is needed once, to build the local control plane. Install it from "
                    "https://go.dev/dl/ (or `apt-get install golang`), or use a cluster you "
                    "already have: make playground PLAYGROUND_KUBECONFIG=~/.kube/config"
                ) from None
            raise SetupError(
                "building the control plane failed (see the [control-plane] lines above)"
            ) from None
        return info.kubeconfig

    def _check_local(self, kubeconfig: Path) -> None:
        """The playground is for a cluster on this machine (kind, minikube, a local control
        plane): it creates Deployments, and its demo users may change them. A cluster whose API
        server is elsewhere is refused unless the person said so (--allow-remote-cluster)."""
        context, server = current_server(kubeconfig)
        host = urlsplit(server).hostname or ""
        if is_this_machine(host):
            return
        where = f"context `{context}` talks to {server or 'an unknown server'}"
        if self.options.allow_remote_cluster:
            self.say(f"{where}, not this machine: going ahead (--allow-remote-cluster)")
            return
        raise SetupError(
            f"{kubeconfig}: {where}, which is not on this machine. The playground creates demo "
            "Deployments in the namespaces staging and prod there, and its demo users may "
            "change them. Point it at a local cluster (kind, minikube), or, if this cluster is "
            "one to play with, confirm it: rollout-bot playground --allow-remote-cluster"
        )

    def _demo_deployments(self, kubeconfig: Path) -> None:
        api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        core, apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
        try:
            for namespace in sorted({ns for ns, *_ in demo.DEPLOYMENTS}):
                _ensure_namespace(core, namespace)
            created = []
            for namespace, name, image, replicas in demo.DEPLOYMENTS:
                manifest = demo.deployment_manifest(namespace, name, image, replicas)
                if _reset_deployment(apps, manifest, self.say):
                    created.append((namespace, name, replicas))
            self.say(
                "demo Deployments: "
                + ", ".join(f"{ns}/{name} ({image})" for ns, name, image, _ in demo.DEPLOYMENTS)
            )
            _wait_available(apps, created, self.say)
        finally:
            api_client.close()

    def _start_bot(self, kubeconfig: Path) -> None:
        assert self.standin is not None and self.redis is not None
        policy = self.workdir / "policy.yaml"
        policy.write_text(demo.POLICY_YAML)
        self.bot_log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLOUT_BOT_"))}
        env.update(
            SLACK_BOT_TOKEN=self.standin.token,
            SLACK_SIGNING_SECRET=self._signing_secret,
            SLACK_API_URL=self.standin.base_url,
            REDIS_URL=self.redis.url,
            KUBECONFIG=str(kubeconfig),
            ROLLOUT_BOT_POLICY=str(policy),
            ROLLOUT_BOT_CLUSTER_NAME="playground",
            ROLLOUT_BOT_STATE_KEY=self._state_key,
            ROLLOUT_BOT_PROGRESS_INTERVAL="1",
            PYTHONUNBUFFERED="1",
        )
        executable = Path(sys.executable).with_name("rollout-bot")
        argv = [str(executable)] if executable.exists() else [sys.executable, "-m", "bot"]
        argv += ["serve", "--http", "--port", str(self.bot_port)]
        with open(self.bot_log, "ab") as log:
            self.bot = subprocess.Popen(
                # Even a SIGKILLed playground leaves no bot behind.
                ending_with_this_process(argv),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: the terminal's Ctrl-C reaches the playground, which then
                # stops the bot with SIGTERM (a clean exit, no KeyboardInterrupt in its log).
                start_new_session=True,
            )
        deadline = time.monotonic() + BOT_START_TIMEOUT
        health = f"http://127.0.0.1:{self.bot_port}/healthz"
        while not _healthy(health):
            if self.bot.poll() is not None:
                raise SetupError(f"the bot exited at start-up:\n{self._bot_log_tail()}")
            if time.monotonic() > deadline:
                raise SetupError(f"the bot did not start within {BOT_START_TIMEOUT:.0f}s")
            time.sleep(0.1)

    def _bot_log_tail(self, lines: int = 8) -> str:
        """The end of the bot's log without traceback frames: what failed, not where."""
        if not self.bot_log.exists():
            return ""
        kept = [
            line
            for line in self.bot_log.read_text(errors="replace").splitlines()
            if line.strip()
            and not line.startswith((" ", "\t", "Traceback", "During handling"))
            and not set(line.strip()) <= set("^~")
        ]
        return "\n".join(kept[-lines:])

    # -- stop ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops what was started, newest first; safe to call more than once."""
        if self.web is not None:
            with contextlib.suppress(Exception):
                self.web.stop()
            self.web = None
        if self.bot is not None:
            _stop_process(self.bot)
            self.bot = None
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.close()
            self.redis = None
        if self.control_plane is not None:
            if self.control_plane.pids:
                self.say("stopping the local control plane")
            with contextlib.suppress(Exception):
                self.control_plane.down()
            self.control_plane = None
        if self.standin is not None:
            self.standin.stop()
            self.standin = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def child_pids(self) -> list[int]:
        pids = [p.pid for p in (self.bot,) if p is not None]
        if self.redis is not None and self.redis.pid is not None:
            pids.append(self.redis.pid)
        if self.control_plane is not None:
            pids.extend(self.control_plane.pids.values())
        return pids


def current_server(kubeconfig: Path) -> tuple[str, str]:
    """(current context, its cluster's server URL) of a kubeconfig; "" where there is none."""
    import yaml

    try:
        config = yaml.safe_load(kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SetupError(f"cannot read the kubeconfig {kubeconfig}: {type(exc).__name__}") from None
    if not isinstance(config, dict):
        return "", ""
    context = str(config.get("current-context") or "")

    def named(section: str, name: str) -> dict[str, Any]:
        for item in config.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                value = item.get(section[:-1])
                return value if isinstance(value, dict) else {}
        return {}

    cluster = str(named("contexts", context).get("cluster") or "")
    return context, str(named("clusters", cluster).get("server") or "")


def is_this_machine(host: str) -> bool:
    """A loopback name or address, or one of this machine's own addresses (it can be bound)."""
    if host in ("localhost", "") or host.endswith(".localhost"):
        return host != ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for family, _, _, _, address in infos:
        ip = ipaddress.ip_address(address[0])
        if ip.is_loopback:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address[0], 0))
        except OSError:
            return False  # not an address of this machine
    return bool(infos)


_KUBECTL_HINT = (
    "see https://kubernetes.io/docs/tasks/tools/ (or `apt-get install kubectl` where packaged)"
)


def _stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ensure_namespace(core: Any, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            namespace = core.read_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": name, "labels": {"created-by": demo.MANAGED_BY}}}
            core.create_namespace(body)
            return
        if namespace.status.phase != "Terminating":
            return
        if time.monotonic() > deadline:
            raise SetupError(f"namespace {name} is still being deleted; try again in a minute")
        time.sleep(0.5)


def _reset_deployment(apps: Any, manifest: dict[str, Any], say: Say) -> bool:
    """Creates the demo Deployment afresh (a new history each run). One the playground did not
    create is left alone. Returns whether it was created."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        existing = apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None:
        labels = existing.metadata.labels or {}
        if labels.get("app.kubernetes.io/managed-by") != demo.MANAGED_BY:
            say(f"{namespace}/{name} exists and is not the playground's: leaving it as it is")
            return False
        apps.delete_namespaced_deployment(
            name, namespace, body={"propagationPolicy": "Foreground", "gracePeriodSeconds": 0}
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                apps.read_namespaced_deployment(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise SetupError(f"the previous {namespace}/{name} is still being deleted")
            time.sleep(0.3)
    apps.create_namespaced_deployment(namespace, manifest)
    return True


def _wait_available(apps: Any, targets: list[tuple[str, str, int]], say: Say) -> None:
    deadline = time.monotonic() + DEMO_READY_TIMEOUT
    waiting = list(targets)
    while waiting and time.monotonic() < deadline:
        still = []
        for namespace, name, replicas in waiting:
            status = apps.read_namespaced_deployment_status(name, namespace).status
            if (status.available_replicas or 0) < replicas:
                still.append((namespace, name, replicas))
        waiting = still
        if waiting:
            time.sleep(0.3)
    if waiting:
        names = ", ".join(f"{ns}/{name}" for ns, name, _ in waiting)
        say(f"{names} not available yet (images still pulling?); continuing")
