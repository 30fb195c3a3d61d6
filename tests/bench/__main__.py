"""`make bench`: run the three measurements, print the report, write it as JSON.

Exit status: 0 when every phase ran, 1 when any phase raised (the report still shows the
others), 2 when the shared set-up (control plane, Redis, stand-in) failed.
"""

from __future__ import annotations

import faulthandler
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from tests.bench import multi, phases, promotion
from tests.bench.harness import Bench, log

RESULTS = Path(os.environ.get("BENCH_RESULTS", "/tmp/rollout-bot-bench.json"))


def machine() -> dict[str, Any]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    versions = {}
    for package in ("slack-bolt", "slack-sdk", "waitress", "kubernetes", "redis"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        # Other work on the machine (e.g. concurrent test runs) skews every figure.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
    return f"{value}{unit}"


def render(report: dict[str, Any]) -> str:
    out: list[str] = []
    m = report["machine"]
    out.append("rollout-bot bench")
    out.append(
        f"  date {m['date']} · nproc {m['nproc']} · {m['implementation']} {m['python']} · "
        f"kernel {m['kernel']}"
    )
    out.append("  " + " · ".join(f"{k} {v}" for k, v in m["packages"].items()))
    out.append(
        f"  load average at start {m['loadavg_at_start']}, at end {report.get('loadavg_at_end')}"
    )
    results = report["phases"]
    errors = report["errors"]

    out.append("")
    out.append("1. Ack latency of /rollout reads over HTTP (signed requests, closed loop)")
    if "ack_latency" in results:
        r = results["ack_latency"]
        out.append(
            f"   waitress threads {r['threads']} for each app; the bot answers via response_url "
            "after the ack ('reply' = command to ephemeral answer)"
        )
        out.append(f"   {r['isolation']}")
        out.append(
            "   bare = a Bolt app that only acks, on Bolt's default runner (the listener on a "
            "pool, its ack polled every 10 ms); inline = the same on the bot's runner (the "
            "listener in the request's thread)"
        )
        out.append(
            "   command  clients |   bot p50    p99 |  bare p50    p99 | inline p50    p99 |"
            " p99 ratio: ÷bare ÷inline | reply p50   p99 | CPU/ack bot bare inline | non-200"
        )
        for row in r["rows"]:
            bot, bare, inline = row["bot"], row["bare"], row["inline"]
            out.append(
                f"   {row['command']:<8} {row['concurrency']:>7} | "
                f"{_fmt(bot['ack']['p50_ms']):>9} {_fmt(bot['ack']['p99_ms']):>6} | "
                f"{_fmt(bare['ack']['p50_ms']):>9} {_fmt(bare['ack']['p99_ms']):>6} | "
                f"{_fmt(inline['ack']['p50_ms']):>10} {_fmt(inline['ack']['p99_ms']):>6} | "
                f"{_fmt(row['ratio_p99']):>16} {_fmt(row['ratio_p99_inline']):>7} | "
                f"{_fmt(bot.get('reply', {}).get('p50_ms')):>9} "
                f"{_fmt(bot.get('reply', {}).get('p99_ms')):>5} | "
                f"{_fmt(bot['serving_cpu_ms_per_request']):>11} "
                f"{_fmt(bare['serving_cpu_ms_per_request']):>4} "
                f"{_fmt(inline['serving_cpu_ms_per_request']):>6} | "
                f"{bot['non_200']}/{bare['non_200']}/{inline['non_200']}"
            )
        out.append(
            f"   (ms; {r['rows'][0]['requests']} requests per app and cell, in {r['rounds']} "
            "rounds taking turns; CPU/ack = CPU time of the process that acknowledges, per "
            "request)"
        )
        out.append(
            "   note: `help` is answered in the ack with no work after it: where its ratio "
            "matches the reads', the reads' extra is the ack path's own (parse, typed command, "
            "hand-off), not post-ack work"
        )
    else:
        out.append(f"   FAILED: {errors.get('ack_latency', 'not run')}")

    out.append("")
    out.append("2. Approval clicks (Approve on pending set-image requests in a prod-* namespace)")
    if "approvals" in results:
        r = results["approvals"]
        b, bare, done = r["bot_ack"], r["bare_ack"], r["click_to_done_update"]
        inline = r["inline_ack"]
        out.append(f"   {r['clicks']} clicks, one at a time; outcomes {r['outcomes']}")
        out.append(
            f"   ack  bot p50 {_fmt(b['p50_ms'])} ms  p99 {_fmt(b['p99_ms'])} ms | "
            f"bare p50 {_fmt(bare['p50_ms'])} ms  p99 {_fmt(bare['p99_ms'])} ms | "
            f"inline p50 {_fmt(inline['p50_ms'])} ms  p99 {_fmt(inline['p99_ms'])} ms | "
            f"p99 ratio ÷bare {_fmt(r['ratio_p99'])}  ÷inline {_fmt(r['ratio_p99_inline'])}"
        )
        out.append(
            f"   click → card chat.update showing Done: p50 {_fmt(done['p50_ms'])} ms  "
            f"p99 {_fmt(done['p99_ms'])} ms  max {_fmt(done['max_ms'])} ms"
        )
    else:
        out.append(f"   FAILED: {errors.get('approvals', 'not run')}")

    out.append("")
    out.append("3. Progress at scale (each Deployment 1 replica, fake kubelet ready delay 1 s)")
    if "progress" in results:
        r = results["progress"]
        out.append(
            f"   {r['deployments_per_side']} rollouts per side; lag = chat.update showing "
            "'succeeded' minus rollout status seen done by the bench's own watch"
        )
        out.append(
            "   side    | lag p50   p95   max (s) | API requests  (/s) | CPU s | chat.update |"
            " window s | peak RSS MiB"
        )
        for side, label in (("bot", "bot"), ("poller", "poller")):
            f = r[side]
            out.append(
                f"   {label:<7} | {_fmt(f['lag_p50_s']):>7} {_fmt(f['lag_p95_s']):>5} "
                f"{_fmt(f['lag_max_s']):>5}     | {f['api_requests']:>12} "
                f"{_fmt(f['api_requests_per_s']):>5} | {_fmt(f['cpu_s']):>5} | "
                f"{f['chat_updates']:>11} | {_fmt(f['window_s']):>8} | "
                f"{_fmt(f.get('peak_rss_mib'))}"
            )
        for side in ("bot", "poller"):
            kinds = ", ".join(f"{k} {v}" for k, v in r[side]["api_requests_by_kind"].items())
            out.append(f"   {side} requests: {kinds}")
        bot = r["bot"]
        out.append(
            f"   bot: {bot['progress_posts']} progress messages posted; set-image ack p50 "
            f"{_fmt(bot['command_ack']['p50_ms'])} ms p99 {_fmt(bot['command_ack']['p99_ms'])} ms;"
            f" succeeded seen {bot['succeeded_updates_seen']}/{bot['deployments']}, "
            f"failed {bot['failed']}; poller succeeded seen "
            f"{r['poller']['succeeded_updates_seen']}/{r['poller']['deployments']}"
        )
        out.append(
            f"   window: bot = first /rollout sent → last 'succeeded' update (includes handling "
            f"the {r['deployments_per_side']} commands: their GET+PATCH, audit, announcements); "
            "poller = one `kubectl set image --all` (admin, not counted) → last update"
        )
        out.append(
            f"   bot progress interval {r['progress_interval_s']} s (one chat.update per message "
            "per interval); poller polls each Deployment every 1 s for as long as it rolls out"
        )
    else:
        out.append(f"   FAILED: {errors.get('progress', 'not run')}")
    out.append("")
    out.append("4. Progress in several clusters (each Deployment 1 replica)")
    if "multi_cluster" in results:
        out.extend(multi.render(results["multi_cluster"]))
    else:
        out.append(f"   FAILED or not run: {errors.get('multi_cluster', 'not run')}")

    out.append("")
    out.append("5. Promotion: one gate opening a wave of targets, beside the changes one by one")
    if "promotion" in results:
        out.extend(promotion.render(results["promotion"]))
    else:
        out.append(f"   FAILED or not run: {errors.get('promotion', 'not run')}")
    if report.get("warnings"):
        out.append("")
        out.extend(f"warning: {w}" for w in report["warnings"])
    return "\n".join(out)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`: everything started is stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps every stack
    started = time.monotonic()
    report: dict[str, Any] = {"machine": machine(), "phases": {}, "errors": {}, "warnings": []}
    workdir = Path(tempfile.mkdtemp(prefix="rollout-bot-bench-"))
    bench = Bench(workdir)
    status = 0
    try:
        try:
            bench.open()
        except Exception:
            report["errors"]["setup"] = traceback.format_exc()
            log(f"set-up failed:\n{report['errors']['setup']}")
            status = 2
        if status == 0:
            apps = phases.Apps(bench)
            steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("ack_latency", lambda: phases.ack_latency(bench, apps)),
                ("approvals", lambda: phases.approval_clicks(bench, apps)),
                ("progress", lambda: phases.progress_at_scale(bench)),
                ("multi_cluster", lambda: multi.multi_cluster_progress(bench)),
                ("promotion", lambda: promotion.promotion_vs_one_by_one(bench)),
            ]
            # BENCH_PHASES=progress,multi_cluster runs only those (default: all of them).
            chosen = [p for p in os.environ.get("BENCH_PHASES", "").split(",") if p]
            steps = [(name, step) for name, step in steps if not chosen or name in chosen]
            for name, step in steps:
                if name in ("progress", "multi_cluster", "promotion"):
                    apps.stop()  # phase 3 runs alone on the machine
                    _check_logs(workdir, report)
                phase_start = time.monotonic()
                try:
                    report["phases"][name] = step()
                except Exception as exc:
                    report["errors"][name] = f"{type(exc).__name__}: {exc}"
                    log(f"phase {name} failed:\n{traceback.format_exc()}")
                    status = 1
                log(f"phase {name} took {time.monotonic() - phase_start:.0f}s")
    finally:
        bench.close()
        _check_logs(workdir, report)
        if status == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report["warnings"].append(f"logs kept in {workdir}")
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    print(f"\ntotal {report['elapsed_s']:.0f}s; JSON report: {RESULTS}")
    return status


def _check_logs(workdir: Path, report: dict[str, Any]) -> None:
    for path in sorted(workdir.glob("bot-*.log")):
        text = path.read_text(errors="replace")
        if "Traceback" in text:
            note = f"a traceback reached {path.name}"
            if note not in report["warnings"]:
                report["warnings"].append(note)


if __name__ == "__main__":
    sys.exit(main())
