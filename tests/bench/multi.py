"""Phase 4: progress in several clusters at once, one bot against per-rollout polling.

`BENCH_MULTI_CLUSTERS` control planes (default 3; the bench's own is the first), each with
`BENCH_MULTI_N` Deployments (default 200) for the bot and as many for the baseline, 1 replica.

- The bot: one process serving every cluster as a kubeconfig context (KUBECONFIG lists one
  file per cluster, ROLLOUT_BOT_CONTEXTS names them), each cluster behind its own counting
  proxy. `/rollout set image NAME NAME=app:2 -n NS --context cK` for every Deployment of
  every cluster, so N x clusters rollouts are in flight together. Its progress tracking keeps
  one watch per (context, namespace, kind) in use.
- The baseline, in the same run: the naive poller (`tests.bench.poller`, one thread and one
  GET per second per rollout), one process per cluster behind its own counting proxy, with
  the rollouts started by `kubectl set image --all` at once in every cluster.

Lag = the chat.update showing "succeeded" minus the moment the bench's own watch (admin,
straight to each apiserver) saw the rollout done. CPU seconds and peak RSS are the bot's
process, or the sum over the poller processes.
"""

from __future__ import annotations

import json
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
from bot.domain.status import rollout_status
from tests.bench.countproxy import CountingProxy
from tests.bench.harness import REPO, Bench, log, wait_until
from tests.bench.loadgen import run_in_subprocess
from tests.bench.observer import DeploymentObserver
from tests.bench.stats import (
    cpu_seconds,
    peak_rss_mib,
    percentile,
    summary_ms,
    tree_cpu_seconds,
    tree_peak_rss_mib,
    tree_pss_mib,
)
from tests.conftest import grant_bot, install_bot_rbac
from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.devkit.slack.records import RecordedCall
from tests.support.bot_process import SIGNING_SECRET
from tests.support.kubectl import Kubectl
from tests.support.multicluster import kubeconfig_path, named_kubeconfig

CLUSTERS = int(os.environ.get("BENCH_MULTI_CLUSTERS", "3"))
N = int(os.environ.get("BENCH_MULTI_N", "200"))
CLIENTS = int(os.environ.get("BENCH_MULTI_CLIENTS", "4"))
TIMEOUT = int(os.environ.get("BENCH_MULTI_TIMEOUT", "420"))

# "set image NS/NAME in CONTEXT: succeeded" (the bot, several clusters) or without " in …"
# (the poller: one channel per cluster).
_VERDICT = re.compile(
    r"^set image ([a-z0-9-]+)/([a-z0-9-]+)(?: in ([A-Za-z0-9-]+))?: (succeeded|failed)"
)


def _verdicts(
    calls: list[RecordedCall], channels: dict[str, str], since: float
) -> tuple[int, dict[tuple[str, str], float], dict[tuple[str, str], str]]:
    """(chat.update count, (context, name) → first "succeeded" time, … → failure text).
    `channels` maps a channel to its context, "" for the bot's (the title names it)."""
    count = 0
    succeeded: dict[tuple[str, str], float] = {}
    failed: dict[tuple[str, str], str] = {}
    for call in calls:
        channel = str(call.params.get("channel") or "")
        if call.time < since or channel not in channels:
            continue
        count += 1
        match = _VERDICT.match(str(call.params.get("text") or ""))
        if match is None:
            continue
        context = match.group(3) or channels[channel]
        key = (context, match.group(2))
        if match.group(4) == "succeeded" and call.ok:
            succeeded.setdefault(key, call.time)
        elif match.group(4) == "failed":
            failed.setdefault(key, str(call.params.get("text"))[:200])
    return count, succeeded, failed


class _Cluster:
    def __init__(self, name: str, info: ClusterInfo) -> None:
        self.name = name
        self.info = info
        self.admin = Kubectl(info.kubeconfig)


def _create(bench: Bench, admin: Kubectl, namespace: str, names: list[str]) -> None:
    admin.run("create", "namespace", namespace)
    grant_bot(admin, namespace)
    items = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": "app:1"}]},
                },
            },
        }
        for name in names
    ]
    manifest = {"apiVersion": "v1", "kind": "List", "items": items}
    admin.run("create", "-f", "-", input=json.dumps(manifest), timeout=300)


