"""The real bot against a stopped or frozen redis-server: mutations are refused before the
cluster is touched (the audit entry comes first), reads keep working, and no Redis password
ever reaches a reply or the log. kubectl is the oracle for "nothing changed".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.web_api import SlackStandin
from tests.faults import (
    NEW_IMAGE,
    OLD_IMAGE,
    assert_clean,
    assert_unchanged,
    deploy_web,
    probe,
    probe_until,
)
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.timeout(120)]

# bot.config's default ROLLOUT_BOT_REDIS_TIMEOUT: the bound a frozen Redis may cost a command.
REDIS_TIMEOUT = 2.0
# Scheduling and Slack round trips on a loaded CI machine, on top of the bot's own budget.
SLACK_MARGIN = 2.0
PASSWORD = "s3cret-7c1e9a"


@pytest.fixture
def web(kubectl: Kubectl, granted_namespace: str) -> str:
    deploy_web(kubectl)
    return granted_namespace


@pytest.fixture
def restore_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The shared server, brought back whatever the test did to it."""
    try:
        yield redis_server
    finally:
        redis_server.resume()
        if not redis_server.running:
            redis_server.start()


def set_image(driver: SlackDriver, namespace: str, image: str = NEW_IMAGE) -> str:
    return driver.run(f"set image web web={image} -n {namespace}")


def test_redis_down_refuses_mutations_but_reads_work_and_recovery_is_automatic(
    driver: SlackDriver, restore_redis: RedisServer, kubectl: Kubectl, web: str
) -> None:
    restore_redis.stop()

    said = set_image(driver, web)

    assert "state store" in said and "Nothing was changed" in said
    assert_clean(said)
    assert_unchanged(kubectl)
    # Reads need only the cluster.
    oracle = kubectl.rollout_status("web").stdout.strip()
    assert oracle in driver.ask(f"status web -n {web}").replace("&quot;", '"')
    # Redis is reported, but readiness means "can serve reads", and reads need only the cluster.
    status, body = probe_until(driver.bot, "/readyz", lambda a: a[1]["redis"] is False)
    assert status == 200 and body["redis"] is False and body["kubernetes"] is True
    assert probe(driver.bot, "/healthz")[0] == 200

    restore_redis.start()

    said = set_image(driver, web)
    assert "image updated" in said and f"{OLD_IMAGE} → {NEW_IMAGE}" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1, 2]
    assert probe(driver.bot, "/readyz")[0] == 200


def test_frozen_redis_refuses_a_mutation_within_the_redis_timeout(
    driver: SlackDriver, restore_redis: RedisServer, kubectl: Kubectl, web: str
) -> None:
    restore_redis.pause()
    try:
        started = time.monotonic()
        _, tag = driver.command(f"set image web web={NEW_IMAGE} -n {web}")
        acked = time.monotonic() - started
        said = message_text(driver.reply(tag).params)
        answered = time.monotonic() - started
    finally:
        # Redis now runs whatever the bot sent before giving up (its audit append): the
        # cluster must still not change, because the bot did not go on.
        restore_redis.resume()

    assert acked < 3.0, "Slack needs the ack within 3 s whatever Redis does"
    assert "state store" in said and "Nothing was changed" in said
    assert answered < REDIS_TIMEOUT + SLACK_MARGIN, f"took {answered:.1f}s"
    assert_clean(said)
    time.sleep(1.0)
    assert_unchanged(kubectl)


def test_redis_password_never_reaches_replies_or_logs(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, web: str
) -> None:
    # RedisServer has no requirepass option; CONFIG SET gives the running server one.
    with RedisServer() as guarded:
        with guarded.client() as admin:
            admin.config_set("requirepass", PASSWORD)
        bot = start_bot(env={"REDIS_URL": f"redis://:{PASSWORD}@{guarded.host}:{guarded.port}/0"})
        driver = SlackDriver(slack, bot)

        said = set_image(driver, web)  # the password works: the audit entry was written
        assert "image updated" in said

        guarded.stop()
        refused = set_image(driver, web, "nginx:1.20-alpine")
        assert "state store" in refused and "Nothing was changed" in refused
        readiness = probe(bot, "/readyz")

    assert readiness[0] == 200 and readiness[1]["kubernetes"] is True
    assert kubectl.images("web") == {"web": NEW_IMAGE}
    for text in (said, refused, str(readiness[1]), bot.logs()):
        assert_clean(text, PASSWORD)
    for call in slack.calls():
        assert_clean(str(call.params), PASSWORD)
