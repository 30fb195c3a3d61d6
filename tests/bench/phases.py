"""The three measurements. Each returns a JSON-able dict; any failure raises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bot.config import Settings
from tests.bench.countproxy import CountingProxy
from tests.bench.cpus import own_core
from tests.bench.harness import (
    APPROVAL_ID,
    REPO,
    THREADS,
    USERS,
    Bench,
    Server,
    log,
    text_of,
    wait_until,
)
from tests.bench.loadgen import run_in_subprocess
from tests.bench.observer import DeploymentObserver
from tests.bench.stats import cpu_seconds, peak_rss_mib, percentile, summary_ms
from tests.devkit.slack.records import RecordedCall
from tests.support.bot_process import SIGNING_SECRET, BotProcess


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


ACK_REQUESTS = _env_int("BENCH_ACK_REQUESTS", 400)  # per app and cell, over ACK_ROUNDS
ACK_ROUNDS = _env_int("BENCH_ACK_ROUNDS", 2)
ACK_LEVELS = [int(x) for x in os.environ.get("BENCH_ACK_LEVELS", "1,10,50").split(",")]
APPROVALS = _env_int("BENCH_APPROVALS", 30)
PROGRESS_N = _env_int("BENCH_PROGRESS_N", 200)
PROGRESS_CLIENTS = _env_int("BENCH_PROGRESS_CLIENTS", 4)
PROGRESS_TIMEOUT = _env_int("BENCH_PROGRESS_TIMEOUT", 240)

_tag_counter = iter(range(1, 10**9))


def _tag(prefix: str) -> str:
    return f"{prefix}-{next(_tag_counter)}"


def _ok_latencies(results: list[dict[str, Any]]) -> tuple[list[float], int]:
    ok = [r["latency"] for r in results if r["status"] == 200]
    return ok, len(results) - len(ok)


# -- 1. ack latency ----------------------------------------------------------------------------


class Apps:
    """The real bot and the bare apps of phases 1 and 2 (started once, shared): `bare` with
    Bolt's default runner, `bare_inline` with the runner the bot uses."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.bot: BotProcess | None = None
        self.bare: Server | None = None
        self.bare_inline: Server | None = None

    def get(self) -> tuple[BotProcess, Server]:
        if self.bot is None:
            log("starting the bot (direct to the apiserver) and the bare Bolt apps")
            self.bot = self.bench.start_bot()
            self.bare = self.bench.start_bare_app("polling")
            self.bare_inline = self.bench.start_bare_app("inline")
        assert self.bare is not None
        return self.bot, self.bare

    def targets(self) -> dict[str, tuple[str, int]]:
        """Events URL and serving pid of each app, under the names the report uses."""
        bot, bare = self.get()
        assert bot.proc is not None and bare.proc is not None
        assert self.bare_inline is not None and self.bare_inline.proc is not None
        return {
            "bot": (bot.events_url, bot.proc.pid),
            "bare": (bare.events_url, bare.proc.pid),
            "inline": (self.bare_inline.events_url, self.bare_inline.proc.pid),
        }

    def stop(self) -> None:
        for app in (self.bot, self.bare, self.bare_inline):
            if app is not None:
                app.stop()


def _commands(text: str, count: int, channel: str = "C0DEPLOYS") -> list[dict[str, Any]]:
    return [
        {
            "kind": "command",
            "text": text,
            "user": "U0ALICE",
            "user_name": "alice",
            "channel": channel,
            "response_url": "",
        }
        for _ in range(count)
    ]


