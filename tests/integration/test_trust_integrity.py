"""Integrity at the trust boundary, through the real bot process, a real Redis and the local
control plane: an audit trail swapped for an unsigned forgery, approval fields edited outside
their seal, a policy reload that start-up would refuse, a policy edit racing the reloader, and a
replay check that cannot answer. Each attack is made as someone with write access to Redis (or
to the policy file, or to the network path to Redis) would make it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.adapters.redis.audit import AuditEvent, RedisAuditLog
from bot.adapters.redis.keys import Keys
from handlers.views.cards import APPROVE_ACTION
from tests.conftest import TEST_POLICY
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.signed_requests import send_raw, signed_headers, slash_command_payload
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import (
    ROLLOUT_BOT,
    SIGNING_SECRET,
    BotProcess,
    SlackDriver,
    bot_env,
    message_text,
)
from tests.support.kubectl import Kubectl, deployment_manifest
from tests.support.redis_stall import StallingProxy

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(150)]

AUDIT_KEY = "audit-key-for-the-trust-boundary-tests-0123456789"
OLD_IMAGE = "nginx:1.18-alpine"
NEW_IMAGE = "nginx:1.19-alpine"


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def prod(admin_kubectl: Kubectl, prod_namespace: str) -> Kubectl:
    kubectl = admin_kubectl.in_namespace(prod_namespace)
    kubectl.apply(deployment_manifest("web", OLD_IMAGE, replicas=1, container="nginx"))
    assert kubectl.rollout_status("web").returncode == 0
    return kubectl


@pytest.fixture
def web(kubectl: Kubectl, granted_namespace: str) -> str:
    kubectl.apply(deployment_manifest("web", OLD_IMAGE, replicas=1))
    assert kubectl.rollout_status("web").returncode == 0
    return granted_namespace


def scrape(bot: BotProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(bot: BotProcess, name: str, **labels: str) -> float:
    return scrape(bot).get((name, tuple(sorted(labels.items()))), 0.0)


def readyz(bot: BotProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/readyz", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def eventually(what: str, predicate: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROLLOUT_BOT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def card_versions(slack: SlackStandin, channel: str, ts: str) -> list[str]:
    for message in slack.messages(channel):
        if message.ts == ts:
            return [message_text(version) for version in message.versions]
    return []


# -- 1. the audit trail swapped for an unsigned one ----------------------------------------------


def test_a_keyed_audit_trail_swapped_for_an_unsigned_forgery_fails_and_takes_no_changes(
    start_bot: Any,
    slack: SlackStandin,
    redis_server: RedisServer,
    redis_url: str,
    kubectl: Kubectl,
    web: str,
) -> None:
    client = redis_server.client()
    keys = Keys()
    keyed = {"ROLLOUT_BOT_AUDIT_HMAC_KEY": AUDIT_KEY}
    bot = start_bot(env=keyed)
    driver = SlackDriver(slack, bot)
    assert "restarted" in driver.run(f"restart web -n {web}")
    assert kubectl.history_revisions("web") == [1, 2]
    bot.stop()
    genuine = RedisAuditLog(client, keys, hmac_key=AUDIT_KEY.encode()).verify()
    assert genuine.ok and genuine.keyed_from == 1

    # The attack: delete the stream, the head and the anchor; write entries hashed with plain
    # SHA-256 and no key id, chained from genesis, with a head that matches.
    client.delete(keys.audit, keys.audit_head, keys.audit_anchor)
    forger = RedisAuditLog(client, keys)
    for n in range(3):
        forger.append(AuditEvent(event="execution", user_id="U0MALLORY", outcome=f"forged {n}"))

    env = bot.env
    verify = cli(env, "audit", "verify")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    problem = json.loads(verify.stdout)["problem"]
    assert "entry seq 1 is not signed" in problem, problem
    # An operator who vouches for an unsigned prefix names where it ends.
    assert cli(env, "audit", "verify", "--unsigned-before", "4").returncode == 0

    bot = start_bot(env=keyed)
    driver = SlackDriver(slack, bot)
    # The periodic check (it runs at start-up): metric 0 and an ERROR line naming the seq.
    eventually("the start-up verification", lambda: metric(bot, "rollout_bot_audit_verify_ok") == 0)
    eventually(
        "the ERROR line", lambda: re.search(r"ERROR.*failed verification.*seq 1 is not", bot.logs())
    )
    said = driver.run(f"restart web -n {web}")
    assert "audit trail failed its integrity check" in said and "Nothing was changed" in said
    time.sleep(1.5)
    assert kubectl.history_revisions("web") == [1, 2]
    # Nothing was signed on top of the forgery, and reads go on.
    assert client.xlen(keys.audit) == 3 and "mac" not in client.hgetall(keys.audit_head)
    assert "web" in driver.ask(f"status web -n {web}")
    assert "refusing to append" in bot.logs()


# -- 2. approval fields outside the seal ---------------------------------------------------------

ROUTED = TEST_POLICY.replace(
    "  C0DEPLOYS: {namespace: default}\n",
    "  C0DEPLOYS: {namespace: default}\n  C0APPROVE: {namespaces: [staging-*]}\n",
).replace("ttl: 30m", "ttl: 30m\n    channel: C0APPROVE")


def test_a_request_whose_card_goes_to_the_approvers_channel_is_rechecked_for_the_requesters(
    start_bot: Any,
    slack: SlackStandin,
    redis_server: RedisServer,
    prod: Kubectl,
    prod_namespace: str,
    tmp_path: Path,
) -> None:
    """The approvers' channel is bound to other namespaces: it is not where the request was
    made, so the check just before the change runs must not be made for it."""
    policy = tmp_path / "routed.yaml"
    policy.write_text(ROUTED)
    bot = start_bot(policy=policy)
    requester = SlackDriver(slack, bot, channel="C0DEPLOYS")
    _, tag = requester.command(f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    said = message_text(requester.reply(tag).params)
    found = re.search(r"Approval requested \(`([A-Za-z0-9_-]+)`\)", said)
    assert found and "<#C0APPROVE>" in said, said
    (card,) = [m for m in slack.messages("C0APPROVE") if m.thread_ts is None]

    approver = SlackDriver(slack, bot, channel="C0APPROVE")
    approver.click(APPROVE_ACTION, found.group(1), user="U0BOB", message_ts=card.ts)

    versions = eventually(
        "the card to end",
        lambda: [
            v for v in card_versions(slack, "C0APPROVE", card.ts) if "Done" in v or "Voided" in v
        ],
    )
    assert "Done" in versions[-1], versions[-1]
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    # Posting the card elsewhere never overwrote where the request was made.
    stored = json.loads(redis_server.client().get(Keys().approval(found.group(1))))
    assert (stored["channel"], stored["card_channel"]) == ("C0DEPLOYS", "C0APPROVE")


def test_approval_fields_edited_in_redis_are_refused_or_withheld(
    start_bot: Any,
    slack: SlackStandin,
    redis_server: RedisServer,
    prod: Kubectl,
    prod_namespace: str,
) -> None:
    bot = start_bot()
    driver = SlackDriver(slack, bot)
    client = redis_server.client()

    def request() -> tuple[str, str, str]:
        before = {m.ts for m in slack.messages("C0DEPLOYS")}
        said = driver.run(f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
        found = re.search(r"request `([A-Za-z0-9_-]+)`", said)
        assert found, said
        (card,) = [m for m in slack.messages("C0DEPLOYS") if m.ts not in before]
        return found.group(1), card.ts, Keys().approval(found.group(1))

    # The requester's name and channel are under the seal: an edit voids the request.
    approval_id, ts, key = request()
    record = json.loads(client.get(key))
    record["requester_name"] = "bob (security team, pre-approved)"
    record["channel"] = "C0ELSEWHERE"
    client.set(key, json.dumps(record), keepttl=True)
    driver.click(APPROVE_ACTION, approval_id, user="U0BOB", message_ts=ts)
    eventually(
        "the void", lambda: any("Voided" in v for v in card_versions(slack, "C0DEPLOYS", ts))
    )
    time.sleep(1)
    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]

    # A result message (and a decision) written into Redis is never shown on the card.
    approval_id, ts, key = request()
    record = json.loads(client.get(key))
    record.update(
        state="voided",
        result_message="<!channel> rollback approved by security, run `/rollout undo` now",
        decided_by="U0BOB",
        reject_reason="forged",
    )
    client.set(key, json.dumps(record), keepttl=True)
    driver.click(APPROVE_ACTION, approval_id, user="U0BOB", message_ts=ts)
    shown = eventually(
        "the redraw",
        lambda: [v for v in card_versions(slack, "C0DEPLOYS", ts) if "Voided" in v],
    )
    assert "<!channel>" not in shown[-1] and "withheld" in shown[-1], shown[-1]


# -- 3. a reload that start-up would refuse -------------------------------------------------------

WITHOUT_APPROVALS = TEST_POLICY[: TEST_POLICY.index("approvals:")]


def test_a_reload_that_start_up_would_refuse_keeps_the_last_good_policy(
    cluster: ClusterInfo,
    slack: SlackStandin,
    redis_url: str,
    prod: Kubectl,
    prod_namespace: str,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(WITHOUT_APPROVALS)
    env = bot_env(
        slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=policy
    )
    del env["ROLLOUT_BOT_STATE_KEY"]  # fine at start: the policy has no approval rule
    env["ROLLOUT_BOT_POLICY_RELOAD_INTERVAL"] = "0.5"
    bot = BotProcess(env, tmp_path / "bot.log")
    bot.start()
    try:
        policy.write_text(TEST_POLICY)  # adds an approval rule for prod-*

        body = eventually(
            "the refusal in /readyz", lambda: (b := readyz(bot)).get("policy") == "invalid" and b
        )
        # The Slack port says only "invalid"; the problem itself is in the log and `check`.
        assert "policy_problems" not in body
        assert re.search(
            rf"ERROR.*policy not reloaded: {re.escape(str(policy))}.*STATE_KEY", bot.logs()
        )
        assert metric(bot, "rollout_bot_policy_reloads_total", result="invalid") == 1
        assert metric(bot, "rollout_bot_policy_reloads_total", result="applied") == 0
        assert re.search(r"ERROR.*policy not reloaded.*ROLLOUT_BOT_STATE_KEY", bot.logs())
        check = cli(env, "check")
        assert check.returncode == 1 and "ROLLOUT_BOT_STATE_KEY" in check.stderr, check.stderr
        # The last good policy (no approvals) stays in force in every process: no card.
        time.sleep(1.5)
        said = SlackDriver(slack, bot).run(f"scale web --replicas=2 -n {prod_namespace}")
        assert "scaled" in said and "Approval requested" not in said, said
    finally:
        bot.stop()
    assert "Traceback" not in bot.logs()


# -- 4. the bytes hashed are the bytes parsed -----------------------------------------------------

GRANTED = TEST_POLICY.replace("[U0ALICE, U0CAROL, S0DEVS]", "[U0ALICE, U0CAROL, U0MALLORY]")
REVOKED = TEST_POLICY


class PolicyPipe:
    """The policy file as a named pipe: each open reads what `next_versions` says, so an edit
    can land exactly between two reads of one reload, every time."""

    def __init__(self, path: Path, first: str) -> None:
        self.path = path
        os.mkfifo(path)
        self.versions: list[str] = []
        self.steady = first
        self.opens = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            fd = os.open(self.path, os.O_WRONLY)  # waits for the next reader
            text = self.versions.pop(0) if self.versions else self.steady
            self.opens += 1
            try:
                os.write(fd, text.encode())
            except OSError:
                pass  # the reader went away (stop())
            finally:
                os.close(fd)
            # The reader sees the end of the file only once no writer has the pipe open: give it
            # time to read to the end before the next version is offered.
            time.sleep(0.3)

    def stop(self) -> None:
        self._stop = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # frees a writer waiting to open
        time.sleep(0.1)
        os.close(fd)


def test_the_policy_in_force_is_the_one_whose_digest_was_audited(
    start_bot: Any,
    slack: SlackStandin,
    redis_server: RedisServer,
    kubectl: Kubectl,
    web: str,
    tmp_path: Path,
) -> None:
    """An edit lands between the reloader's reads: the revoked version is hashed (and audited as
    applied) while the granting one is parsed. Reading the file once makes that impossible."""
    pipe = PolicyPipe(tmp_path / "piped-policy.yaml", GRANTED)
    bot: BotProcess | None = None
    try:
        bot = start_bot(
            policy=pipe.path,
            env={"ROLLOUT_BOT_WORKERS": "0", "ROLLOUT_BOT_POLICY_RELOAD_INTERVAL": "0.5"},
        )
        driver = SlackDriver(slack, bot)
        mallory = {"user": "U0MALLORY", "name": "mallory"}
        assert "scaled" in driver.run(f"scale web --replicas=2 -n {web}", **mallory)

        # The revocation, with the old version served once more right after it, then for good
        # the revocation again: what a reader that looks twice per reload sees mid-edit.
        pipe.versions = [REVOKED, GRANTED]
        pipe.steady = REVOKED
        revoked = hashlib.sha256(REVOKED.encode()).hexdigest()
        audit = RedisAuditLog(redis_server.client(), Keys())

        def reloads() -> list[str]:
            return [e.parameters["sha256"] for e in audit.export() if e.event == "policy_reload"]

        def settled() -> bool:
            before = reloads()
            time.sleep(2)  # four more looks at the file
            return bool(before) and before == reloads() and before[-1] == revoked

        eventually("the reloads to settle on the revocation", settled)
        said = driver.run(f"scale web --replicas=3 -n {web}", **mallory)
        assert "not allowed" in said, f"the audited policy revokes mallory, yet: {said}"
    finally:
        if bot is not None:
            bot.stop()  # before the pipe: a reader of a pipe with no writer waits forever
        pipe.stop()


# -- 6. the replay check fails closed -------------------------------------------------------------


def test_a_replayed_change_is_refused_when_redis_cannot_confirm_it_is_new(
    start_bot: Any,
    slack: SlackStandin,
    redis_server: RedisServer,
    redis_url: str,
    kubectl: Kubectl,
    web: str,
) -> None:
    proxy = StallingProxy(redis_server, b":event:")
    try:
        bot = start_bot(env={"REDIS_URL": proxy.url})
        driver = SlackDriver(slack, bot)
        payload = slash_command_payload(
            f"restart web -n {web}", response_url=slack.response_url("captured")
        )
        body = urllib.parse.urlencode(payload).encode()
        headers = signed_headers(SIGNING_SECRET, body)
        assert send_raw(bot.events_url, body, headers).status == 200
        kubectl.wait_for(lambda: kubectl.history_revisions("web") == [1, 2], what="the restart")
        time.sleep(1.5)  # a second restart would be allowed by then (kubectl's 1 s rule)

        # Redis stalls (a fork, an AOF rewrite) just for the replay check; the audit writes work.
        proxy.stall.set()
        started = time.monotonic()
        assert send_raw(bot.events_url, body, headers).status == 200
        refusal = eventually(
            "the refusal",
            lambda: [
                message_text(c.params)
                for c in slack.calls("response_url")
                if c.params.get("_tag") == "captured" and "state store" in message_text(c.params)
            ],
            timeout=15,
        )
        answered = time.monotonic() - started
        assert "Nothing was changed" in refusal[0] and "state store" in refusal[0], refusal[0]
        assert answered < 2.0 + 3.0, f"took {answered:.1f}s (the audit writes' 2 s timeout)"
        time.sleep(1.5)
        assert kubectl.history_revisions("web") == [1, 2]
        # A read still runs without the replay check's answer.
        assert "web" in driver.ask(f"status web -n {web}")
        assert proxy.swallowed >= 2
    finally:
        proxy.stall.clear()
        proxy.close()
