"""The worker processes that run acknowledged work: they yield the CPU to acks, a dead one is
replaced without losing the next command, and a killed bot leaves none of them behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bot.workers import ORPHAN_CHECK_SECONDS, SUPERVISE_SECONDS
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.slack.web_api import SlackStandin
from tests.faults import deploy_web
from tests.support.api_proxy import ApiFaultProxy
from tests.support.bot_process import BotProcess, SlackDriver, message_text
from tests.support.kubectl import Kubectl
from tests.support.processes import process_tree, running, still_running
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def workers_of(bot: BotProcess) -> list[int]:
    """The bot's worker processes: its descendants that run in the idle scheduling class."""
    assert bot.proc is not None
    found = []
    for pid in process_tree(bot.proc.pid)[1:]:
        try:
            if os.sched_getscheduler(pid) == os.SCHED_IDLE:
                found.append(pid)
        except OSError:
            continue  # exited meanwhile
    return found


@pytest.fixture
def one_worker(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl
) -> tuple[BotProcess, SlackDriver, int]:
    """A bot with one worker process (its pid), and Deployment `web` at revision 1."""
    deploy_web(kubectl)
    bot = start_bot(env={"ROLLOUT_BOT_WORKERS": "1"})
    (worker,) = eventually("the worker process", lambda: workers_of(bot))
    return bot, SlackDriver(slack, bot), worker


def test_work_runs_in_an_idle_class_worker_and_a_killed_worker_is_replaced(
    one_worker: tuple[BotProcess, SlackDriver, int], granted_namespace: str
) -> None:
    bot, driver, worker = one_worker
    assert bot.proc is not None
    # The serving process keeps the normal class: it is the one Slack waits on.
    assert os.sched_getscheduler(bot.proc.pid) == os.SCHED_OTHER
    assert "web" in driver.ask(f"status web -n {granted_namespace}")

    os.kill(worker, signal.SIGKILL)
    # The next command is answered whether the replacement is up yet or not.
    assert "web" in driver.ask(f"status web -n {granted_namespace}")
    (replacement,) = eventually(
        "a replacement worker",
        lambda: [p for p in workers_of(bot) if p != worker] or None,
        SUPERVISE_SECONDS + 20,
    )
    assert replacement != worker
    assert "web" in driver.ask(f"history web -n {granted_namespace}")
    assert "Traceback" not in bot.logs()


def test_work_held_by_a_worker_that_dies_is_rerun_if_a_read_and_reported_if_a_change(
    one_worker: tuple[BotProcess, SlackDriver, int], kubectl: Kubectl, granted_namespace: str
) -> None:
    bot, driver, worker = one_worker
    os.kill(worker, signal.SIGSTOP)  # frozen: whatever it is handed now, it never finishes
    read, read_tag = driver.command(f"status web -n {granted_namespace}")
    change, change_tag = driver.command(f"restart web -n {granted_namespace}")
    assert (read.status, change.status) == (200, 200)  # acknowledged all the same
    os.kill(worker, signal.SIGKILL)

    # The read is answered by the bot itself ...
    answer = message_text(driver.reply(read_tag, timeout=SUPERVISE_SECONDS + 20).params)
    assert 'deployment "web" successfully rolled out' in answer
    # ... the change is not repeated blindly: its author is told to look first.
    notice = message_text(driver.reply(change_tag, timeout=10).params)
    assert "interrupted" in notice and "may or may not have taken effect" in notice
    assert f"/rollout restart web -n {granted_namespace}" in notice
    assert kubectl.history_revisions("web") == [1]  # the frozen worker never ran it
    assert "Traceback" not in bot.logs()


def test_sigterm_lets_a_worker_finish_the_change_it_holds(
    start_bot: Any,
    slack: SlackStandin,
    cluster: ClusterInfo,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
) -> None:
    deploy_web(kubectl)
    with ApiFaultProxy.for_cluster(cluster) as proxy:
        kubeconfig = proxy.kubeconfig_for(cluster.bot_kubeconfig, tmp_path / "via-proxy")
        bot = start_bot(kubeconfig=kubeconfig)
        driver = SlackDriver(slack, bot)
        # The restart's write takes a while: it is in the worker's hands when SIGTERM comes.
        proxy.delay(1.5, method="PATCH", path=r"/deployments/web$")
        response, _ = driver.command(f"restart web -n {granted_namespace}")
        assert response.status == 200
        proxy.wait_for("PATCH", r"/deployments/web$")
        stopping = time.monotonic()
        bot.stop()
        assert bot.proc is not None and bot.proc.returncode == 0, bot.logs()[-2000:]
        assert time.monotonic() - stopping < 10

    # The change was finished and announced, not cut off halfway.
    driver.wait(
        lambda: [
            c
            for c in slack.calls("chat.postMessage")
            if "restarted" in message_text(c.params) and granted_namespace in message_text(c.params)
        ],
        timeout=5,
        what="the restart announcement",
    )
    assert kubectl.history_revisions("web") == [1, 2]


def test_sigterm_with_a_stuck_worker_exits_and_tells_the_author_of_what_it_held(
    one_worker: tuple[BotProcess, SlackDriver, int], kubectl: Kubectl, granted_namespace: str
) -> None:
    bot, driver, worker = one_worker
    os.kill(worker, signal.SIGSTOP)  # stuck: it will never finish, nor act on SIGTERM
    response, tag = driver.command(f"restart web -n {granted_namespace}")
    assert response.status == 200
    stopping = time.monotonic()
    bot.stop()
    # Not cut short by the test's own SIGKILL after 10 s: the bot stopped by itself.
    assert bot.proc is not None and bot.proc.returncode == 0, bot.logs()[-2000:]
    assert time.monotonic() - stopping < 10
    assert not running(worker)
    # The notice went out before the bot exited: it is the only word the author gets.
    notice = message_text(driver.reply(tag, timeout=1).params)
    assert "interrupted" in notice and "may or may not have taken effect" in notice
    assert kubectl.history_revisions("web") == [1]
    assert "Traceback" not in bot.logs()


def test_a_killed_bot_leaves_no_process_behind(start_bot: Any, tmp_path: Path) -> None:
    bot = start_bot(env={"ROLLOUT_BOT_WORKERS": "2"})
    assert bot.proc is not None
    eventually("two worker processes", lambda: len(workers_of(bot)) == 2)
    tree = process_tree(bot.proc.pid)
    assert len(tree) >= 4  # serving process, forkserver, two workers

    bot.kill()

    eventually(
        "every process of the killed bot to exit",
        lambda: not still_running(tree),
        ORPHAN_CHECK_SECONDS + 15,
        detail=lambda: still_running(tree),
    )