def ack_latency(bench: Bench, apps: Apps) -> dict[str, Any]:
    namespace = bench.namespace("bench-reads")
    kubectl = bench.admin.in_namespace(namespace)
    bench.create_deployments(namespace, ["web"], "app:1", replicas=2)
    bench.wait_rolled_out(namespace, 1, 120)
    kubectl.run("set", "image", "deployment/web", "web=app:2")  # history shows two revisions
    bench.wait_rolled_out(namespace, 1, 120, generation=2)
    targets = apps.targets()
    commands = {
        "status": f"status web -n {namespace}",
        "history": f"history web -n {namespace}",
        # Answered in the ack itself, with no work after it: what the bot's ack path costs on
        # its own, to tell apart from any effect of post-ack work on the rows above.
        "help": "help",
    }

    def send(target: str, text: str, concurrency: int, count: int) -> dict[str, Any]:
        url, pid = targets[target]
        specs = _commands(text, count)
        tags = []
        for spec in specs:
            tag = _tag("ack")
            tags.append(tag)
            spec["response_url"] = bench.slack.response_url(tag)
        cpu_before = cpu_seconds(pid)
        results = run_in_subprocess(url, SIGNING_SECRET, concurrency, specs, raise_priority=True)
        latencies, bad = _ok_latencies(results)
        out: dict[str, Any] = {
            "latencies": latencies,
            "non_200": bad,
            # CPU of the process that acknowledges (not the bot's workers).
            "cpu_s": cpu_seconds(pid) - cpu_before,
            "span_s": max(r["sent"] + r["latency"] for r in results)
            - min(r["sent"] for r in results),
        }
        if target == "bot" and text != "help":
            # The bot answers each read via response_url after the ack; wait for every answer
            # so one round's leftover work does not slow the next round's acks.
            started = time.time()
            replies = wait_until(
                lambda: (r := bench.replies_by_tag()) and all(t in r for t in tags) and r,
                300,
                f"the bot's {count} answers",
                every=0.25,
            )
            out["reply"] = [
                replies[t].time - res["sent"] for t, res in zip(tags, results, strict=True)
            ]
            out["drain_s"] = time.time() - started
            texts = [text_of(replies[t]) for t in tags]
            out["error_replies"] = sum(1 for t in texts if "went wrong" in t or "not allowed" in t)
            out["sample_reply"] = texts[0][:160]
        return out

    def measure(text: str, concurrency: int) -> dict[str, dict[str, Any]]:
        """ACK_REQUESTS per app, in ACK_ROUNDS rounds that take turns (bot, bare, inline; then
        bare, inline, bot; ...), so a slow moment of the machine falls on all of them."""
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        names = list(targets)
        for turn in range(ACK_ROUNDS):
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                rounds[name].append(send(name, text, concurrency, ACK_REQUESTS // ACK_ROUNDS))
        return {name: _pooled(parts) for name, parts in rounds.items()}

    rows: list[dict[str, Any]] = []
    with own_core([pid for _, pid in targets.values()]) as isolation:
        log(f"phase 1: {isolation}")
        log("phase 1: warm-up")
        for text in commands.values():
            for name in targets:
                send(name, text, 1, 10)
        for level in ACK_LEVELS:
            for name, text in commands.items():
                log(f"phase 1: /rollout {name} x {ACK_REQUESTS} at {level} concurrent client(s)")
                measured = measure(text, level)
                bot_p = measured["bot"]["ack"]
                row: dict[str, Any] = {
                    "command": name,
                    "concurrency": level,
                    "requests": ACK_REQUESTS,
                    **measured,
                }
                for baseline, suffix in (("bare", ""), ("inline", "_inline")):
                    base_p = measured[baseline]["ack"]
                    row[f"ratio_p50{suffix}"] = _ratio(bot_p["p50_ms"], base_p["p50_ms"])
                    row[f"ratio_p99{suffix}"] = _ratio(bot_p["p99_ms"], base_p["p99_ms"])
                rows.append(row)
    return {
        "namespace": namespace,
        "threads": THREADS,
        "rounds": ACK_ROUNDS,
        "isolation": isolation,
        "rows": rows,
    }


def _pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    count = sum(len(p["latencies"]) + p["non_200"] for p in parts)
    out: dict[str, Any] = {
        "ack": summary_ms([x for p in parts for x in p["latencies"]]),
        "non_200": sum(p["non_200"] for p in parts),
        "serving_cpu_ms_per_request": round(sum(p["cpu_s"] for p in parts) * 1000 / count, 3),
        "throughput_rps": round(count / max(1e-9, sum(p["span_s"] for p in parts)), 1),
    }
    if "reply" in parts[0]:
        out["reply"] = summary_ms([x for p in parts for x in p["reply"]])
        out["drain_s"] = round(max(p["drain_s"] for p in parts), 2)
        out["error_replies"] = sum(p["error_replies"] for p in parts)
        out["sample_reply"] = parts[0]["sample_reply"]
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b and b == b and a == a else None


# -- 2. approval clicks ------------------------------------------------------------------------


def approval_clicks(bench: Bench, apps: Apps) -> dict[str, Any]:
    bot, _ = apps.get()
    namespace = bench.namespace("prod-bench")
    names = [f"app-{i:02d}" for i in range(APPROVALS)]
    bench.create_deployments(namespace, names, "app:1")
    bench.wait_rolled_out(namespace, len(names), 180)
    log(f"phase 2: preparing {len(names)} pending approval requests in {namespace}")

    cards: list[tuple[str, str]] = []  # (approval id, card ts)
    from tests.devkit.slack.signed_requests import send_slash_command

    for name in names:
        tag = _tag("req")
        response = send_slash_command(
            bot.events_url,
            SIGNING_SECRET,
            f"set image {name} {name}=app:2 -n {namespace}",
            user_id="U0ALICE",
            user_name="alice",
            channel_id="C0DEPLOYS",
            response_url=bench.slack.response_url(tag),
        )
        if response.status != 200:
            raise RuntimeError(f"request for {name} got HTTP {response.status}: {response.body}")
        reply: RecordedCall = wait_until(
            lambda t=tag: bench.replies_by_tag().get(t),  # type: ignore[misc]
            60,
            f"the reply to {name}",
        )
        found = re.search(r"\(`([A-Za-z0-9_-]+)`\)", text_of(reply))
        if not found:
            raise RuntimeError(f"no approval id in the reply: {text_of(reply)[:300]}")
        approval_id = found.group(1)

        def card(approval_id: str = approval_id) -> str | None:
            for call in bench.slack.calls("chat.postMessage"):
                match = APPROVAL_ID.search(text_of(call))
                if call.ok and match and match.group(1) == approval_id:
                    return str(call.response["ts"])
            return None

        cards.append((approval_id, wait_until(card, 30, f"the card of {approval_id}")))

    def clicks(target: str) -> list[dict[str, Any]]:
        return [
            {
                "kind": "action",
                "action_id": "rollout_approve",
                "value": approval_id,
                "user": "U0BOB",
                "user_name": USERS["U0BOB"],
                "channel": "C0DEPLOYS",
                "message_ts": ts,
                "response_url": bench.slack.response_url(_tag(f"click-{target}")),
            }
            for approval_id, ts in cards
        ]

    log(f"phase 2: {len(cards)} Approve clicks, one at a time, on the bot and on the bare apps")
    targets = apps.targets()
    with own_core([pid for _, pid in targets.values()]):
        results = {
            name: run_in_subprocess(url, SIGNING_SECRET, 1, clicks(name), raise_priority=True)
            for name, (url, _) in targets.items()
        }
    bot_results = results["bot"]
    done_ts = {ts: i for i, (_, ts) in enumerate(cards)}

    def card_states() -> dict[str, tuple[float, str]]:
        states: dict[str, tuple[float, str]] = {}
        for call in bench.slack.calls("chat.update"):
            ts = str(call.params.get("ts", ""))
            if ts not in done_ts or ts in states or not call.ok:
                continue
            text = text_of(call)
            for marker in ("*Done*", "*Failed*", "*Voided*"):
                if marker in text:
                    states[ts] = (call.time, marker.strip("*").lower())
        return states

    states = wait_until(
        lambda: (s := card_states()) and len(s) == len(cards) and s,
        180,
        "every card to show the approved change done",
        every=0.25,
    )
    to_done = []
    outcomes: Counter[str] = Counter()
    for (_, ts), result in zip(cards, bot_results, strict=True):
        at, outcome = states[ts]
        outcomes[outcome] += 1
        to_done.append(at - result["sent"])
    acks = {name: _ok_latencies(res) for name, res in results.items()}
    summaries = {name: summary_ms(ok) for name, (ok, _) in acks.items()}
    bot_s, bare_s, inline_s = summaries["bot"], summaries["bare"], summaries["inline"]
    return {
        "namespace": namespace,
        "clicks": len(cards),
        "bot_ack": bot_s,
        "bare_ack": bare_s,
        "inline_ack": inline_s,
        "ratio_p50": _ratio(bot_s["p50_ms"], bare_s["p50_ms"]),
        "ratio_p99": _ratio(bot_s["p99_ms"], bare_s["p99_ms"]),
        "ratio_p50_inline": _ratio(bot_s["p50_ms"], inline_s["p50_ms"]),
        "ratio_p99_inline": _ratio(bot_s["p99_ms"], inline_s["p99_ms"]),
        "click_to_done_update": summary_ms(to_done),
        "outcomes": dict(outcomes),
        "non_200": {name: bad for name, (_, bad) in acks.items()},
    }


# -- 3. progress at scale -----------------------------------------------------------------------

SUCCEEDED = re.compile(r"^set image ([a-z0-9-]+)/([a-z0-9-]+): succeeded$")
FAILED = re.compile(r"^set image ([a-z0-9-]+)/([a-z0-9-]+): failed")


def _progress_updates(
    calls: list[RecordedCall], channel: str, since: float
) -> tuple[int, dict[str, float], dict[str, str]]:
    """(chat.update count, name → first "succeeded" update time, name → failure text)."""
    count = 0
    succeeded: dict[str, float] = {}
    failed: dict[str, str] = {}
    for call in calls:
        if call.time < since or call.params.get("channel") != channel:
            continue
        count += 1
        text = str(call.params.get("text") or "")
        if (m := SUCCEEDED.match(text)) and call.ok:
            succeeded.setdefault(m.group(2), call.time)
        elif m := FAILED.match(text):
            failed.setdefault(m.group(2), text[:200])
    return count, succeeded, failed


def _progress_state(
    bench: Bench,
    observer: DeploymentObserver,
    namespace: str,
    names: list[str],
    channel: str,
    since: float,
) -> str:
    count, succeeded, failed = _progress_updates(bench.slack.calls("chat.update"), channel, since)
    done = sum(1 for name in names if observer.done(namespace, name) is not None)
    posts = sum(
        1
        for c in bench.slack.calls("chat.postMessage")
        if c.time >= since and c.params.get("channel") == channel
    )
    return (
        f"rolled out {done}/{len(names)}, chat.postMessage {posts}, chat.update {count}, "
        f"succeeded {len(succeeded)}, failed {len(failed)}, observer errors {observer.errors[:3]}"
    )


def _lags(
    observer: DeploymentObserver, namespace: str, names: list[str], updates: dict[str, float]
) -> list[float]:
    lags = []
    for name in names:
        changed = observer.done(namespace, name)
        if changed is not None and name in updates:
            lags.append(updates[name] - changed)
    return lags


def _requests_summary(proxy: CountingProxy, since: float, until: float) -> dict[str, Any]:
    seen = proxy.requests(since, until)
    kinds = Counter(r.kind() for r in seen)
    return {"total": len(seen), "by_kind": dict(kinds.most_common())}


def _figures(
    *,
    names: list[str],
    lags: list[float],
    requests: dict[str, Any],
    cpu: float,
    updates: int,
    window: float,
    failed: dict[str, str],
    peak_rss: float | None,
) -> dict[str, Any]:
    p50, p95 = percentile(lags, 50), percentile(lags, 95)
    return {
        "peak_rss_mib": peak_rss,
        "deployments": len(names),
        "succeeded_updates_seen": len(lags),
        "failed": len(failed),
        "lag_p50_s": round(p50, 3) if p50 is not None else None,
        "lag_p95_s": round(p95, 3) if p95 is not None else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "api_requests": requests["total"],
        "api_requests_per_s": round(requests["total"] / window, 1) if window > 0 else None,
        "api_requests_by_kind": requests["by_kind"],
        "cpu_s": round(cpu, 2),
        "chat_updates": updates,
        "cpu_per_s": round(cpu / window, 3) if window > 0 else None,
        "window_s": round(window, 2),
    }


def progress_at_scale(bench: Bench) -> dict[str, Any]:
    n = PROGRESS_N
    names = [f"d-{i:03d}" for i in range(n)]
    ns_bot, ns_poll = bench.namespace("bench-progress-bot"), bench.namespace("bench-progress-poll")
    channel_bot, channel_poll = "C0PROGRESS", "C0POLLER"
    certs = bench.cluster.directory / "certs"
    bench.redis.flush()  # nothing left from phase 2 for this bot to take over

    log("phase 3: the bot behind a counting proxy")
    bot_proxy = CountingProxy(bench.cluster.server, certs, bench.workdir, "bot-proxy").start()
    bench.stack.callback(bot_proxy.stop)
    bot_kubeconfig = bot_proxy.kubeconfig_for(
        bench.cluster.bot_kubeconfig, bench.workdir / "bot-proxied.kubeconfig"
    )
    bot = bench.start_bot(bot_kubeconfig)

    log(f"phase 3: creating {n} + {n} Deployments (1 replica each) and waiting for them")
    for namespace in (ns_bot, ns_poll):
        bench.create_deployments(namespace, names, "app:1")
    for namespace in (ns_bot, ns_poll):
        bench.wait_rolled_out(namespace, n, 300)
    observer = DeploymentObserver(bench.cluster.kubeconfig, [ns_bot, ns_poll], min_generation=2)
    bench.stack.callback(observer.stop)
    observer.start()

    # -- the bot ---------------------------------------------------------------------------
    log(f"phase 3: /rollout set image x {n} through the bot ({PROGRESS_CLIENTS} clients)")
    specs = [
        {
            "kind": "command",
            "text": f"set image {name} {name}=app:2 -n {ns_bot}",
            "user": "U0ALICE",
            "user_name": "alice",
            "channel": channel_bot,
            "response_url": bench.slack.response_url(_tag("set")),
        }
        for name in names
    ]
    cpu_before = cpu_seconds(bot.proc.pid)  # type: ignore[union-attr]
    started = time.time()
    results = run_in_subprocess(bot.events_url, SIGNING_SECRET, PROGRESS_CLIENTS, specs)
    acks, bad = _ok_latencies(results)
    if bad:
        raise RuntimeError(f"{bad} set image commands were not acknowledged with 200")

    def bot_finished() -> tuple[int, dict[str, float], dict[str, str]] | None:
        count, succeeded, failed = _progress_updates(
            bench.slack.calls("chat.update"), channel_bot, started
        )
        all_seen = len(succeeded) + len(failed) >= n
        all_done = all(observer.done(ns_bot, name) is not None for name in names)
        return (count, succeeded, failed) if all_seen and all_done else None

    count, succeeded, failed = wait_until(
        bot_finished,
        PROGRESS_TIMEOUT,
        "every bot progress message to end",
        progress=lambda: _progress_state(bench, observer, ns_bot, names, channel_bot, started),
    )
    cpu_after = cpu_seconds(bot.proc.pid)  # type: ignore[union-attr]
    bot_rss = peak_rss_mib(bot.proc.pid)  # type: ignore[union-attr]
    ended = max(succeeded.values(), default=time.time())
    bot_figures = _figures(
        peak_rss=bot_rss,
        names=names,
        lags=_lags(observer, ns_bot, names, succeeded),
        requests=_requests_summary(bot_proxy, started, ended),
        cpu=cpu_after - cpu_before,
        updates=count,
        window=ended - started,
        failed=failed,
    )
    bot_figures["command_ack"] = summary_ms(acks)
    bot_figures["progress_posts"] = sum(
        1
        for c in bench.slack.calls("chat.postMessage")
        if c.time >= started
        and c.params.get("channel") == channel_bot
        and c.params.get("thread_ts")
    )
    bot.stop()
    bot_proxy.stop()

    # -- the naive poller --------------------------------------------------------------------
    log(f"phase 3: the naive poller ({n} threads, 1 GET/s each) behind its own counting proxy")
    poll_proxy = CountingProxy(bench.cluster.server, certs, bench.workdir, "poll-proxy").start()
    bench.stack.callback(poll_proxy.stop)
    poll_kubeconfig = poll_proxy.kubeconfig_for(
        bench.cluster.bot_kubeconfig, bench.workdir / "poll-proxied.kubeconfig"
    )
    argv = [
        sys.executable,
        "-m",
        "tests.bench.poller",
        "--kubeconfig",
        str(poll_kubeconfig),
        "--namespace",
        ns_poll,
        "--names",
        ",".join(names),
        "--slack-url",
        bench.slack.base_url,
        "--token",
        bench.slack.token,
        "--channel",
        channel_poll,
    ]
    stderr = open(bench.workdir / "poller.stderr", "wb")  # noqa: SIM115 - closed below
    poller = subprocess.Popen(
        argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
    )

    def stop_poller() -> None:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
        stderr.close()

    bench.stack.callback(stop_poller)
    lines: list[str] = []

    def read_lines() -> None:
        assert poller.stdout is not None
        for line in poller.stdout:
            lines.append(line.strip())

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    wait_until(lambda: "READY" in lines or poller.poll() is not None, 180, "the poller's messages")
    if "READY" not in lines:
        raise RuntimeError(f"the poller failed: {lines} {Path(stderr.name).read_text()[-2000:]}")
    cpu_before = cpu_seconds(poller.pid)
    started = time.time()
    _set_images(bench, ns_poll)

    def poll_finished() -> tuple[int, dict[str, float], dict[str, str]] | None:
        count, succeeded, failed = _progress_updates(
            bench.slack.calls("chat.update"), channel_poll, started
        )
        all_seen = len(succeeded) + len(failed) >= n
        all_done = all(observer.done(ns_poll, name) is not None for name in names)
        return (count, succeeded, failed) if all_seen and all_done else None

    count, succeeded, failed = wait_until(
        poll_finished,
        PROGRESS_TIMEOUT,
        "every poller message to end",
        progress=lambda: _progress_state(bench, observer, ns_poll, names, channel_poll, started),
    )
    cpu_after = cpu_seconds(poller.pid)
    poll_rss = peak_rss_mib(poller.pid)
    ended = max(succeeded.values(), default=time.time())
    poll_figures = _figures(
        peak_rss=poll_rss,
        names=names,
        lags=_lags(observer, ns_poll, names, succeeded),
        requests=_requests_summary(poll_proxy, started, ended),
        cpu=cpu_after - cpu_before,
        updates=count,
        window=ended - started,
        failed=failed,
    )
    wait_until(lambda: any(x.startswith("DONE") for x in lines), 30, "the poller's threads")
    poller.stdin.close()  # type: ignore[union-attr]
    poller.wait(10)
    poll_proxy.stop()
    observer.stop()
    return {
        "deployments_per_side": n,
        # bot_env() leaves ROLLOUT_BOT_* out of the bot's environment: the default applies.
        "progress_interval_s": float(Settings.model_fields["progress_update_interval"].default),
        "bot": bot_figures,
        "poller": poll_figures,
        "observer_errors": observer.errors[:10],
    }


def _set_images(bench: Bench, namespace: str) -> None:
    """Start every baseline rollout at once: one `kubectl set image` over all Deployments."""
    kubectl = bench.admin.in_namespace(namespace)
    # Each Deployment's container is named like the Deployment; `*=` sets every container.
    kubectl.run("set", "image", "deployments", "--all", "*=app:2", timeout=300)
