"""Closed-loop load generator for signed Slack requests, run as its own process.

    echo '{"url": ..., "secret": ..., "concurrency": 10, "requests": [...]}' \
        | python -m tests.bench.loadgen   → JSON list of results on stdout, in request order

Each request is {"kind": "command", "text", "user", "user_name", "channel", "response_url"} or
{"kind": "action", "action_id", "value", "user", "user_name", "channel", "message_ts",
"response_url"}. `concurrency` client threads each send one request, wait for its HTTP
response, and take the next. The body is built and signed before the clock starts, so the
latency is the HTTP exchange alone: connect, send, server work until the ack, response read.

A separate process keeps the client's own threads from competing for the bench's GIL, where
the Slack stand-in records the time of every call. With `"raise_priority": true` it runs at
niceness -10 where allowed: it is the measuring instrument, and should not wait for a CPU
behind the API server it shares one with (see tests/bench/cpus.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from tests.devkit.slack.signed_requests import (
    block_action_payload,
    send_raw,
    signed_headers,
    slash_command_payload,
)

REPO = Path(__file__).resolve().parents[2]


def _body(spec: dict[str, Any]) -> bytes:
    if spec["kind"] == "command":
        fields = slash_command_payload(
            spec["text"],
            user_id=spec.get("user", "U0ALICE"),
            user_name=spec.get("user_name", "alice"),
            channel_id=spec.get("channel", "C0DEPLOYS"),
            response_url=spec.get("response_url"),
        )
    else:
        payload = block_action_payload(
            spec["action_id"],
            spec["value"],
            spec.get("user", "U0BOB"),
            spec.get("channel", "C0DEPLOYS"),
            spec.get("message_ts", ""),
            response_url=spec.get("response_url"),
            message={"type": "message", "ts": spec.get("message_ts", "")},
            user_name=spec.get("user_name", "bob"),
        )
        fields = {"payload": json.dumps(payload)}
    return urllib.parse.urlencode(fields).encode()


def run(url: str, secret: str, concurrency: int, requests: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = [None] * len(requests)
    lock = threading.Lock()
    cursor = iter(range(len(requests)))

    def client() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            body = _body(requests[index])
            headers = signed_headers(secret, body)
            sent = time.time()
            start = time.perf_counter()
            try:
                response = send_raw(url, body, headers, timeout=30)
                status, text = response.status, response.body
            except OSError as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            latency = time.perf_counter() - start
            results[index] = {"sent": sent, "latency": latency, "status": status, "body": text}

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def run_in_subprocess(
    url: str,
    secret: str,
    concurrency: int,
    requests: list[dict[str, Any]],
    timeout: float = 300,
    *,
    raise_priority: bool = False,
) -> list[dict[str, Any]]:
    spec = {
        "url": url,
        "secret": secret,
        "concurrency": concurrency,
        "requests": requests,
        "raise_priority": raise_priority,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def main() -> int:
    spec = json.load(sys.stdin)
    if spec.get("raise_priority"):
        with contextlib.suppress(PermissionError):  # not root: measured at the usual priority
            os.nice(-10)
    results = run(spec["url"], spec["secret"], int(spec["concurrency"]), spec["requests"])
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
