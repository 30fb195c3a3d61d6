"""`rollout-bot playground`: try the bot in a browser, without a Slack workspace.

A local page that looks and behaves like a Slack channel, in front of the real bot
(`rollout-bot serve --http`), a real Kubernetes control plane (or your own cluster), a private
redis-server and the Slack Web API stand-in the tests use. See `run` for what it starts.
It lives beside the development kit, outside the bot's package: `make playground` (or
`python -m tests.playground`) from a checkout; `rollout-bot playground` hands its arguments here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port of the page (default PLAYGROUND_PORT or {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="use this cluster (kind, minikube, ...) instead of a local control plane "
        "(default PLAYGROUND_KUBECONFIG)",
    )
    parser.add_argument(
        "--allow-remote-cluster",
        action="store_true",
        help="use a --kubeconfig whose API server is not on this machine (the playground "
        "creates demo Deployments there, and its demo users may change them)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="keep the bot's log in this directory (default PLAYGROUND_LOG_DIR, else removed "
        "on exit)",
    )
    parser.add_argument(
        "--install-missing",
        action="store_true",
        help="install redis-server with apt-get when it is missing (root only)",
    )


def run(args: argparse.Namespace) -> int:
    from tests.playground.cli import run as run_playground

    # 0 picks any free port (the URL printed says which).
    port = args.port
    if port is None:
        value = os.environ.get("PLAYGROUND_PORT") or str(DEFAULT_PORT)
        if not value.isdigit():
            print(f"[playground] PLAYGROUND_PORT must be a port number, got {value!r}")
            return 2
        port = int(value)
    kubeconfig = args.kubeconfig or (
        Path(os.environ["PLAYGROUND_KUBECONFIG"])
        if os.environ.get("PLAYGROUND_KUBECONFIG")
        else None
    )
    cluster_dir = Path(os.environ["CLUSTER_DIR"]) if os.environ.get("CLUSTER_DIR") else None
    log_dir = args.log_dir or (
        Path(os.environ["PLAYGROUND_LOG_DIR"]) if os.environ.get("PLAYGROUND_LOG_DIR") else None
    )
    return run_playground(
        port=port,
        kubeconfig=kubeconfig,
        cluster_dir=cluster_dir,
        install_missing=args.install_missing,
        log_dir=log_dir,
        allow_remote_cluster=args.allow_remote_cluster,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollout-bot playground", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