def _rolled_out(admin: Kubectl, namespace: str, count: int) -> bool:

    items = admin.in_namespace(namespace).get("deployments")["items"]
    done = sum(1 for item in items if rollout_status(item).done)
    return len(items) >= count and done >= count


def _requests(proxies: list[CountingProxy], since: float, until: float) -> dict[str, Any]:
    seen = [r for proxy in proxies for r in proxy.requests(since, until)]
    kinds = Counter(r.kind() for r in seen)
    return {"total": len(seen), "by_kind": dict(kinds.most_common())}


def _figures(
    lags: list[float],
    expected: int,
    requests: dict[str, Any],
    cpu: float,
    rss: float | None,
    updates: int,
    window: float,
    failed: int,
) -> dict[str, Any]:
    p50, p95 = percentile(lags, 50), percentile(lags, 95)
    return {
        "rollouts": expected,
        "succeeded_updates_seen": len(lags),
        "failed": failed,
        "lag_p50_s": round(p50, 3) if p50 is not None else None,
        "lag_p95_s": round(p95, 3) if p95 is not None else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "api_requests": requests["total"],
        "api_requests_by_kind": requests["by_kind"],
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(rss, 1) if rss is not None else None,
        "chat_updates": updates,
        "window_s": round(window, 2),
    }


