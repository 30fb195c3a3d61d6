"""Acknowledged work in worker processes, so acknowledging never waits for it.

A Python process runs one thread at a time. When the threads that talk to the cluster, render
Block Kit and reply are in the same process as the ones that acknowledge requests, every ack
queues behind them for the interpreter: under a burst of commands, acks took 10 to 20 times as
long as a bare Bolt app's. Here the process that serves Slack only verifies, parses,
acknowledges and writes a picklable `Work` into a worker's pipe; worker processes, each with a
few threads (a slow cluster call holds a thread, not a process), take it from there. Workers
run in the idle scheduling class: the operating system gives the CPU to acks first.

    main process      HTTP or Socket Mode, Bolt, acks; engines (progress, sweeper, retention,
                      policy reload); /healthz, /readyz, /metrics
    worker processes  perform(Work): the replay check, policy, approvals, the cluster, replies

What a worker cannot do itself comes back on its result queue and is done by the main process:
following the rollout a change started (the progress engine lives there, with its watches and
leases) and counting what happened (the metrics are served there, sent back in batches).

Each worker has its own pipe and result queue, so a worker killed in the middle of a read or
write cannot wedge another's. The main process remembers what each worker holds until the
worker reports it done; when one dies, a replacement starts on fresh queues, the reads it held
run again here and the authors of changes it held are told to check before retrying (the change
may or may not have been made).

Workers are started from a clean server process (multiprocessing's "forkserver"), never forked
from the threaded main process. `ROLLOUT_BOT_WORKERS=0` keeps the work in threads of the main
process. What a worker performs its work with (a Runtime of its own) is handed in by the
composition root (a WorkerEntry, bot.worker_main's): this pool imports neither the Runtime nor
the Slack surface.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import select
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, cast

from bot.domain.targets import Change
from bot.observability import metrics as metrics_module
from bot.observability.metrics import Metrics, metrics
from bot.services.progress.publishing import Tracking

log = logging.getLogger(__name__)

# Where the idle scheduling class is missing (not Linux), workers fall back to this niceness.
WORKER_NICENESS = 19
# A worker whose main process is gone (killed) stops within this long.
ORPHAN_CHECK_SECONDS = 2.0
# How often the main process looks for a dead worker to replace.
SUPERVISE_SECONDS = 1.0
# On SIGTERM, workers get this long to finish what they hold.
DRAIN_SECONDS = 3.0
# A dead worker's reader stops after this long without a result.
RETIRED_READ_SECONDS = 0.5
# A worker sends its metrics back in one message at most this often (a rollout to follow goes
# at once): under a burst, the main process reads a few messages, not one per command.
RESULTS_FLUSH_SECONDS = 0.2


@dataclass(frozen=True)
class TrackOrder:
    change: Change
    channel_id: str
    thread_ts: str
    title: str
    automatic: bool


@dataclass
class WorkResult:
    #: Ids of the items this worker has finished (or given up on) since its last result.
    done: list[int] = field(default_factory=list)
    tracking: list[TrackOrder] = field(default_factory=list)
    #: (method, args, kwargs) of every metrics call the work made, replayed in the main process.
    metrics: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)


class WorkPipe:
    """Work from the main process to one worker, without blocking the thread that acks.

    A pickled item that fits one atomic pipe write goes straight in from the caller's thread
    (no hand-off to another thread, no wake-up). When the pipe is full, or the item is large,
    it waits in a local backlog that a feeder thread writes out in order; later items queue
    behind it. The framing is multiprocessing's, so the worker reads with `Connection.recv`.
    """

    def __init__(self, context: Any) -> None:
        self.reader, self._writer = context.Pipe(duplex=False)
        self._fd = self._writer.fileno()
        os.set_blocking(self._fd, False)
        self._lock = threading.Lock()
        self._backlog: collections.deque[memoryview] = collections.deque()
        self._more = threading.Event()
        self._closed = False
        threading.Thread(target=self._feed, name="work-feeder", daemon=True).start()

    def put(self, item: Any) -> None:
        """Never blocks. Once the pipe is closed the item is dropped: its sender still holds it
        (in flight) and recovers it."""
        payload = pickle.dumps(item)
        frame = memoryview(struct.pack("!i", len(payload)) + payload)
        with self._lock:
            if self._closed:
                return
            if not self._backlog and len(frame) <= select.PIPE_BUF:
                try:
                    os.write(self._fd, frame)  # all of it or nothing, up to PIPE_BUF
                    return
                except BlockingIOError:
                    pass
            self._backlog.append(frame)
        self._more.set()

    def close(self, flush_until: float | None = None) -> None:
        """Closes the pipe (the worker then reads to the end, and gets EOF); with
        `flush_until` (a time.monotonic() deadline), the backlog is written out first."""
        while flush_until is not None and self._backlog and time.monotonic() < flush_until:
            time.sleep(0.01)
        with self._lock:  # no write is under way, and none starts after this
            if self._closed:
                return
            self._closed = True
            self._writer.close()
            self.reader.close()
        self._more.set()

    def _feed(self) -> None:
        while self._more.wait():
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: seen below
                select.select([], [self._fd], [], 1.0)
            with self._lock:
                if self._closed:
                    return
                if not self._backlog:
                    self._more.clear()
                    continue
                frame = self._backlog[0]
                try:
                    written = os.write(self._fd, frame)
                except BlockingIOError:
                    continue
                # The caller writes only while the backlog is empty, so this frame is still
                # first: drop what was written, keep the rest for the next round.
                if written == len(frame):
                    self._backlog.popleft()
                else:
                    self._backlog[0] = frame[written:]


@dataclass
class _Slot:
    """One worker process and what only it reads and writes. Nothing is shared between workers:
    a worker killed in the middle of a queue operation can wedge its own queues, never
    another's, and its replacement starts on fresh ones."""

    process: BaseProcess
    work: WorkPipe  # (item id, Work)
    results: Any  # multiprocessing.Queue of WorkResult
    #: Work handed to this worker and not reported done yet, by item id.
    in_flight: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    retired: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None


