"""The real bot against a faulty API server: a TLS proxy in front of the test control plane
injects 409, 429, 5xx, hangs and outages; kubectl (talking to the apiserver directly) is the
oracle for what really happened.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.services.rollouts import CONFLICT_ATTEMPTS
from tests.devkit.control_plane import ClusterInfo
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
from tests.support.api_proxy import ApiFaultProxy
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

# Short, so a hang costs the suite 2 s, not the default 10.
KUBE_TIMEOUT = 2.0
BOT_ENV = {"ROLLOUT_BOT_KUBE_TIMEOUT": str(int(KUBE_TIMEOUT))}
# Scheduling and Slack round trips on a loaded CI machine, on top of the bot's own budget.
SLACK_MARGIN = 2.5
WEB = r"/apis/apps/v1/namespaces/[^/]+/deployments/web$"


@pytest.fixture
def api_proxy(cluster: ClusterInfo) -> Iterator[ApiFaultProxy]:
    with ApiFaultProxy.for_cluster(cluster) as proxy:
        yield proxy


@pytest.fixture
def proxied_bot_kubeconfig(api_proxy: ApiFaultProxy, cluster: ClusterInfo, tmp_path: Path) -> Path:
    return api_proxy.kubeconfig_for(cluster.bot_kubeconfig, tmp_path / "bot-via-proxy.kubeconfig")


@pytest.fixture
def bot_token(cluster: ClusterInfo) -> str:
    token: str = json.loads(cluster.bot_kubeconfig.read_text())["users"][0]["user"]["token"]
    return token


@pytest.fixture
def web(kubectl: Kubectl, granted_namespace: str) -> str:
    """The namespace holding Deployment `web` at revision 1."""
    deploy_web(kubectl)
    return granted_namespace


@pytest.fixture
def proxied_driver(
    start_bot: Any, slack: SlackStandin, proxied_bot_kubeconfig: Path
) -> SlackDriver:
    return SlackDriver(slack, start_bot(kubeconfig=proxied_bot_kubeconfig, env=BOT_ENV))


def set_image(driver: SlackDriver, namespace: str, image: str = NEW_IMAGE) -> str:
    return driver.run(f"set image web web={image} -n {namespace}")


def timed(driver: SlackDriver, text: str) -> tuple[float, float, str]:
    """(seconds to the ack, seconds to the ephemeral reply, the reply's text)."""
    started = time.monotonic()
    _, tag = driver.command(text)
    acked = time.monotonic() - started
    reply = driver.reply(tag)
    return acked, time.monotonic() - started, message_text(reply.params)


# -- 409 Conflict ----------------------------------------------------------------------------------


def test_single_conflict_on_patch_is_retried_on_fresh_state(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, kubectl: Kubectl, web: str
) -> None:
    api_proxy.fail(409, method="PATCH", path=WEB, count=1)

    said = set_image(proxied_driver, web)

    assert "image updated" in said and f"{OLD_IMAGE} → {NEW_IMAGE}" in said
    patches = api_proxy.seen("PATCH", WEB)
    # The conflict, then the retry; a last PATCH takes the bot's change-cause off the object
    # once the new ReplicaSet carries it (so a later kubectl change is not labelled with it).
    assert [p.fault for p in patches][:2] == ["status", None]
    assert [p.fault for p in patches][2:] in ([], [None])
    # The retry re-read the Deployment rather than re-sending the stale precondition.
    assert len(api_proxy.seen("GET", WEB)) >= 2
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1, 2]
    assert kubectl.images("web") == {"web": NEW_IMAGE}


def test_conflict_on_every_patch_gives_up_and_changes_nothing(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, kubectl: Kubectl, web: str
) -> None:
    api_proxy.fail(409, method="PATCH", path=WEB, count=None)

    said = set_image(proxied_driver, web)

    assert "kept changing" in said and "Nothing was changed" in said
    assert len(said) < 300
    assert_clean(said, "injected by the test proxy")
    assert len(api_proxy.seen("PATCH", WEB)) == CONFLICT_ATTEMPTS  # bounded, then gives up
    assert_unchanged(kubectl)


