"""The baseline for live progress: a naive per-rollout polling loop, run as its own process.

    python -m tests.bench.poller --kubeconfig K --namespace NS --names a,b,... \
        --slack-url URL --token T --channel C [--interval 1.0]

One thread per Deployment: it GETs the Deployment every `interval` seconds (fixed schedule),
computes kubectl's verdict with `bot.domain.status.rollout_status`, renders the same progress
message as the bot (`handlers.views.progress.progress_message`, with the elapsed time frozen
until the verdict so the message only changes when the status does) and calls chat.update
whenever the message changed. A thread follows the rollout to the Deployment's next
generation: it posts its message first, then waits for the generation to move past the one it
saw at start, and stops after posting "succeeded" or "failed".

Protocol with the parent: prints `READY` once every message is posted, `DONE` once every
thread has stopped, then exits when stdin closes (so the parent can read its CPU time first).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from slack_sdk import WebClient

from bot.domain.status import rollout_status
from bot.domain.tracking import TrackedRollout
from handlers.views.message import Message
from handlers.views.progress import progress_message


def _render(tracked: TrackedRollout, deployment: dict[str, Any]) -> tuple[Message, bool]:
    status = rollout_status(deployment)
    verdict = "succeeded" if status.done else "failed" if status.failed else None
    now = time.time() if verdict else tracked.started_at
    return progress_message(tracked, status, now, verdict=verdict), verdict is not None


def follow(
    apps: Any,
    slack: WebClient,
    namespace: str,
    name: str,
    channel: str,
    interval: float,
    ready: threading.Barrier,
    errors: list[str],
) -> None:
    try:
        deployment = apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        first = _json(deployment)
        start_generation = int(first["metadata"].get("generation") or 0)
        tracked = TrackedRollout(
            id=f"{first['metadata'].get('uid', '')}-poll",
            channel=channel,
            thread_ts="",
            message_ts="",
            namespace=namespace,
            deployment=name,
            uid=str(first["metadata"].get("uid", "")),
            generation=start_generation + 1,
            started_at=time.time(),
            deadline_seconds=int(first["spec"].get("progressDeadlineSeconds") or 600),
            title=f"set image {namespace}/{name}",
        )
        waiting = progress_message(tracked, rollout_status(first), tracked.started_at)
        posted = slack.chat_postMessage(channel=channel, text=waiting.text, blocks=waiting.blocks)
        ts = str(posted["ts"])
        last = (waiting.text, waiting.blocks)
    except Exception as exc:
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
        ready.abort()
        return
    ready.wait()
    next_poll = time.monotonic() + random.uniform(0, interval)  # spread the threads' phases
    while True:
        time.sleep(max(0.0, next_poll - time.monotonic()))
        next_poll += interval
        try:
            deployment = _json(
                apps.read_namespaced_deployment(name, namespace, _preload_content=False)
            )
        except Exception as exc:  # a naive loop just tries again next second
            errors.append(f"{name}: GET {type(exc).__name__}")
            continue
        if int(deployment["metadata"].get("generation") or 0) <= start_generation:
            continue  # the rollout this thread follows has not been started yet
        message, final = _render(tracked, deployment)
        if (message.text, message.blocks) != last:
            try:
                slack.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
                last = (message.text, message.blocks)
            except Exception as exc:
                errors.append(f"{name}: chat.update {type(exc).__name__}")
                continue
        if final:
            return


def _json(response: Any) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(response.data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poller")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--names", required=True, help="comma-separated Deployment names")
    parser.add_argument("--slack-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    names = args.names.split(",")

    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig, client_configuration=configuration
    )
    configuration.retries = False
    # One pooled keep-alive connection per thread: the baseline is not penalized by handshakes.
    configuration.connection_pool_maxsize = len(names)
    apps = k8s.AppsV1Api(k8s.ApiClient(configuration))
    slack = WebClient(token=args.token, base_url=args.slack_url)

    ready = threading.Barrier(len(names) + 1)
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=follow,
            args=(apps, slack, args.namespace, n, args.channel, args.interval, ready, errors),
            daemon=True,
        )
        for n in names
    ]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        print("FAILED " + "; ".join(errors[:5]), flush=True)
        return 1
    print("READY", flush=True)
    for thread in threads:
        thread.join()
    print(f"DONE errors={len(errors)}", flush=True)
    for line in errors[:20]:
        print(f"ERROR {line}", file=sys.stderr, flush=True)
    sys.stdin.read()  # the parent reads our CPU time, then closes stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
