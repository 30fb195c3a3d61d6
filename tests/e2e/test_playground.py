"""`rollout-bot playground` in a real browser: request as alice, approve as bob, watch it roll out.

The playground runs as a user would start it, against the session's control plane (through
PLAYGROUND_KUBECONFIG, so no second cluster), and kubectl checks what it did. Screenshots of the
approval card and of the finished progress message, at 1280x800 and 420 px wide, are saved
under test-artifacts/playground/ for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.devkit.control_plane import ClusterInfo
from tests.devkit.loopback import free_port
from tests.support.kubectl import Kubectl
from tests.support.processes import process_tree, still_running
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("PLAYGROUND_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts" / "playground"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROGRESS = re.compile(r"rolling out|rollout succeeded|rollout failed")
COMMAND = "/rollout set image web nginx=nginx:1.19-alpine -n prod"


@dataclass
class RunningPlayground:
    proc: subprocess.Popen[str]
    url: str
    log_dir: Path
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)

    def page_url(self) -> str:
        """The address the playground printed for a person to open (it carries the run's
        token), as that person would copy it from the terminal."""
        found = eventually(
            "the playground to print the page's address",
            lambda: re.search(r"open (http://\S+#token=\S+)", self.text()),
            30,
        )
        return str(found.group(1))

    def children(self) -> list[int]:
        """Processes the playground started (bot, redis-server), from /proc."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found


