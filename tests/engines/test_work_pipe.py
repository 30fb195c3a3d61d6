"""The pipe that carries work to a worker process: the thread that acknowledges never blocks
on it, and every item arrives once, in order, even when the worker stops reading for a while."""

from __future__ import annotations

import multiprocessing
import threading

from bot.workers import WorkPipe


def test_put_never_blocks_and_everything_arrives_in_order_once_the_reader_resumes() -> None:
    pipe = WorkPipe(multiprocessing.get_context("forkserver"))
    # Far more than the pipe holds (64 KiB), some items larger than one atomic write.
    items = [(n, "x" * (5000 if n % 97 == 0 else 40)) for n in range(5000)]
    putting = threading.Thread(target=lambda: [pipe.put(item) for item in items])
    putting.start()
    putting.join(timeout=10)
    assert not putting.is_alive(), "put blocked while nobody was reading"

    received = [pipe.reader.recv() for _ in items]
    assert received == items
    assert not pipe.reader.poll(0.2)  # nothing twice
    pipe.close()


def test_after_close_an_item_is_dropped_quietly_for_its_sender_to_recover() -> None:
    pipe = WorkPipe(multiprocessing.get_context("forkserver"))
    reader = pipe.reader
    pipe.put((1, "before"))
    pipe.close()
    pipe.put((2, "after"))  # no exception: the dispatcher still holds it in flight
    assert reader.closed