# -- 5xx -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_on_patch_says_nothing_was_changed(
    status: int,
    proxied_driver: SlackDriver,
    api_proxy: ApiFaultProxy,
    kubectl: Kubectl,
    web: str,
    bot_token: str,
) -> None:
    secretish = "etcd-internal-detail-7f3a"
    api_proxy.fail(status, method="PATCH", path=WEB, count=None, message=secretish)

    said = set_image(proxied_driver, web)

    assert "Nothing was changed" in said and str(status) in said
    assert len(said) < 300
    assert_clean(said, secretish, bot_token)
    assert_clean(proxied_driver.bot.logs(), secretish, bot_token)
    assert 1 <= len(api_proxy.seen("PATCH", WEB)) <= 3
    assert_unchanged(kubectl)


# -- 429 Too Many Requests -------------------------------------------------------------------------


def test_rate_limited_read_waits_as_asked_and_answers(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, kubectl: Kubectl, web: str
) -> None:
    api_proxy.fail(429, method="GET", path=WEB, count=1, retry_after=1)

    said = proxied_driver.ask(f"status web -n {web}")

    oracle = kubectl.rollout_status("web").stdout.strip()
    assert oracle in said.replace("&quot;", '"')
    faults = [r.fault for r in api_proxy.seen("GET", WEB)]
    assert faults[0] == "status" and len(faults) >= 2  # throttled once, then retried
    assert_clean(said, "injected by the test proxy")


def test_persistent_rate_limit_gives_up_with_a_clear_try_again(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, web: str
) -> None:
    api_proxy.fail(429, method="GET", path=WEB, count=None, retry_after=1)

    said = proxied_driver.ask(f"status web -n {web}")

    assert "429" in said and "try again" in said
    assert_clean(said, "injected by the test proxy")
    assert len(api_proxy.seen("GET", WEB)) == 3  # the first try and two bounded retries


# -- hangs -----------------------------------------------------------------------------------------


def test_hung_api_server_on_read_is_answered_within_the_timeout(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, web: str
) -> None:
    api_proxy.hang(method="GET", path=WEB, count=None)

    acked, answered, said = timed(proxied_driver, f"status web -n {web}")

    assert acked < 3.0, "Slack needs the ack within 3 s whatever the cluster does"
    assert "did not answer in time" in said
    assert answered < KUBE_TIMEOUT + SLACK_MARGIN
    assert len(api_proxy.seen("GET", WEB)) == 1  # one timeout, not one per retry
    assert_clean(said)


@pytest.mark.parametrize("fault", ["hang", "drop"])
def test_unanswered_patch_is_reported_as_an_unknown_outcome_and_not_retried(
    fault: str, proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, kubectl: Kubectl, web: str
) -> None:
    if fault == "hang":
        api_proxy.hang(method="PATCH", path=WEB, count=None)
    else:
        api_proxy.drop(method="PATCH", path=WEB, count=None)

    acked, answered, said = timed(proxied_driver, f"set image web web={NEW_IMAGE} -n {web}")

    assert acked < 3.0
    assert answered < 2 * KUBE_TIMEOUT + SLACK_MARGIN  # the GET, then the PATCH's read timeout
    assert "did not answer in time" in said
    # The request left the bot; whether the API server applied it is unknowable from here, so
    # "nothing was changed" would be a guess. The bot must say so and point at the status.
    assert "may or may not" in said and "Nothing was changed" not in said
    assert f"/rollout status web -n {web}" in said
    assert_clean(said)
    assert len(api_proxy.seen("PATCH", WEB)) == 1  # an ambiguous write is never blindly resent
    # The proxy never forwarded it, so the truth is: unchanged.
    assert_unchanged(kubectl)


# -- outage ----------------------------------------------------------------------------------------


