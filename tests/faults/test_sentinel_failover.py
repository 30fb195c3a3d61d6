"""The real bot on a real Redis primary, a real replica and three real Sentinels, with the local
control plane: changes and approvals keep coming while the primary is SIGKILLed at random
points, again and again. After every failover kubectl and `rollout-bot audit verify` check:

* the audit chain verifies;
* every change the cluster shows (each ReplicaSet's image) has its audit entry;
* nothing ran twice: at most one execution entry per change and per approval, no template was
  ever applied again (a ReplicaSet reused), and an exact replay of each signed request runs
  nothing;
* nothing approved comes back pending.

A replica paused with SIGSTOP makes changes wait for the WAIT bound, then refuse, saying the
audit trail could not be made durable; the cluster is untouched and the refused request never
runs later.

The figures (kills, changes attempted, run, refused, missing audit entries, double executions,
time from kill to the first change accepted again) are printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.adapters.redis.approvals import RedisApprovalStore
from bot.adapters.redis.audit import AuditEntry, RedisAuditLog
from bot.adapters.redis.keys import Keys
from bot.domain.approval import ApprovalState
from handlers.views.cards import APPROVE_ACTION
from tests.devkit.redis_sentinel import SentinelGroup
from tests.devkit.slack.signed_requests import send_raw, signed_headers, slash_command_payload
from tests.devkit.slack.web_api import SlackStandin
from tests.faults import assert_clean
from tests.support.bot_process import (
    ROLLOUT_BOT,
    SIGNING_SECRET,
    BotProcess,
    SlackDriver,
    message_text,
)
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.redis, pytest.mark.cluster]

CHANNEL = "C0DEPLOYS"
FIRST_IMAGE = "nginx:1.18-alpine"
KILLS = int(os.environ.get("FAILOVER_KILLS", "22"))
# The bound on each WAIT: a lagging replica costs a change this long, then it is refused.
WAIT_TIMEOUT = 1.0
REFUSED = "Nothing was changed"
NOT_DURABLE = "could not be made durable"
# Answers after this long count as lost (never seen in a passing run).
ANSWER_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as group:
        yield group


@pytest.fixture
def settled(group: SentinelGroup) -> SentinelGroup:
    for node in group.nodes:
        node.resume()
        if not node.running:
            group.rejoin(node)
    group.wait_settled()
    with group.primary().client() as client:
        client.flushall()
    group.wait_settled()
    return group


def deploy(kubectl: Kubectl, name: str) -> None:
    manifest = deployment_manifest(name, FIRST_IMAGE, replicas=1)
    # Every ReplicaSet is kept: each is a change the cluster shows, to be found in the audit.
    manifest["spec"]["revisionHistoryLimit"] = 1000
    kubectl.apply(manifest)
    assert kubectl.rollout_status(name).returncode == 0


@pytest.fixture
def sentinel_bot(start_bot: Any, settled: SentinelGroup) -> BotProcess:
    bot: BotProcess = start_bot(
        env={
            # Only the password and database of REDIS_URL count: the Sentinels name the host.
            "REDIS_URL": "redis://ignored.invalid:1/0",
            "REDIS_SENTINELS": settled.sentinels_env,
            "REDIS_SENTINEL_MASTER": settled.name,
            "ROLLOUT_BOT_REDIS_WAIT_TIMEOUT": str(WAIT_TIMEOUT),
            # Approved requests orphaned by a failover are picked up by the sweeper quickly.
            "ROLLOUT_BOT_APPROVAL_RESUME_AFTER": "3",
        }
    )
    return bot


# -- talking to the bot as Slack ----------------------------------------------------------------


@dataclass
class Sent:
    """A signed request as it went over the wire, so it can be replayed byte for byte."""

    body: bytes
    headers: dict[str, str]
    tag: str


def send_command(driver: SlackDriver, text: str, user: str = "U0ALICE") -> Sent:
    tag = f"fo{uuid.uuid4().hex[:10]}"
    fields = slash_command_payload(
        text, user, user.lower()[2:], CHANNEL, response_url=driver.slack.response_url(tag)
    )
    body = urllib.parse.urlencode(fields).encode()
    headers = signed_headers(SIGNING_SECRET, body)
    response = send_raw(driver.bot.events_url, body, headers)
    assert response.status == 200, (response.status, response.body)
    return Sent(body, headers, tag)


def replay(driver: SlackDriver, sent: Sent) -> None:
    response = send_raw(driver.bot.events_url, sent.body, sent.headers)
    assert response.status == 200, (response.status, response.body)


def answer(slack: SlackStandin, tag: str) -> str | None:
    for call in slack.calls("response_url"):
        if call.params.get("_tag") == tag:
            return message_text(call.params)
    return None


def channel_post_since(slack: SlackStandin, before: int, marker: str) -> str | None:
    for call in slack.calls("chat.postMessage")[before:]:
        text = message_text(call.params)
        if call.ok and marker in text:
            return text
    return None


@dataclass
class Attempt:
    kind: str  # "typed" or "approval"
    tag: str  # the image tag the change sets
    sent_at: float
    answered_at: float = 0.0
    answer: str = ""
    ran: bool = False
    refused: bool = False
    approval_id: str = ""
    requests: list[Sent] = field(default_factory=list)


class Traffic:
    """Changes and approvals, one after another, until stopped: a typed `set image` on `web`
    (no approval needed) and a `set image` on `api` in a prod namespace (approved by bob)."""

    def __init__(self, driver: SlackDriver, ns: str, prod: str) -> None:
        self.driver = driver
        self.ns = ns
        self.prod = prod
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counter = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(ANSWER_TIMEOUT * 3)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._counter += 1
            if self._counter % 2:
                self.typed()
            else:
                self.approval()

    def typed(self) -> Attempt:
        tag = f"w{uuid.uuid4().hex[:8]}"
        attempt = Attempt("typed", tag, time.monotonic())
        self.attempts.append(attempt)
        before = len(self.driver.slack.calls("chat.postMessage"))
        sent = send_command(self.driver, f"set image web web=nginx:{tag} -n {self.ns}")
        attempt.requests.append(sent)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            said = answer(self.driver.slack, sent.tag)
            if said is not None:
                attempt.answer, attempt.refused = said, REFUSED in said
                attempt.ran = "image updated" in said
                attempt.answered_at = time.monotonic()
                return attempt
            posted = channel_post_since(self.driver.slack, before, f"nginx:{tag}")
            if posted is not None:
                attempt.answer, attempt.ran = posted, "image updated" in posted
                attempt.answered_at = time.monotonic()
                return attempt
            time.sleep(0.05)
        attempt.answer = "(no answer)"
        return attempt

    def approval(self) -> Attempt:
        tag = f"a{uuid.uuid4().hex[:8]}"
        attempt = Attempt("approval", tag, time.monotonic())
        self.attempts.append(attempt)
        before_posts = len(self.driver.slack.calls("chat.postMessage"))
        sent = send_command(self.driver, f"set image api api=nginx:{tag} -n {self.prod}")
        attempt.requests.append(sent)
        card = None
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline and card is None:
            said = answer(self.driver.slack, sent.tag)
            if said is not None and REFUSED in said:
                attempt.answer, attempt.refused = said, True
                return attempt
            for call in self.driver.slack.calls("chat.postMessage")[before_posts:]:
                text = message_text(call.params)
                found = re.search(r"request `([A-Za-z0-9_-]+)`", text)
                if call.ok and found and f"nginx:{tag}" in text:
                    card = (found.group(1), str(call.response.get("ts", "")))
            time.sleep(0.05)
        if card is None:
            attempt.answer = "(no card)"
            return attempt
        attempt.approval_id, ts = card
        click = self._click(attempt.approval_id, ts)
        attempt.requests.append(click)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            said = answer(self.driver.slack, click.tag)
            if said is not None and REFUSED in said:
                attempt.answer, attempt.refused = said, True
                return attempt
            text = self._card(ts)
            if "*Done*" in text or "*Failed*" in text or "Voided" in text:
                attempt.answer = text
                attempt.ran = "*Done*" in text
                attempt.refused = not attempt.ran
                return attempt
            time.sleep(0.05)
        attempt.answer = "(no decision shown)"
        return attempt

    def _click(self, approval_id: str, ts: str) -> Sent:
        from tests.devkit.slack.signed_requests import block_action_payload

        tag = f"fc{uuid.uuid4().hex[:10]}"
        payload = block_action_payload(
            APPROVE_ACTION,
            approval_id,
            "U0BOB",
            CHANNEL,
            ts,
            response_url=self.driver.slack.response_url(tag),
            message={"ts": ts, "type": "message"},
            user_name="bob",
        )
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        headers = signed_headers(SIGNING_SECRET, body)
        response = send_raw(self.driver.bot.events_url, body, headers)
        assert response.status == 200, (response.status, response.body)
        return Sent(body, headers, tag)

    def _card(self, ts: str) -> str:
        for message in self.driver.slack.messages(CHANNEL):
            if message.ts == ts:
                return message_text({"text": message.text, "blocks": message.blocks})
        return ""


# -- the oracles ----------------------------------------------------------------------------------


def images_the_cluster_shows(kubectl: Kubectl, deployment: str) -> tuple[list[str], list[str]]:
    """The image tag of every ReplicaSet of `deployment`, and the ReplicaSets whose template
    was applied more than once (Kubernetes records the earlier revisions when one is reused)."""
    listed = kubectl.get("replicasets", "-l", f"app={deployment}")["items"]
    tags, reused = [], []
    for rs in listed:
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        tags.append(image.split(":", 1)[1])
        if "deployment.kubernetes.io/revision-history" in rs["metadata"].get("annotations", {}):
            reused.append(image)
    return tags, reused


def executions(entries: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in entries if e.event == "execution"]


def progress_verdict(slack: SlackStandin, tag: str) -> str | None:
    """The verdict line of the progress message in the thread of the change that set `tag`."""
    announcement = next(
        (
            str(call.response.get("ts", ""))
            for call in slack.calls("chat.postMessage")
            if call.ok
            and not call.params.get("thread_ts")
            and f"nginx:{tag}" in message_text(call.params)
        ),
        None,
    )
    if announcement is None:
        return None
    for message in slack.messages(CHANNEL):
        if message.thread_ts == announcement or message.ts == announcement:
            text = message_text({"text": message.text, "blocks": message.blocks})
            if "rollout *succeeded*" in text or "rollout *failed*" in text:
                return text
    return None


def executed_tags(group: SentinelGroup) -> Counter[str]:
    """How many execution entries name each change's image tag."""
    with group.primary().client(decode_responses=False) as client:
        runs = executions(list(RedisAuditLog(client, Keys()).export()))
    return Counter(
        tag
        for entry in runs
        for tag in re.findall(r"nginx:([aw][0-9a-f]{8})", entry.parameters.get("command", ""))
    )