def multi_cluster_progress(bench: Bench) -> dict[str, Any]:
    names = [f"d-{i:03d}" for i in range(N)]
    clusters = [_Cluster("c1", bench.cluster)]
    for index in range(2, CLUSTERS + 1):
        log(f"phase 4: starting control plane c{index}")
        plane = ControlPlane(bench.workdir / f"cluster-{index}")
        bench.stack.callback(plane.down)
        cluster = _Cluster(f"c{index}", plane.up())
        install_bot_rbac(cluster.admin)
        clusters.append(cluster)
    ns_bot, ns_poll = f"bench-multi-bot-{bench.run_id}", f"bench-multi-poll-{bench.run_id}"
    bench.redis.flush()

    log(f"phase 4: {N} + {N} Deployments in each of {len(clusters)} clusters")
    for cluster in clusters:
        _create(bench, cluster.admin, ns_bot, names)
        _create(bench, cluster.admin, ns_poll, names)
    for cluster in clusters:
        for namespace in (ns_bot, ns_poll):
            wait_until(
                lambda c=cluster, ns=namespace: _rolled_out(c.admin, ns, N),
                300,
                f"{N} Deployments rolled out in {cluster.name}/{namespace}",
                every=1.0,
            )
    observers = {
        c.name: DeploymentObserver(c.info.kubeconfig, [ns_bot, ns_poll], min_generation=2)
        for c in clusters
    }
    for observer in observers.values():
        bench.stack.callback(observer.stop)
        observer.start()

    def lags(namespace: str, updates: dict[tuple[str, str], float]) -> list[float]:
        found = []
        for (context, name), at in updates.items():
            done = observers[context].done(namespace, name)
            if done is not None:
                found.append(at - done)
        return found

    def all_done(namespace: str) -> bool:
        return all(
            observers[c.name].done(namespace, name) is not None for c in clusters for name in names
        )

    expected = N * len(clusters)

    # -- the bot -------------------------------------------------------------------------------
    proxies: list[CountingProxy] = []
    files: list[Path] = []
    for cluster in clusters:
        certs = cluster.info.directory / "certs"
        proxy = CountingProxy(cluster.info.server, certs, bench.workdir, f"multi-{cluster.name}")
        proxy.start()
        bench.stack.callback(proxy.stop)
        proxies.append(proxy)
        proxied = proxy.kubeconfig_for(
            cluster.info.bot_kubeconfig, bench.workdir / f"multi-{cluster.name}.proxied"
        )
        files.append(
            named_kubeconfig(proxied, cluster.name, bench.workdir / f"{cluster.name}.kubeconfig")
        )
    env = {
        "KUBECONFIG": kubeconfig_path(files),
        "ROLLOUT_BOT_CONTEXTS": ",".join(c.name for c in clusters),
    }
    if "BENCH_MULTI_WORKERS" in os.environ:  # e.g. 0: the work in threads of one process
        env["ROLLOUT_BOT_WORKERS"] = os.environ["BENCH_MULTI_WORKERS"]
    bot = bench.start_bot(env=env)
    channel = "C0MULTI"
    specs = [
        {
            "kind": "command",
            "text": f"set image {name} {name}=app:2 -n {ns_bot} --context {cluster.name}",
            "user": "U0ALICE",
            "user_name": "alice",
            "channel": channel,
            "response_url": bench.slack.response_url(f"multi-{cluster.name}-{name}"),
        }
        # Interleaved: every cluster's rollouts are in flight together.
        for name in names
        for cluster in clusters
    ]
    log(f"phase 4: {expected} /rollout set image through one bot ({CLIENTS} clients)")
    assert bot.proc is not None
    # The bot is its serving process and its worker processes (ROLLOUT_BOT_WORKERS): all of
    # them count.
    cpu_before = tree_cpu_seconds(bot.proc.pid)
    started = time.time()
    results = run_in_subprocess(bot.events_url, SIGNING_SECRET, CLIENTS, specs)
    acks = [r["latency"] for r in results if r["status"] == 200]
    if len(acks) != expected:
        raise RuntimeError(f"{expected - len(acks)} commands were not acknowledged with 200")

    def bot_finished() -> Any:
        count, succeeded, failed = _verdicts(
            bench.slack.calls("chat.update"), {channel: ""}, started
        )
        if len(succeeded) + len(failed) >= expected and all_done(ns_bot):
            return count, succeeded, failed
        return None

    count, succeeded, failed = wait_until(bot_finished, TIMEOUT, "every bot progress message")
    cpu_after = tree_cpu_seconds(bot.proc.pid)
    cpu = sum(cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after)
    rss = tree_peak_rss_mib(bot.proc.pid)
    serving_rss = peak_rss_mib(bot.proc.pid)
    tree_pss = tree_pss_mib(bot.proc.pid)
    ended = max(succeeded.values(), default=time.time())
    bot_figures = _figures(
        lags(ns_bot, succeeded),
        expected,
        _requests(proxies, started, ended),
        cpu,
        rss,
        count,
        ended - started,
        len(failed),
    )
    bot_figures["command_ack"] = summary_ms(acks)
    bot_figures["processes"] = len(cpu_after)
    bot_figures["serving_process_peak_rss_mib"] = serving_rss
    bot_figures["pss_at_end_mib"] = tree_pss
    bot_figures["watch_requests"] = sum(
        v for k, v in bot_figures["api_requests_by_kind"].items() if k.startswith("WATCH")
    )
    bot.stop()
    for proxy in proxies:
        proxy.stop()

    # -- the baseline: per-rollout polling ---------------------------------------------------------
    poll_proxies: list[CountingProxy] = []
    pollers: list[subprocess.Popen[str]] = []
    channels: dict[str, str] = {}
    outputs: list[list[str]] = []
    for cluster in clusters:
        certs = cluster.info.directory / "certs"
        proxy = CountingProxy(cluster.info.server, certs, bench.workdir, f"poll-{cluster.name}")
        proxy.start()
        bench.stack.callback(proxy.stop)
        poll_proxies.append(proxy)
        kubeconfig = proxy.kubeconfig_for(
            cluster.info.bot_kubeconfig, bench.workdir / f"poll-{cluster.name}.kubeconfig"
        )
        poll_channel = f"C0POLL{cluster.name.upper()}"
        channels[poll_channel] = cluster.name
        stderr = open(bench.workdir / f"poller-{cluster.name}.stderr", "wb")  # noqa: SIM115
        bench.stack.callback(stderr.close)
        poller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.poller",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                ns_poll,
                "--names",
                ",".join(names),
                "--slack-url",
                bench.slack.base_url,
                "--token",
                bench.slack.token,
                "--channel",
                poll_channel,
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        bench.stack.callback(lambda p=poller: (p.poll() is None and p.kill(), p.wait()))
        pollers.append(poller)
        lines: list[str] = []
        outputs.append(lines)

        def read(p: subprocess.Popen[str] = poller, out: list[str] = lines) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                out.append(line.strip())

        threading.Thread(target=read, daemon=True).start()
    for lines, poller in zip(outputs, pollers, strict=True):
        wait_until(
            lambda ls=lines, p=poller: "READY" in ls or p.poll() is not None,
            300,
            "the pollers' messages",
        )
        if "READY" not in lines:
            raise RuntimeError(f"a poller failed: {lines}")
    cpu_before = sum(cpu_seconds(p.pid) for p in pollers)
    started = time.time()
    log(f"phase 4: {expected} rollouts started by kubectl, followed by polling")
    starters = [
        threading.Thread(
            target=c.admin.in_namespace(ns_poll).run,
            args=("set", "image", "deployments", "--all", "*=app:2"),
            kwargs={"timeout": 300},
        )
        for c in clusters
    ]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()

    def poll_finished() -> Any:
        count, succeeded, failed = _verdicts(bench.slack.calls("chat.update"), channels, started)
        if len(succeeded) + len(failed) >= expected and all_done(ns_poll):
            return count, succeeded, failed
        return None

    count, succeeded, failed = wait_until(poll_finished, TIMEOUT, "every poller message")
    cpu = sum(cpu_seconds(p.pid) for p in pollers) - cpu_before
    rss_each = [peak_rss_mib(p.pid) for p in pollers]
    poll_pss = sum(tree_pss_mib(p.pid) or 0.0 for p in pollers)
    ended = max(succeeded.values(), default=time.time())
    poll_figures = _figures(
        lags(ns_poll, succeeded),
        expected,
        _requests(poll_proxies, started, ended),
        cpu,
        sum(r for r in rss_each if r is not None),
        count,
        ended - started,
        len(failed),
    )
    poll_figures["pss_at_end_mib"] = round(poll_pss, 1)
    for lines, poller in zip(outputs, pollers, strict=True):
        wait_until(lambda ls=lines: any(x.startswith("DONE") for x in ls), 60, "the pollers")
        assert poller.stdin is not None
        poller.stdin.close()
        poller.wait(10)
    for proxy in poll_proxies:
        proxy.stop()
    for observer in observers.values():
        observer.stop()
    ratio = (
        round(poll_figures["api_requests"] / bot_figures["api_requests"], 1)
        if bot_figures["api_requests"]
        else None
    )
    return {
        "clusters": len(clusters),
        "rollouts_per_cluster": N,
        "progress_interval_s": float(Settings.model_fields["progress_update_interval"].default),
        "bot": bot_figures,
        "poller": poll_figures,
        "requests_ratio": ratio,
        "targets": {"lag_p95_s": 2.5, "requests_ratio_min": 10, "peak_rss_mib": 250},
        "note": (
            "bot CPU and RSS: every process of the bot (serving process, forkserver, workers), "
            "RSS as the sum of their peaks; poller: the sum over its per-cluster processes"
        ),
    }


