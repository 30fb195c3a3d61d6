"""A core of its own for the app under test, as its own pod would have.

In production the bot runs beside nothing: the API server, etcd, Redis and Slack are other
machines. On the bench they all share this machine, so without care an ack latency figure
measures how much CPU the API server and the Slack stand-in spent answering the bot's
post-ack reads, on the same cores as the acks. The bare apps make no such calls, so the
comparison would charge the bot for its neighbours' work.

While `own_core` is active, every process of the apps under test (the bot with its worker
processes, the bare apps) runs on the last CPU and everything else the bench started (the
control plane, Redis, the stand-in, the load generator) on the others. The same holds for
every app measured, so they meet the same conditions. `BENCH_ISOLATE=0` measures without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from tests.support.processes import process_tree


def _trees(roots: Iterable[int]) -> set[int]:
    return {pid for root in roots for pid in process_tree(root)}


def _pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Every thread of every process: an affinity set with a pid covers only that thread."""
    for pid in pids:
        try:
            threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in threads:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def own_core(app_pids: Iterable[int]) -> Iterator[str]:
    """Pins the apps' process trees to the last CPU and the rest of the bench's to the others,
    for the duration; yields a line that says what was done, for the report."""
    cpus = set(os.sched_getaffinity(0))
    if os.environ.get("BENCH_ISOLATE") == "0":
        yield "apps under test not isolated (BENCH_ISOLATE=0): every process on every CPU"
        return
    if len(cpus) < 2:
        yield "apps under test not isolated: this machine offers one CPU"
        return
    app_cpu = {max(cpus)}
    others = cpus - app_cpu
    apps = _trees(app_pids)
    _pin(apps, app_cpu)
    _pin(set(process_tree(os.getpid())) - apps, others)
    try:
        yield (
            f"apps under test on CPU {max(app_cpu)}; control plane, Redis, Slack stand-in and "
            f"load generator on CPU {','.join(str(c) for c in sorted(others))}"
        )
    finally:
        _pin(process_tree(os.getpid()), cpus)
