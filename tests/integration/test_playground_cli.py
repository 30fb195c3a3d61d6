"""`rollout-bot playground` says exactly what is missing, and a failed start leaves nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def playground(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("rollout-bot")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "bot"]
    return subprocess.run(
        [*command, "playground", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_in_use_is_named_with_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = playground("--port", str(port))
    assert done.returncode == 2
    assert f"port {port} is not free" in done.stdout
    assert f"PLAYGROUND_PORT={port + 1}" in done.stdout
    assert time.monotonic() - started < 20  # found before any cluster is started
    assert "Traceback" not in done.stdout + done.stderr


def test_a_missing_redis_server_names_the_command() -> None:
    done = playground("--port", "0", env={"REDIS_SERVER": "/nonexistent/redis-server"})
    assert done.returncode == 2
    assert "redis-server is missing. Install it with: sudo apt-get install -y redis-server" in (
        done.stdout
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_a_kubeconfig_that_is_not_there(tmp_path: Path) -> None:
    done = playground("--port", "0", "--kubeconfig", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert "PLAYGROUND_KUBECONFIG names no file" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_cluster_on_another_machine_is_refused_unless_confirmed(tmp_path: Path) -> None:
    """PLAYGROUND_KUBECONFIG=~/.kube/config must not point the demo at a real cluster by
    accident: a server that is not on this machine needs --allow-remote-cluster."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\n"
        "clusters: [{name: prod, cluster: {server: 'https://192.0.2.10:6443'}}]\n"
        "contexts: [{name: prod, context: {cluster: prod, user: admin}}]\n"
        "users: [{name: admin, user: {token: secret-token}}]\n"
    )
    done = playground("--port", "0", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 2, done
    assert "context `prod` talks to https://192.0.2.10:6443, which is not on this machine" in (
        done.stdout
    )
    assert "--allow-remote-cluster" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr and "secret-token" not in done.stdout


def test_what_is_on_this_machine() -> None:
    from tests.playground.stack import is_this_machine

    assert is_this_machine("127.0.0.1") and is_this_machine("localhost")
    assert is_this_machine("::1") and is_this_machine("kind.localhost")
    assert not is_this_machine("192.0.2.10") and not is_this_machine("")
    assert not is_this_machine("cluster.example.invalid")


def test_a_bot_that_fails_to_start_is_reported_by_what_failed(tmp_path: Path) -> None:
    from tests.playground.stack import Options, Stack

    stack = Stack(Options(log_dir=tmp_path), print)
    try:
        (tmp_path / "bot.log").write_text(
            "2026-11-27 07:00:00 INFO rollout-bot: starting\n"
            "Traceback (most recent call last):\n"
            '  File "/x/bot/__main__.py", line 1, in <module>\n'
            "    import prometheus_client\n"
            "    ^^^^^^^^^^^^^^^^^^^^^^^^\n"
            "ModuleNotFoundError: No module named 'prometheus_client'\n"
        )
        tail = stack._bot_log_tail()
    finally:
        stack.stop()
    assert tail.splitlines() == [
        "2026-11-27 07:00:00 INFO rollout-bot: starting",
        "ModuleNotFoundError: No module named 'prometheus_client'",
    ]
    assert not stack.workdir.exists()