def quiet(group: SentinelGroup, timeout: float = 60) -> Counter[str]:
    """The executions once no new one has appeared for 3 s (the bot has finished what it was
    sent)."""
    last = executed_tags(group)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(3.0)
        now = executed_tags(group)
        if now == last:
            return now
        last = now
    return last


def audit_verify(bot: BotProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROLLOUT_BOT), "audit", "verify"],
        env=bot.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Figures:
    kills: int = 0
    attempted: int = 0
    ran: int = 0
    refused: int = 0
    unanswered: int = 0
    audit_missing: int = 0
    double_executions: int = 0
    came_back_pending: int = 0
    recovery: list[float] = field(default_factory=list)

    def report(self) -> str:
        recovery = sorted(self.recovery)
        return (
            f"kills={self.kills} changes attempted={self.attempted} run={self.ran} "
            f"refused={self.refused} unanswered={self.unanswered} "
            f"audit entries missing={self.audit_missing} "
            f"double executions={self.double_executions} "
            f"approved then pending={self.came_back_pending} "
            f"kill->first change accepted: median {statistics.median(recovery):.1f}s "
            f"max {recovery[-1]:.1f}s"
        )


def check_invariants(
    bot: BotProcess,
    group: SentinelGroup,
    web: Kubectl,
    api: Kubectl,
    traffic: Traffic,
    figures: Figures,
    approved_once: set[str],
) -> None:
    # The cluster first, the audit after: an entry is written before its change is made, so
    # every change listed now has its entry by the time the audit is read.
    shown: list[str] = []
    for kubectl, deployment in ((web, "web"), (api, "api")):
        tags, reused = images_the_cluster_shows(kubectl, deployment)
        shown += [t for t in tags if t != FIRST_IMAGE.split(":", 1)[1]]
        assert not reused, f"a template was applied twice: {reused}"

    verified = audit_verify(bot)
    assert verified.returncode == 0, f"audit verify failed:\n{verified.stdout}\n{verified.stderr}"

    with group.primary().client(decode_responses=False) as client:
        entries = list(RedisAuditLog(client, Keys()).export())
        store = RedisApprovalStore(client, Keys())
        states = {
            a.approval_id: store.get(a.approval_id) for a in traffic.attempts if a.approval_id
        }
    runs = executions(entries)

    # Every change the cluster shows has its audit entry.
    audited = {
        tag
        for tag in shown
        for entry in runs
        if f"nginx:{tag}" in entry.parameters.get("command", "")
    }
    missing = sorted(set(shown) - audited)
    figures.audit_missing = len(missing)
    assert not missing, f"changes the cluster shows without an audit entry: {missing}"

    # Nothing ran twice.
    per_change = Counter(
        tag
        for entry in runs
        for tag in re.findall(r"nginx:([aw][0-9a-f]{8})", entry.parameters.get("command", ""))
    )
    per_approval = Counter(entry.approval_id for entry in runs if entry.approval_id)
    doubles = [t for t, n in per_change.items() if n > 1] + [
        a for a, n in per_approval.items() if n > 1
    ]
    figures.double_executions = len(doubles)
    assert not doubles, f"executed more than once: {doubles}"

    # Nothing approved comes back pending.
    for approval_id, request in states.items():
        if request is None:
            continue
        if request.state is not ApprovalState.PENDING:
            approved_once.add(approval_id)
        elif approval_id in approved_once:
            figures.came_back_pending += 1
    assert figures.came_back_pending == 0


