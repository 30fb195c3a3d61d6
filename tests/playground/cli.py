"""Starts the stack, prints the URL, and stops everything on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.playground.stack import Options, SetupError, Stack


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def say(message: str) -> None:
    print(f"[playground] {message}", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _describe(exc: Exception) -> str:
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None and reason is not None:  # kubernetes ApiException: no headers/body
        return f"{type(exc).__name__} {status} {reason}"
    return f"{type(exc).__name__}: {exc}"


def run(
    *,
    port: int,
    kubeconfig: Path | None = None,
    cluster_dir: Path | None = None,
    install_missing: bool = False,
    log_dir: Path | None = None,
    allow_remote_cluster: bool = False,
) -> int:
    options = Options(
        port=port,
        kubeconfig=kubeconfig,
        allow_remote_cluster=allow_remote_cluster,
        cluster_dir=cluster_dir,
        install_missing=install_missing,
        log_dir=log_dir,
    )
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(options, say)
    code = 0
    try:
        stack.start()
        timings = stack.timings
        say(
            f"ready in {timings['total']:.1f}s (Kubernetes {timings['kubernetes']:.1f}s, "
            f"bot {timings['bot']:.1f}s)"
        )
        say(f"kubectl works too: export KUBECONFIG={stack.kubeconfig}")
        if log_dir is not None:
            say(f"the bot's log: {stack.bot_log}")
        # The address carries this run's key: only whoever sees this terminal can use the page.
        say(f"open {stack.url}  (Ctrl-C stops everything)")
        threading.Event().wait()
    except _Stop:
        say("stopping")
    except SetupError as exc:
        say(str(exc))
        code = 2
    except KeyboardInterrupt:
        say("stopping")
    except Exception as exc:  # no traceback for the user: what failed, in one line
        say(f"could not start: {_describe(exc)}")
        code = 1
    finally:
        # A second Ctrl-C must not leave half of it running.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == 0:
        say("stopped; nothing left running")
    sys.stdout.flush()
    return code
