"""Acknowledged work in worker processes, so acknowledging never waits for it.

A Python process runs one thread at a time. When the threads that talk to the cluster, render
Block Kit and reply are in the same process as the ones that acknowledge requests, every ack
queues behind them for the interpreter: under a burst of commands, acks took 10 to 20 times as
long as a bare Bolt app's. Here the process that serves Slack only verifies, parses,
acknowledges and puts a picklable `Work` on a queue; worker processes, each with a few threads
(a slow cluster call holds a thread, not a process), take it from there. The operating system,
not the interpreter lock, shares the CPU between acks and work.

    main process      HTTP or Socket Mode, Bolt, acks; engines (progress, sweeper, retention,
                      policy reload); /healthz, /readyz, /metrics
    worker processes  perform(Work): policy, approvals, the cluster, the replies

What a worker cannot do itself comes back on a result queue and is done by the main process:
following the rollout a change started (the progress engine lives there, with its watches and
leases) and counting what happened (the metrics are served there).

Workers are started from a clean server process (multiprocessing's "forkserver"), never forked
from the threaded main process; one that dies is replaced. `ROLLOUT_BOT_WORKERS=0` keeps the
work in threads of the main process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, cast

from bot.observability import metrics as metrics_module
from bot.observability.metrics import Metrics, metrics
from bot.services.progress.ports import Tracking
from bot.services.rollouts import Change

log = logging.getLogger(__name__)

# Workers run at a lower scheduling priority than the process that acknowledges: on a busy
# machine the operating system then gives the CPU to acks first, and work takes what is left
# (it has seconds to finish, an ack has three in all).
WORKER_NICENESS = 10
# A worker whose main process is gone (killed) stops within this long.
ORPHAN_CHECK_SECONDS = 2.0
# How often the main process looks for a dead worker to replace.
SUPERVISE_SECONDS = 1.0


@dataclass(frozen=True)
class TrackOrder:
    change: Change
    channel_id: str
    thread_ts: str
    title: str
    automatic: bool


@dataclass
class WorkResult:
    tracking: list[TrackOrder] = field(default_factory=list)
    #: (method, args, kwargs) of every metrics call the work made, replayed in the main process.
    metrics: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)


class WorkerProcesses:
    """Dispatches Work to worker processes; see the module docstring."""

    def __init__(
        self,
        processes: int,
        threads: int,
        tracking: Tracking,
        fallback: Callable[[Any], None],
    ) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["bot.workers", "bot.runtime", "handlers.work"])
        self._work: multiprocessing.Queue[Any] = self._context.Queue()
        self._results: multiprocessing.Queue[WorkResult | None] = self._context.Queue()
        self._count = processes
        self._threads = threads
        self._tracking = tracking
        self._fallback = fallback
        self._processes: list[BaseProcess] = []
        self._stopping = threading.Event()
        # Following a rollout posts its first message: not on the thread reading results.
        self._after = ThreadPoolExecutor(max_workers=2, thread_name_prefix="after-work")

    def start(self) -> None:
        self._processes = [self._spawn() for _ in range(self._count)]
        threading.Thread(target=self._read_results, name="work-results", daemon=True).start()
        threading.Thread(target=self._supervise, name="work-supervisor", daemon=True).start()

    def __call__(self, work: Any) -> None:
        if self._stopping.is_set():
            return
        if not any(p.is_alive() for p in self._processes):
            log.warning("no worker process is running; working in-process")
            self._fallback(work)
            return
        self._work.put(work)

    def stop(self) -> None:
        self._stopping.set()
        for process in self._processes:
            process.terminate()
        self._results.put(None)
        self._after.shutdown(wait=False, cancel_futures=True)

    # -- main process ----------------------------------------------------------------------------

    def _spawn(self) -> BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self._work, self._results, self._threads, os.getpid()),
            name="rollout-bot-worker",
            daemon=True,
        )
        process.start()
        return process

    def _supervise(self) -> None:
        while not self._stopping.wait(SUPERVISE_SECONDS):
            for index, process in enumerate(self._processes):
                if not process.is_alive() and not self._stopping.is_set():
                    log.warning("a worker process exited (%s); starting another", process.exitcode)
                    self._processes[index] = self._spawn()

    def _read_results(self) -> None:
        while True:
            try:
                result = self._results.get()
            except Exception as exc:  # the queue closed under the reader: the process is stopping
                if not self._stopping.is_set():
                    log.warning("worker results can no longer be read: %s", type(exc).__name__)
                return
            if result is None:
                return
            real = metrics()
            for name, args, kwargs in result.metrics:
                getattr(real, name)(*args, **kwargs)
            for order in result.tracking:
                self._after.submit(
                    self._tracking.track,
                    order.change,
                    order.channel_id,
                    order.thread_ts,
                    title=order.title,
                    automatic=order.automatic,
                )


# -- inside a worker process -------------------------------------------------------------------


class _DeferredTracking:
    """What the progress engine should follow, handed back to the main process (per thread)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def orders(self) -> list[TrackOrder]:
        if not hasattr(self._local, "orders"):
            self._local.orders = []
        return cast(list[TrackOrder], self._local.orders)

    def track(
        self,
        change: Change,
        channel_id: str,
        thread_ts: str,
        *,
        title: str = "",
        automatic: bool = False,
    ) -> None:
        self.orders.append(TrackOrder(change, channel_id, thread_ts, title, automatic))


class _RecordedMetrics:
    """Stands in for the metrics in a worker: records each call (per thread) for the main
    process, which serves /metrics."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def calls(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        if not hasattr(self._local, "calls"):
            self._local.calls = []
        return cast(list[tuple[str, tuple[Any, ...], dict[str, Any]]], self._local.calls)

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process we may not signal holds the number: assume it is ours
    return True


def _worker_main(work: Any, results: Any, threads: int, main_pid: int) -> None:
    from bot.config import load_settings
    from bot.observability.logs import configure_logging
    from bot.runtime import Runtime
    from bot.services.periodic import Periodic
    from bot.services.policy_reload import PolicyReloader
    from handlers.work import perform

    os.nice(WORKER_NICENESS)
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    recorded = _RecordedMetrics()
    metrics_module._default = cast(Metrics, recorded)
    runtime = Runtime(settings)
    tracking = _DeferredTracking()
    runtime.services.progress = tracking
    if settings.policy_file is not None:
        # Each worker applies a policy edit too (the main process audits it).
        reloader = PolicyReloader(
            settings.policy_file,
            [runtime.services.access.use_policy],
            None,
            cast(Metrics, recorded),
            cluster_name=settings.cluster_name,
        )
        Periodic("policy-reload", settings.policy_reload_seconds, reloader.step).start()

    def serve() -> None:
        while True:
            try:
                item = work.get(timeout=ORPHAN_CHECK_SECONDS)
            except queue.Empty:
                if not _alive(main_pid):
                    # The main process is gone (killed). The forkserver cannot tell us: each
                    # worker keeps it alive as much as it keeps the worker's parent alive.
                    os._exit(0)
                continue
            tracking.orders.clear()
            recorded.calls.clear()
            try:
                perform(runtime.services, runtime.slack, item)
            except Exception as exc:  # perform answers the user itself; never die for one item
                log.warning("work failed in a worker: %s", type(exc).__name__)
            results.put(WorkResult(list(tracking.orders), list(recorded.calls)))

    pool = [threading.Thread(target=serve, name=f"work-{n}") for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