@pytest.mark.timeout(1200)
def test_changes_and_approvals_survive_repeated_primary_kills(
    sentinel_bot: BotProcess,
    settled: SentinelGroup,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    admin_kubectl: Kubectl,
    prod_namespace: str,
) -> None:
    group = settled
    web = kubectl
    api = admin_kubectl.in_namespace(prod_namespace)
    deploy(web, "web")
    deploy(api, "api")
    driver = SlackDriver(slack, sentinel_bot)
    traffic = Traffic(driver, granted_namespace, prod_namespace)
    figures = Figures()
    approved_once: set[str] = set()
    rng = random.Random(int(os.environ.get("FAILOVER_SEED", "27")))
    # Each failover also needs the killed node back (as Kubernetes restarts its pod): the
    # promoted replica has no replica of its own until then, and MIN_REPLICAS is 1.
    for _ in range(KILLS):
        traffic.start()
        time.sleep(rng.uniform(0.2, 2.0))  # a random point in the traffic
        killed = group.kill_primary()
        killed_at = time.monotonic()
        figures.kills += 1
        group.wait_for_failover(killed)
        group.rejoin(killed)
        first = None
        while first is None and time.monotonic() - killed_at < 60:
            first = next(
                (
                    a
                    for a in list(traffic.attempts)
                    if a.kind == "typed" and a.sent_at > killed_at and a.ran
                ),
                None,
            )
            time.sleep(0.05)
        traffic.stop()
        assert first is not None, f"no change accepted within 60 s of kill {figures.kills}"
        figures.recovery.append(first.answered_at - killed_at)
        check_invariants(sentinel_bot, group, web, api, traffic, figures, approved_once)

    # A rollout being tracked when the primary dies is still followed to its verdict.
    traffic.stop()
    tracked = traffic.typed()
    assert tracked.ran, tracked.answer
    killed = group.kill_primary()
    figures.kills += 1
    group.wait_for_failover(killed)
    group.rejoin(killed)
    verdict = driver.wait(
        lambda: progress_verdict(slack, tracked.tag), timeout=60, what="the rollout's verdict"
    )
    assert "succeeded" in verdict, verdict
    check_invariants(sentinel_bot, group, web, api, traffic, figures, approved_once)

    # An exact replay of every signed request (commands and clicks) runs nothing that ran
    # already: the replay guard's record survived every failover with the change it guards.
    # (A request that was refused and so never ran may run once on its replay.)
    ran_before = executed_tags(group)
    for attempt in traffic.attempts:
        for sent in attempt.requests:
            replay(driver, sent)
    ran_after = quiet(group)
    again = {tag for tag in ran_before if ran_after[tag] > ran_before[tag]}
    assert not again, f"a replayed request ran a change again: {sorted(again)}"
    check_invariants(sentinel_bot, group, web, api, traffic, figures, approved_once)

    figures.attempted = len(traffic.attempts)
    figures.ran = sum(a.ran for a in traffic.attempts)
    figures.refused = sum(a.refused for a in traffic.attempts)
    figures.unanswered = sum(a.answer.startswith("(no") for a in traffic.attempts)
    others = Counter(
        a.answer.splitlines()[0][:80] if a.answer else "(empty)"
        for a in traffic.attempts
        if not a.ran and not a.refused
    )
    approvals = [a for a in traffic.attempts if a.kind == "approval"]
    print(
        f"\n[sentinel failover] {figures.report()}\n"
        f"of which approvals: attempted={len(approvals)} run={sum(a.ran for a in approvals)} "
        f"refused={sum(a.refused for a in approvals)}; neither run nor refused: {dict(others)}"
    )
    assert figures.kills == KILLS + 1
    assert figures.ran > figures.kills, figures.report()
    for attempt in traffic.attempts:
        assert_clean(attempt.answer)
        assert "Something went wrong" not in attempt.answer, attempt.answer
    assert_clean(sentinel_bot.logs())