def assert_no_horizontal_overflow(page: Any) -> None:
    """Nothing wider than the window: long image names and code wrap."""
    overflow = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            return [...document.querySelectorAll('.msg *')]
                .filter(e => e.getBoundingClientRect().right > width + 1 && e.offsetParent)
                .map(e => e.className || e.tagName).slice(0, 5);
        }"""
    )
    assert overflow == [], f"elements wider than the window: {overflow}"


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def playground(cluster: ClusterInfo, tmp_path: Path) -> Iterator[RunningPlayground]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLOUT_BOT_"))}
    env.update(
        PLAYGROUND_KUBECONFIG=str(cluster.kubeconfig),
        PLAYGROUND_LOG_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    env.pop("CLUSTER_DIR", None)
    executable = Path(sys.executable).with_name("rollout-bot")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "bot"]
    proc = subprocess.Popen(
        [*command, "playground", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningPlayground(proc, f"http://127.0.0.1:{port}", tmp_path)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            running.output.append(line)

    threading.Thread(target=pump, daemon=True).start()
    started = time.monotonic()
    while not _healthy(running.url + "/healthz"):
        if proc.poll() is not None or time.monotonic() - started > 120:
            proc.kill()
            pytest.fail(f"the playground did not start:\n{running.text()}")
        time.sleep(0.2)
    try:
        yield running
    finally:
        if proc.poll() is None:  # the test failed before stopping it: stop it as Ctrl-C would
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_request_approve_and_watch_the_rollout(
    playground: RunningPlayground, admin_kubectl: Kubectl
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    prod = admin_kubectl.in_namespace("prod")
    assert prod.images("web") == {"nginx": "nginx:1.18-alpine"}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(playground.page_url())

        page.click("#channel-list button[data-channel=C0PROD]")
        page.click("#switcher button[data-user=U0ALICE]")
        expect(page.locator("#channel-name")).to_have_text("# prod")
        page.fill("#composer-input", COMMAND)
        page.press("#composer-input", "Enter")

        card = page.locator(".msg", has_text="Waiting for approval").first
        expect(card).to_be_visible(timeout=30_000)
        expect(card).to_contain_text("nginx:1.19-alpine")
        expect(card.locator(".mention", has_text="@alice").first).to_be_visible()
        card_id = card.get_attribute("data-id")

        page.click("#switcher button[data-user=U0BOB]")
        card = page.locator(f'.msg[data-id="{card_id}"]')
        approve = card.locator("button[data-action-id=rollout_approve]")
        expect(approve).to_be_visible(timeout=15_000)
        for width in (1280, 420):
            page.set_viewport_size({"width": width, "height": 800})
            card.evaluate("node => node.scrollIntoView({block: 'start'})")
            card.screenshot(path=str(ARTIFACTS / f"card-{width}.png"))
            page.screenshot(path=str(ARTIFACTS / f"page-card-{width}.png"))
            assert_no_horizontal_overflow(page)
        page.set_viewport_size({"width": 1280, "height": 800})

        approve.click()
        dialog = page.locator("#confirm")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Approve this change?")
        page.screenshot(path=str(ARTIFACTS / "confirm-1280.png"))
        page.click("#confirm-ok")
        expect(dialog).to_be_hidden()

        progress = card.locator(".thread-replies .msg", has_text="rollout succeeded")
        expect(progress).to_be_visible(timeout=90_000)
        # Updated in place (chat.update), not posted again: one progress message, edited.
        progress_messages = card.locator(".thread-replies .msg", has_text=PROGRESS)
        expect(progress_messages).to_have_count(1)
        expect(progress.locator(".msg-edited")).to_be_visible()
        expect(card).to_contain_text("approved by")
        # The finished card says what happened, not what was pending; no buttons are left.
        expect(card).not_to_contain_text("wants to run")
        expect(card.locator("button[data-action-id=rollout_approve]")).to_have_count(0)

        assert prod.images("web") == {"nginx": "nginx:1.19-alpine"}
        assert prod.rollout_status("web").returncode == 0

        progress.scroll_into_view_if_needed()
        progress.screenshot(path=str(ARTIFACTS / "progress-1280.png"))
        page.screenshot(path=str(ARTIFACTS / "page-done-1280.png"))

        page.set_viewport_size({"width": 420, "height": 800})
        progress.evaluate("node => node.scrollIntoView({block: 'end'})")
        progress.screenshot(path=str(ARTIFACTS / "progress-420.png"))
        page.screenshot(path=str(ARTIFACTS / "page-done-420.png"))
        assert_no_horizontal_overflow(page)
        assert errors == []
        browser.close()

    children = playground.children()
    assert children, "the playground should have started the bot and redis-server"
    playground.proc.send_signal(signal.SIGTERM)
    assert playground.proc.wait(30) == 0
    time.sleep(0.2)
    output = playground.text()
    assert "stopped; nothing left running" in output
    assert "Traceback" not in output
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert left == [], f"still running after the playground stopped: {left}"
    bot_log = (playground.log_dir / "bot.log").read_text()
    assert "Traceback" not in bot_log and "xoxb-" not in bot_log


def _post(url: str, body: dict[str, Any], token: str | None) -> int:
    """A POST as another process on this machine would send it."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Playground-Token"] = token
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_only_the_page_with_this_runs_token_may_use_its_api(
    playground: RunningPlayground, admin_kubectl: Kubectl
) -> None:
    """Another local process cannot act as alice: the page's API wants the token that only
    the printed address carries, and the demo policy covers the demo namespaces only."""
    token = playground.page_url().rsplit("#token=", 1)[1]
    staging = admin_kubectl.in_namespace("staging")
    body = {"user": "U0ALICE", "channel": "C0STAGING", "text": "/rollout scale web --replicas=1"}
    for forged in (None, "", "x" * len(token), token[:-1]):
        assert _post(playground.url + "/api/command", body, forged) == 401, forged
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(playground.url + "/api/bootstrap", timeout=10)
    assert refused.value.code == 401
    time.sleep(1)
    assert staging.get("deployment/web")["spec"]["replicas"] == 3
    # The page itself (with the token) runs it.
    assert _post(playground.url + "/api/command", body, token) == 200
    eventually(
        "the page's scale to run",
        lambda: staging.get("deployment/web")["spec"]["replicas"] == 1,
        30,
    )
    # Alice may do anything in the demo namespaces, and nothing elsewhere.
    outside = {**body, "text": "/rollout restart coredns -n kube-system"}
    assert _post(playground.url + "/api/command", outside, token) == 200
    eventually(
        "the refusal outside the demo namespaces",
        lambda: (
            (seen := playground_replies(token, playground))
            and "not allowed" in seen
            and "kube-system" in seen
        ),
        30,
    )


def playground_replies(token: str, playground: RunningPlayground) -> str:
    """What alice sees in #staging, through the page's API."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        playground.url + "/api/state?channel=C0STAGING&user=U0ALICE",
        headers={"X-Playground-Token": token},
    )
    with opener.open(request, timeout=30) as reply:
        return reply.read().decode()


def test_a_killed_playground_leaves_nothing_running(playground: RunningPlayground) -> None:
    # The bot (with its forkserver and workers) and redis-server, every descendant.
    started = process_tree(playground.proc.pid)[1:]
    assert len(started) >= 3, playground.text()
    playground.proc.kill()  # SIGKILL: no handler runs, nothing is stopped in order
    playground.proc.wait()

    eventually(
        "every process the playground started to exit",
        lambda: not still_running(started),
        20,
        detail=lambda: still_running(started),
    )
