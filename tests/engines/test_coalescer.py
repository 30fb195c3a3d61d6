"""The coalescer on its own: pacing, latest-wins, finals never lost or replaced."""

from __future__ import annotations

import threading
import time

import pytest

from bot.services.progress.coalescer import Coalescer

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[tuple[str, str, str, float]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, channel: str, ts: str, message: str) -> bool:
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                return False
            self.sent.append((channel, ts, message, time.monotonic()))
            return True


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_burst_of_states_becomes_one_update_with_the_latest() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str] = Coalescer(recorder, min_interval=0.3)
    coalescer.note_posted("C1", "1.0", "posted")
    coalescer.start()
    for n in range(50):
        coalescer.submit("C1", "1.0", f"state {n}")
    wait_until(lambda: recorder.sent)
    time.sleep(0.5)
    coalescer.stop()
    assert [m for _, _, m, _ in recorder.sent] == ["state 49"]


def test_updates_of_one_message_are_paced_and_others_are_not_held_up() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str] = Coalescer(recorder, min_interval=0.4)
    coalescer.start()
    coalescer.submit("C1", "1.0", "a1")
    wait_until(lambda: len(recorder.sent) == 1)
    coalescer.submit("C1", "1.0", "a2")
    coalescer.submit("C1", "2.0", "b1")
    wait_until(lambda: len(recorder.sent) == 3)
    coalescer.stop()
    by_message = {m: at for _, _, m, at in recorder.sent}
    assert by_message["a2"] - by_message["a1"] >= 0.35  # paced per message
    assert by_message["b1"] < by_message["a2"]  # another message went first


def test_an_identical_state_is_not_sent_again() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str] = Coalescer(recorder, min_interval=0.05)
    coalescer.note_posted("C1", "1.0", "same")
    coalescer.start()
    coalescer.submit("C1", "1.0", "same")
    time.sleep(0.3)
    coalescer.stop()
    assert recorder.sent == []


def test_a_final_state_is_never_replaced_and_is_retried_until_delivered() -> None:
    recorder = Recorder(fail_first=3)
    delivered = threading.Event()
    coalescer: Coalescer[str] = Coalescer(recorder, min_interval=0.05)
    coalescer.start()
    coalescer.submit("C1", "1.0", "succeeded", final=True, on_delivered=delivered.set)
    coalescer.submit("C1", "1.0", "rolling out")  # arrives late: must not win
    assert delivered.wait(5)
    coalescer.stop()
    assert [m for _, _, m, _ in recorder.sent] == ["succeeded"]


def test_flush_sends_what_is_pending_at_once() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str] = Coalescer(recorder, min_interval=30)
    coalescer.note_posted("C1", "1.0", "posted")
    coalescer.start()
    coalescer.submit("C1", "1.0", "latest")
    assert coalescer.flush(5.0)
    coalescer.stop()
    assert [m for _, _, m, _ in recorder.sent] == ["latest"]