@pytest.fixture(params=["sentinel", "primary-url"])
def lag_bot(request: pytest.FixtureRequest, start_bot: Any, settled: SentinelGroup) -> BotProcess:
    """The bot through the Sentinels, or (no Sentinel) with REDIS_URL naming the primary and
    ROLLOUT_BOT_REDIS_MIN_REPLICAS=1: the same durability either way."""
    if request.param == "sentinel":
        bot: BotProcess = request.getfixturevalue("sentinel_bot")
        return bot
    return start_bot(  # type: ignore[no-any-return]
        env={
            "REDIS_URL": settled.primary().url,
            "ROLLOUT_BOT_REDIS_MIN_REPLICAS": "1",
            "ROLLOUT_BOT_REDIS_WAIT_TIMEOUT": str(WAIT_TIMEOUT),
            "ROLLOUT_BOT_APPROVAL_RESUME_AFTER": "3",
        }
    )


@pytest.mark.timeout(300)
def test_a_lagging_replica_makes_changes_wait_then_refuse_never_run_unaudited(
    lag_bot: BotProcess,
    settled: SentinelGroup,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    admin_kubectl: Kubectl,
    prod_namespace: str,
) -> None:
    group = settled
    deploy(kubectl, "web")
    api = admin_kubectl.in_namespace(prod_namespace)
    deploy(api, "api")
    driver = SlackDriver(slack, lag_bot)
    traffic = Traffic(driver, granted_namespace, prod_namespace)
    # A card to approve while the replica lags.
    before_posts = len(slack.calls("chat.postMessage"))
    send_command(driver, f"set image api api=nginx:lag1 -n {prod_namespace}")
    card = driver.wait(
        lambda: next(
            (
                (found.group(1), str(call.response.get("ts", "")))
                for call in slack.calls("chat.postMessage")[before_posts:]
                if call.ok
                and (found := re.search(r"request `([A-Za-z0-9_-]+)`", message_text(call.params)))
            ),
            None,
        ),
        what="the approval card",
    )

    replica = group.replicas()[0]
    replica.pause()
    try:
        started = time.monotonic()
        typed = traffic.typed()
        waited = time.monotonic() - started
        click = traffic._click(card[0], card[1])
        refused_click = driver.wait(lambda: answer(slack, click.tag), what="the click's answer")
        # The bot's own readiness says what it waits for.
        status, body = _readyz(lag_bot)
    finally:
        replica.resume()

    assert not typed.ran and NOT_DURABLE in typed.answer and REFUSED in typed.answer, typed.answer
    # It waited for the replica (the WAIT bound), then refused: well inside Slack's patience.
    assert WAIT_TIMEOUT <= waited < WAIT_TIMEOUT * 3 + 3.0, f"answered after {waited:.1f}s"
    assert NOT_DURABLE in refused_click and REFUSED in refused_click, refused_click
    assert status == 200 and "redis_waiting_for" in body, body
    assert kubectl.images("web") == {"web": FIRST_IMAGE}
    assert api.images("api") == {"api": FIRST_IMAGE}

    # The refused approval never runs later, even once the replica is back and the sweeper
    # (ROLLOUT_BOT_APPROVAL_RESUME_AFTER=3) has had its chance.
    group.wait_settled()
    time.sleep(8.0)
    assert api.images("api") == {"api": FIRST_IMAGE}
    with group.primary().client(decode_responses=False) as client:
        request = RedisApprovalStore(client, Keys()).get(card[0])
        runs = executions(list(RedisAuditLog(client, Keys()).export()))
    assert request is not None
    assert request.state in (ApprovalState.PENDING, ApprovalState.FAILED), request.state
    assert not [e for e in runs if e.approval_id == card[0]]
    assert not [e for e in runs if typed.tag in e.parameters.get("command", "")]
    # With the replica back, changes run again.
    again = traffic.typed()
    assert again.ran, again.answer


def _readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    from tests.faults import probe

    deadline = time.monotonic() + 5
    while True:
        status, body = probe(bot, "/readyz")
        if "redis_waiting_for" in body or time.monotonic() > deadline:
            return status, body
        time.sleep(0.3)