def render(result: dict[str, Any]) -> list[str]:
    def fmt(value: Any) -> str:
        return "—" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    out = [
        f"   {result['clusters']} clusters x {result['rollouts_per_cluster']} rollouts in "
        "flight, one bot (one watch per context, namespace and kind) vs per-rollout polling",
        "   side    | lag p50   p95   max (s) | API requests | CPU s | peak RSS MiB | "
        "chat.update | window s",
    ]
    for side in ("bot", "poller"):
        f = result[side]
        out.append(
            f"   {side:<7} | {fmt(f['lag_p50_s']):>7} {fmt(f['lag_p95_s']):>5} "
            f"{fmt(f['lag_max_s']):>5}     | {f['api_requests']:>12} | {fmt(f['cpu_s']):>5} | "
            f"{fmt(f['peak_rss_mib']):>12} | {f['chat_updates']:>11} | {fmt(f['window_s'])}"
        )
    for side in ("bot", "poller"):
        kinds = ", ".join(f"{k} {v}" for k, v in result[side]["api_requests_by_kind"].items())
        out.append(f"   {side} requests: {kinds}")
    bot = result["bot"]
    out.append(
        f"   requests: polling made {fmt(result['requests_ratio'])}x the bot's; succeeded seen "
        f"bot {bot['succeeded_updates_seen']}/{bot['rollouts']}, poller "
        f"{result['poller']['succeeded_updates_seen']}/{result['poller']['rollouts']}; "
        f"set-image ack p50 {fmt(bot['command_ack']['p50_ms'])} ms"
    )
    out.append(
        f"   bot = {bot['processes']} processes (serving + workers), peak RSS summed (serving "
        f"process alone {fmt(bot['serving_process_peak_rss_mib'])} MiB); PSS at the end: bot "
        f"{fmt(bot['pss_at_end_mib'])} MiB, poller {fmt(result['poller']['pss_at_end_mib'])} MiB; "
        "poller = one process per cluster"
    )
    out.append("   targets: lag p95 ≤ 2.5 s, requests ≥ 10x fewer than polling, RSS ≤ 250 MiB")
    return out
