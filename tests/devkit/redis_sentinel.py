"""A real Redis primary, its replicas and three real Sentinels on loopback, owned by the tests.

Every node is a `RedisServer` (its own port and directory); each Sentinel is `redis-server
sentinel.conf --sentinel` with its own writable config file, as Sentinel rewrites it. Down
detection and failover are short (1 s, 3 s) so that a failover test can kill the primary
many times in a few minutes.

    with SentinelGroup() as group:
        env = {"REDIS_SENTINELS": group.sentinels_env, "REDIS_SENTINEL_MASTER": group.name}
        killed = group.kill_primary()          # SIGKILL, as a crash
        promoted = group.wait_for_failover(killed)
        group.rejoin(killed)                   # back, as a replica of the new primary
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.devkit.loopback import free_port
from tests.devkit.redis_server import RedisServer, _find_executable

__all__ = ["SentinelGroup"]

# Sentinel's own settings for the monitored primary: quick enough for tests, not so quick that
# a loaded CI machine's scheduling hiccup looks like a dead primary.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
# A failover takes down-after plus an election (Sentinels wait up to a second at random before
# asking for votes) plus the promotion; 20 s covers a slow machine.
FAILOVER_WAIT = 20.0
SETTLE_WAIT = 30.0
# Full resynchronisation starts at once (Redis otherwise waits 5 s for more replicas).
REPLICATION_ARGS = ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]


class SentinelGroup:
    """One primary, `replicas` replicas and `sentinels` Sentinels watching them as `name`."""

    def __init__(self, *, replicas: int = 1, sentinels: int = 3, name: str = "rollout") -> None:
        self.name = name
        self.nodes = [RedisServer(extra_args=list(REPLICATION_ARGS))]
        for _ in range(replicas):
            self.nodes.append(
                RedisServer(
                    extra_args=[
                        *REPLICATION_ARGS,
                        "--replicaof",
                        "127.0.0.1",
                        str(self.nodes[0].port),
                    ]
                )
            )
        self._executable = _find_executable(None)
        self.dir = Path(tempfile.mkdtemp(prefix="rollout-bot-sentinel-"))
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._sentinels: list[subprocess.Popen[bytes] | None] = [None] * sentinels
        self._quorum = sentinels // 2 + 1

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SentinelGroup:
        for node in self.nodes:
            node.start()
        primary = self.nodes[0]
        for index, port in enumerate(self.sentinel_ports):
            config = self.dir / f"sentinel-{port}.conf"
            config.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        f"dir {self.dir}",
                        f"sentinel monitor {self.name} 127.0.0.1 {primary.port} {self._quorum}",
                        f"sentinel down-after-milliseconds {self.name} {DOWN_AFTER_MS}",
                        f"sentinel failover-timeout {self.name} {FAILOVER_TIMEOUT_MS}",
                        f"sentinel parallel-syncs {self.name} 1",
                        "",
                    ]
                )
            )
            log = (self.dir / f"sentinel-{port}.log").open("ab")
            try:
                self._sentinels[index] = subprocess.Popen(
                    [self._executable, str(config), "--sentinel"],
                    cwd=self.dir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            finally:
                log.close()
        self.wait_settled()
        return self

    def close(self) -> None:
        for process in self._sentinels:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(5)
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what the bot is given -----------------------------------------------------------

    @property
    def sentinels_env(self) -> str:
        """REDIS_SENTINELS for this group."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    # -- the nodes, as the Sentinels see them ----------------------------------------------

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.sentinel_ports[index],
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def primary_port(self) -> int | None:
        """The port every Sentinel names as the primary, or None while they disagree."""
        named = set()
        for index in range(len(self.sentinel_ports)):
            try:
                with self.sentinel_client(index) as client:
                    address = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name
                    )
            except redis.RedisError:
                return None
            named.add(int(address[1]) if address else None)
        return named.pop() if len(named) == 1 else None

    def primary(self) -> RedisServer:
        port = self.primary_port()
        for node in self.nodes:
            if node.port == port:
                return node
        raise RuntimeError(f"the Sentinels agree on no primary of {self.name}")

    def replicas(self) -> list[RedisServer]:
        primary = self.primary()
        return [node for node in self.nodes if node is not primary]

    # -- faults --------------------------------------------------------------------------

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary: whatever it had not yet sent to a replica is lost."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_for_failover(self, old: RedisServer, timeout: float = FAILOVER_WAIT) -> RedisServer:
        """Waits until every Sentinel names another node as the primary, and it takes writes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port is not None and port != old.port:
                promoted = next(node for node in self.nodes if node.port == port)
                with contextlib.suppress(redis.RedisError), promoted.client() as client:
                    if client.info("replication").get("role") == "master":
                        return promoted
            time.sleep(0.1)
        raise RuntimeError(f"no failover within {timeout} s:\n{self.sentinel_log_tail()}")

    def rejoin(self, node: RedisServer) -> None:
        """Starts a killed node again as a replica of the current primary and waits until the
        primary streams to it and every Sentinel counts it as a healthy replica."""
        primary = self.primary()
        node.extra_args = [*REPLICATION_ARGS, "--replicaof", "127.0.0.1", str(primary.port)]
        node.start()
        self.wait_settled()

    def wait_settled(self, timeout: float = SETTLE_WAIT) -> None:
        """Waits until the Sentinels agree on the primary, know each other, and see every
        running node as an up replica in sync with it (a failover is then possible)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self._unsettled()
            if last is None:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"the Sentinel group did not settle within {timeout} s ({last}):\n"
            f"{self.sentinel_log_tail()}"
        )

    def _unsettled(self) -> str | None:
        port = self.primary_port()
        if port is None:
            return "the Sentinels disagree on the primary"
        running = {node.port for node in self.nodes if node.running and node.port != port}
        primary = next(node for node in self.nodes if node.port == port)
        try:
            with primary.client() as client:
                info = client.info("replication")
        except redis.RedisError:
            return "the primary does not answer"
        online = {
            int(value["port"])
            for name, value in info.items()
            if name.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        }
        if not running <= online:
            return f"replicas not yet online: {sorted(running - online)}"
        for index in range(len(self.sentinel_ports)):
            try:
                with self.sentinel_client(index) as client:
                    master = client.execute_command("SENTINEL", "MASTER", self.name)
                    seen = client.execute_command("SENTINEL", "REPLICAS", self.name)
            except redis.RedisError:
                return f"Sentinel {index} does not answer"
            fields = _pairs(master)
            if int(fields.get("num-other-sentinels", 0)) < len(self.sentinel_ports) - 1:
                return f"Sentinel {index} does not know the others yet"
            if "s_down" in fields.get("flags", "") or "failover" in fields.get("flags", ""):
                return f"Sentinel {index} still fails the primary over"
            healthy = {
                int(replica["port"])
                for replica in map(_pairs, seen)
                if "s_down" not in replica.get("flags", "")
                and "disconnected" not in replica.get("flags", "")
                and replica.get("master-link-status") == "ok"
                and replica.get("role-reported") == "slave"
                and int(replica.get("master-port", 0)) == port
            }
            if not running <= healthy:
                return f"Sentinel {index} does not yet count {sorted(running - healthy)}"
        return None

    def sentinel_log_tail(self, lines: int = 15) -> str:
        parts = []
        for port in self.sentinel_ports:
            path = self.dir / f"sentinel-{port}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"-- sentinel {port}\n" + "\n".join(tail))
        return "\n".join(parts)


def _pairs(flat: Any) -> dict[str, str]:
    """A Sentinel reply's flat [field, value, ...] list as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}