class WorkerProcesses:
    """Dispatches Work to worker processes; see the module docstring."""

    def __init__(
        self,
        processes: int,
        threads: int,
        tracking: Tracking,
        recover: Callable[[Any], None],
        entry: WorkerEntry,
        *,
        policy_in_force: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        """`recover` takes each piece of work a dead worker had not finished; `entry` is what
        each worker performs its items with (a module-level function: workers are handed it by
        name); `policy_in_force` gives the policy file's bytes in force in this process, which
        a worker started (or restarted) uses instead of reading the file itself."""
        self._context = multiprocessing.get_context("forkserver")
        # The forkserver imports the entry's module (and so everything a worker builds) once:
        # each worker then starts from a copy of it instead of importing it all again.
        self._context.set_forkserver_preload(["bot.workers", entry.__module__])
        self._entry = entry
        self._count = processes
        self._threads = threads
        self._tracking = tracking
        self._recover = recover
        self._policy_in_force = policy_in_force
        self._slots: list[_Slot] = []
        self._ids = itertools.count(1)
        self._turn = itertools.count()
        self._stopping = threading.Event()
        # Following a rollout posts its first message: not on the thread reading results.
        self._after = ThreadPoolExecutor(max_workers=2, thread_name_prefix="after-work")

    def start(self) -> None:
        self._slots = [self._spawn() for _ in range(self._count)]
        threading.Thread(target=self._supervise, name="work-supervisor", daemon=True).start()

    def __call__(self, work: Any) -> None:
        if self._stopping.is_set():
            raise RuntimeError("the bot is stopping and takes no more work")
        # Round robin, with no system call: a worker that died meanwhile is found by the
        # supervisor within a second, and what it was given is recovered then.
        item_id = next(self._ids)
        for _ in range(2 * len(self._slots)):
            slot = self._slots[next(self._turn) % len(self._slots)]
            with slot.lock:
                if slot.retired.is_set():
                    continue  # being replaced: its in-flight work is being recovered
                slot.in_flight[item_id] = work
            slot.work.put((item_id, work))
            return
        self._recover(work)  # every slot was being replaced at this very moment

    def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Lets every worker finish what it holds: its pipe is closed, so it reads what is
        left, completes it and exits. A worker still busy after `drain_seconds` is killed (it
        may be stuck), and what it held is recovered like a dead worker's. Rollouts that the
        drained work started are handed to the progress engine before this returns."""
        self._stopping.set()
        deadline = time.monotonic() + drain_seconds
        for slot in self._slots:
            slot.work.close(flush_until=deadline)
        for slot in self._slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in self._slots:
            if slot.process.is_alive():
                # Its time is up, and what it holds is reported below. SIGKILL, because a
                # worker that hangs, or is stopped, would leave SIGTERM pending and the bot's
                # exit waiting for it.
                slot.process.kill()
                slot.process.join(1.0)
            self._retire(slot)
        self._after.shutdown(wait=True)

    # -- main process ----------------------------------------------------------------------------

    def _spawn(self) -> _Slot:
        work, results = WorkPipe(self._context), self._context.Queue()
        process = self._context.Process(
            target=_worker_main,
            args=(
                self._entry,
                work.reader,
                results,
                self._threads,
                os.getpid(),
                self._policy_in_force(),
            ),
            name="rollout-bot-worker",
            daemon=True,
        )
        process.start()
        slot = _Slot(process, work, results)
        slot.reader = threading.Thread(
            target=self._read_results, args=(slot,), name="work-results", daemon=True
        )
        slot.reader.start()
        return slot

    def _supervise(self) -> None:
        while not self._stopping.wait(SUPERVISE_SECONDS):
            for index, slot in enumerate(self._slots):
                if slot.process.is_alive() or self._stopping.is_set():
                    continue
                log.warning("a worker process exited (%s); starting another", slot.process.exitcode)
                self._slots[index] = self._spawn()
                self._retire(slot)

    def _retire(self, slot: _Slot) -> None:
        """Reads what the dead worker managed to report, then recovers the rest of its work."""
        with slot.lock:  # from here on, dispatch passes this slot by
            slot.retired.set()
        if slot.reader is not None:
            slot.reader.join(timeout=5)
        with slot.lock:
            unfinished = list(slot.in_flight.values())
            slot.in_flight.clear()
        for work in unfinished:
            self._recover(work)
        slot.work.close()
        slot.results.cancel_join_thread()  # never wait at exit for a queue nobody writes
        slot.results.close()

    def _read_results(self, slot: _Slot) -> None:
        while True:
            try:
                result = slot.results.get(timeout=RETIRED_READ_SECONDS)
            except queue.Empty:
                if slot.retired.is_set():
                    return
                continue
            except Exception as exc:  # the queue closed under the reader: stopping
                if not self._stopping.is_set():
                    log.warning("worker results can no longer be read: %s", type(exc).__name__)
                return
            self._apply(slot, result)

    def _apply(self, slot: _Slot, result: WorkResult) -> None:
        with slot.lock:
            for item_id in result.done:
                slot.in_flight.pop(item_id, None)
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


class _Outbox:
    """What every work thread of a worker hands back, sent to the main process in batches."""

    def __init__(self, results: Any) -> None:
        self._results = results
        self._lock = threading.Lock()
        self._pending = WorkResult()

    def add(
        self,
        item_id: int,
        orders: list[TrackOrder],
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    ) -> None:
        with self._lock:
            self._pending.done.append(item_id)
            self._pending.tracking.extend(orders)
            self._pending.metrics.extend(calls)
        if orders:
            self.send()  # the rollout's progress message should not wait for a batch

    def send(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, WorkResult()
        if pending.done or pending.tracking or pending.metrics:
            self._results.put(pending)

    def send_every(self, seconds: float) -> None:
        while True:
            time.sleep(seconds)
            self.send()


def _yield_the_cpu_to_acks() -> None:
    """Work takes only the CPU that acknowledging leaves. An ack has three seconds in all and
    Slack's user waits for it; work has seconds to spare. On Linux the worker joins the idle
    scheduling class: within the bot's container (its cgroup) it runs whenever the serving
    process does not want the CPU, and never ahead of it."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(WORKER_NICENESS)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process we may not signal holds the number: assume it is ours
    return True


#: What a worker process performs its items with. Called once in each new worker with the
#: policy in force in the main process, the stand-ins for the progress engine and the metrics
#: (whose orders and counts go back to the main process), and returns what performs one item.
#: The composition root names it (bot.worker_main): the pool knows nothing of what it runs.
WorkerEntry = Callable[[bytes | None, Tracking, Metrics], Callable[[Any], None]]


def _worker_main(
    entry: WorkerEntry,
    work: Any,
    results: Any,
    threads: int,
    main_pid: int,
    policy_bytes: bytes | None = None,
) -> None:
    _yield_the_cpu_to_acks()
    recorded = _RecordedMetrics()
    metrics_module._default = cast(Metrics, recorded)
    tracking = _DeferredTracking()
    perform = entry(policy_bytes, tracking, cast(Metrics, recorded))

    outbox = _Outbox(results)
    threading.Thread(target=outbox.send_every, args=(RESULTS_FLUSH_SECONDS,), daemon=True).start()

    def run(item_id: int, item: Any) -> None:
        tracking.orders.clear()
        recorded.calls.clear()
        try:
            perform(item)
        except Exception as exc:  # perform answers the user itself; never die for one item
            log.warning("work failed in a worker: %s", type(exc).__name__)
        outbox.add(item_id, tracking.orders, recorded.calls)

    # One thread reads this worker's own queue; a slow cluster call holds a pool thread.
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")
    while True:
        if not work.poll(ORPHAN_CHECK_SECONDS):
            if not _alive(main_pid):
                # The main process is gone (killed). The forkserver cannot tell us: each
                # worker keeps it alive as much as it keeps the worker's parent alive.
                os._exit(0)
            continue
        try:
            item_id, item = work.recv()
        except EOFError:  # the main process closed the pipe: it is stopping
            break
        pool.submit(run, item_id, item)
    pool.shutdown(wait=True)  # finish what was handed over
    outbox.send()
