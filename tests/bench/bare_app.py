"""The baselines for ack latency: a bare Bolt App that only acks, served like the bot.

    python -m tests.bench.bare_app --port PORT --threads 32 [--runner polling|inline]

Same Bolt version, same signature check, same waitress server with the same thread count (the
polling runner's listener pool is as large), a Web API client on the same Slack stand-in; no
handler does anything but `ack()`. GET /healthz answers 200 so the bench can wait for it.

`--runner polling` (the default) is Bolt's default: the listener runs on the pool and the
request's thread polls for its ack every 10 ms. `inline` is how the bot runs its listeners
(`process_before_response`): in the request's own thread. The first is the bare app as anyone
would write it; the second isolates what the bot's own listeners and hand-off cost.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient


def build(
    signing_secret: str, threads: int, token: str, api_url: str, runner: str = "polling"
) -> Callable[..., Iterable[bytes]]:
    app = App(
        # Like the bot: a client on the Slack stand-in. Bolt's single-team authorization asks
        # it auth.test once, on the first request (the warm-up), then caches the answer.
        client=WebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
        token_verification_enabled=False,
        process_before_response=runner == "inline",
        listener_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="listener"),
    )

    @app.command("/rollout")
    def on_command(ack: Ack) -> None:
        ack()

    @app.action(re.compile(".*"))
    def on_action(ack: Ack) -> None:
        ack()

    slack = SlackRequestHandler(app)

    def application(environ: dict[str, Any], start: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
            return [b'{"ok":true}']
        result: Iterable[bytes] = slack(environ, start)
        return result

    return application


def main(argv: list[str] | None = None) -> int:
    import waitress

    parser = argparse.ArgumentParser(prog="bare-app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--runner", choices=["polling", "inline"], default="polling")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    waitress.serve(
        build(
            os.environ["SLACK_SIGNING_SECRET"],
            args.threads,
            os.environ["SLACK_BOT_TOKEN"],
            os.environ["SLACK_API_URL"],
            args.runner,
        ),
        host="127.0.0.1",
        port=args.port,
        threads=args.threads,
        ident="rollout-bot",
        channel_timeout=30,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