def test_unreachable_api_server_changes_nothing_and_fails_readiness(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, kubectl: Kubectl, web: str
) -> None:
    status, body = probe(proxied_driver.bot, "/readyz")
    assert status == 200
    assert {k: body[k] for k in ("ok", "redis", "kubernetes")} == {
        "ok": True,
        "redis": True,
        "kubernetes": True,
    }
    api_proxy.stop()

    acked, answered, said = timed(proxied_driver, f"set image web web={NEW_IMAGE} -n {web}")

    assert acked < 3.0 and answered < KUBE_TIMEOUT + SLACK_MARGIN
    assert "Kubernetes API server" in said and "Nothing was changed" in said
    assert_clean(said)
    assert_unchanged(kubectl)
    status, body = probe_until(proxied_driver.bot, "/readyz", lambda a: a[0] == 503)
    assert status == 503 and body["kubernetes"] is False and body["redis"] is True
    assert probe(proxied_driver.bot, "/healthz")[0] == 200


def test_untrusted_api_server_certificate_is_a_clear_refusal(
    start_bot: Any,
    slack: SlackStandin,
    cluster: ClusterInfo,
    kubectl: Kubectl,
    web: str,
    tmp_path: Path,
) -> None:
    # A kubeconfig trusting some other CA: every TLS handshake with the API server fails.
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    as_ca = ["-subj", "/CN=other-ca", "-days", "1", "-addext", "basicConstraints=critical,CA:TRUE"]
    subprocess.run(
        ["openssl", "req", "-x509", *new_key, "-keyout", "other.key", "-out", "other.crt", *as_ca],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    config = json.loads(cluster.bot_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["certificate-authority"] = str(tmp_path / "other.crt")
    (tmp_path / "untrusting.kubeconfig").write_text(json.dumps(config))
    bot = start_bot(kubeconfig=tmp_path / "untrusting.kubeconfig", env=BOT_ENV)
    driver = SlackDriver(slack, bot)

    said = set_image(driver, web)

    assert "trusted connection" in said and "Nothing was changed" in said
    assert "answered 0" not in said
    assert_clean(said)
    assert_clean(bot.logs())
    assert_unchanged(kubectl)
    status, body = probe_until(bot, "/readyz", lambda a: a[0] == 503)
    assert status == 503 and body["kubernetes"] is False


# -- the bot dies mid-command ----------------------------------------------------------------------


def test_bot_killed_while_its_patch_is_in_flight_leaves_a_consistent_cluster(
    start_bot: Any,
    slack: SlackStandin,
    proxied_bot_kubeconfig: Path,
    api_proxy: ApiFaultProxy,
    kubectl: Kubectl,
    web: str,
) -> None:
    first = SlackDriver(slack, start_bot(kubeconfig=proxied_bot_kubeconfig, env=BOT_ENV))
    # Hold the PATCH at the proxy so the kill lands while it is in flight; the proxy then
    # delivers it anyway, as a network would deliver a request whose sender has died.
    api_proxy.delay(1.5, method="PATCH", path=WEB)
    first.command(f"set image web web={NEW_IMAGE} -n {web}")
    api_proxy.wait_for("PATCH", WEB)
    first.bot.kill()

    kubectl.wait_for(lambda: kubectl.images("web") == {"web": NEW_IMAGE}, timeout=20, what="PATCH")
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1, 2]  # applied exactly once

    second = SlackDriver(slack, start_bot(kubeconfig=proxied_bot_kubeconfig, env=BOT_ENV))
    said = set_image(second, web, "nginx:1.20-alpine")
    assert "image updated" in said and f"{NEW_IMAGE} → nginx:1.20-alpine" in said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.history_revisions("web") == [1, 2, 3]
    assert kubectl.images("web") == {"web": "nginx:1.20-alpine"}


def test_one_server_error_on_a_read_is_retried_once(
    proxied_driver: SlackDriver, api_proxy: ApiFaultProxy, kubectl: Kubectl, web: str
) -> None:
    api_proxy.fail(503, method="GET", path=WEB, count=1)

    said = proxied_driver.ask(f"status web -n {web}")

    oracle = kubectl.rollout_status("web").stdout.strip()
    assert oracle in said.replace("&quot;", '"')
    assert [r.fault for r in api_proxy.seen("GET", WEB)][:2] == ["status", None]
