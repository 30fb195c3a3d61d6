"""bot.observability: metrics in their own registry, redacting structured logs, the health app
(cached readiness, Redis never decides it) and its real listener, and the counting Slack client
against the Web API stand-in."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.observability.health import ReadinessProbe, health_app, serve_health
from bot.observability.logs import (
    carry_context,
    configure_logging,
    current_context,
    log_context,
    redact,
)
from bot.observability.metrics import Metrics
from bot.observability.slack import InstrumentedWebClient
from tests.devkit.slack.web_api import SlackStandin


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed back the way Prometheus would."""
    text, _ = metrics.exposition()
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# -- metrics ----------------------------------------------------------------------------------


def test_counters_and_gauges_reach_the_exposition() -> None:
    m = Metrics()
    m.command("set-image", "ok")
    m.command("set-image", "ok")
    m.command("scale", "denied")
    m.kube_call("patch", "deployments")
    m.kube_call("get", "deployments", code=404)
    m.slack_call("chat.postMessage")
    m.slack_call("chat.update", error="message_not_found")
    m.slack_rate_limit("chat.update")
    m.redis_error("audit.append")
    m.audit_written("request")
    m.audit_verified(False, at=1700000000.0)
    m.set_approvals_pending(3)
    m.approval_decided("approved")
    m.set_rollouts_tracked(2)
    m.rollout_verdict("succeeded")
    m.progress_lag(0.4)
    with m.time_ack():
        pass
    got = samples(m)

    assert got[("rollout_bot_commands_total", (("outcome", "ok"), ("verb", "set-image")))] == 2
    assert got[("rollout_bot_commands_total", (("outcome", "denied"), ("verb", "scale")))] == 1
    calls = (
        "rollout_bot_kubernetes_api_calls_total",
        (("resource", "deployments"), ("verb", "get")),
    )
    assert got[calls] == 1
    errors = (
        "rollout_bot_kubernetes_api_errors_total",
        (("code", "404"), ("resource", "deployments"), ("verb", "get")),
    )
    assert got[errors] == 1
    slack_error = (
        "rollout_bot_slack_api_errors_total",
        (("error", "message_not_found"), ("method", "chat.update")),
    )
    assert got[slack_error] == 1
    assert got[("rollout_bot_slack_api_rate_limited_total", (("method", "chat.update"),))] == 1
    assert got[("rollout_bot_redis_errors_total", (("operation", "audit.append"),))] == 1
    assert got[("rollout_bot_audit_entries_written_total", (("event", "request"),))] == 1
    assert got[("rollout_bot_audit_verify_ok", ())] == 0
    assert got[("rollout_bot_approvals_pending", ())] == 3
    assert got[("rollout_bot_approvals_decided_total", (("outcome", "approved"),))] == 1
    assert got[("rollout_bot_rollouts_tracked", ())] == 2
    assert got[("rollout_bot_rollout_verdicts_total", (("verdict", "succeeded"),))] == 1
    assert got[("rollout_bot_progress_lag_seconds_count", ())] == 1
    assert got[("rollout_bot_ack_seconds_count", ())] == 1


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.command("list", "ok")
    assert ("rollout_bot_commands_total", (("outcome", "ok"), ("verb", "list"))) in samples(first)
    assert not any(name == "rollout_bot_commands_total" for name, _ in samples(second))


def test_label_values_are_bounded_and_safe() -> None:
    m = Metrics()
    m.slack_call("chat.update", error="Weird Error\nwith spaces " + "x" * 200)
    (label,) = [
        dict(labels)["error"]
        for (name, labels) in samples(m)
        if name == "rollout_bot_slack_api_errors_total"
    ]
    assert len(label) <= 48 and " " not in label and "\n" not in label


# -- logs -------------------------------------------------------------------------------------

TOKENS = [
    "xoxb-1234-5678-abcdefABCDEF",
    "xoxp-99-88-77-zz",
    "xoxa-2-abc",
    "xoxr-refresh-1",
    "xapp-1-A0123-456-deadbeef",
]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def test_json_lines_carry_the_bound_context(captured: io.StringIO) -> None:
    configure_logging("json", "INFO", stream=captured)
    log = logging.getLogger("rollout-bot.test")
    with log_context(request_id="r-1", user="U0ALICE", verb="scale", target="prod/web"):
        log.info("scaled %s", "web")
        with log_context(rollout_id="ro-9"):
            log.info("tracking")
        log.info("after the inner context")
    log.info("outside")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]

    assert lines[0]["msg"] == "scaled web" and lines[0]["level"] == "INFO"
    assert {k: lines[0][k] for k in ("request_id", "user", "verb", "target")} == {
        "request_id": "r-1",
        "user": "U0ALICE",
        "verb": "scale",
        "target": "prod/web",
    }
    assert lines[1]["rollout_id"] == "ro-9" and lines[1]["user"] == "U0ALICE"
    assert "rollout_id" not in lines[2]
    assert "user" not in lines[3]


def test_secrets_never_reach_the_log(captured: io.StringIO) -> None:
    configure_logging("json", "DEBUG", stream=captured)
    log = logging.getLogger("rollout-bot.test")
    for token in TOKENS:
        log.warning("token %s in args", token)
        log.info(f"token {token} in the message")
    log.error("connect to %s failed", "redis://default:hunter2@redis:6379/0")
    log.error("tls: rediss://:p%40ss@redis.example.com:6380/0 down")
    log.debug("respond to https://hooks.slack.com/commands/T0/123/AbCdEf0123 now")
    log.debug("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl")
    with log_context(user="xoxb-in-a-context-field"):
        log.info("context")
    try:
        raise RuntimeError("boom with xoxb-123-secret")
    except RuntimeError:
        log.exception("unexpected")
    out = captured.getvalue()

    for token in TOKENS:
        assert token not in out
    assert "hunter2" not in out and "p%40ss" not in out
    assert "AbCdEf0123" not in out and "https://hooks.slack.com/[redacted]" in out
    assert "eyJzdWIiOiJib3QifQ" not in out and "c2lnbmF0dXJl" not in out
    assert "redis://default:[redacted]@redis:6379/0" in out
    assert "xoxb-in-a-context-field" not in out
    assert "Traceback" not in out and "boom" not in out
    last = json.loads(out.splitlines()[-1])
    assert last["exc_type"] == "RuntimeError"


def test_text_format_and_level(captured: io.StringIO) -> None:
    configure_logging("text", "WARNING", stream=captured)
    log = logging.getLogger("rollout-bot.test")
    log.info("hidden")
    with log_context(verb="undo"):
        log.warning("shown xapp-1-AAA-bbb")
    out = captured.getvalue()
    assert "hidden" not in out
    assert "WARNING rollout-bot.test: shown xapp-[redacted] [verb=undo]" in out


def test_a_bad_format_or_level_is_refused(captured: io.StringIO) -> None:
    with pytest.raises(ValueError, match="format"):
        configure_logging("yaml", "INFO", stream=captured)
    with pytest.raises(ValueError, match="level"):
        configure_logging("json", "LOUD", stream=captured)


def test_the_context_follows_work_to_another_thread() -> None:
    with log_context(request_id="r-7"), ThreadPoolExecutor(max_workers=1) as pool:
        carried = pool.submit(carry_context(current_context)).result()
        bare = pool.submit(current_context).result()
    assert carried == {"request_id": "r-7"}
    assert bare == {}


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "set image web nginx=nginx:1.19 by @alice (redis://redis:6379/0)"
    assert redact(text) == text


# -- health -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def call(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": method}, start))
    return seen["status"], seen["headers"], body


def test_redis_down_is_reported_but_does_not_make_readyz_fail() -> None:
    m = Metrics()
    probe = ReadinessProbe(
        lambda: {"kubernetes": True, "redis": False},
        details=lambda: {"policy": "invalid: policy.yaml:3: permissions: ..."},
        metrics=m,
    )
    status, _, body = call(health_app(probe, m), "/readyz")
    assert status == "200 OK"
    assert json.loads(body) == {
        "ok": True,
        "kubernetes": True,
        "redis": False,
        "policy": "invalid: policy.yaml:3: permissions: ...",
    }
    got = samples(m)
    assert got[("rollout_bot_dependency_up", (("dependency", "redis"),))] == 0
    assert got[("rollout_bot_dependency_up", (("dependency", "kubernetes"),))] == 1


def test_kubernetes_down_or_a_failing_check_is_503() -> None:
    m = Metrics()
    down = ReadinessProbe(lambda: {"kubernetes": False, "redis": True}, metrics=m)
    assert call(health_app(down, m), "/readyz")[0] == "503 Service Unavailable"

    def broken() -> Mapping[str, bool]:
        raise OSError("no route")

    failing = ReadinessProbe(broken, metrics=m)
    status, _, body = call(health_app(failing, m), "/readyz")
    assert status == "503 Service Unavailable" and json.loads(body)["kubernetes"] is False


def test_readiness_is_cached_and_computed_once_per_window() -> None:
    clock = FakeClock()
    answers = iter([True, False, False])
    runs: list[int] = []

    def checks() -> Mapping[str, bool]:
        runs.append(1)
        return {"kubernetes": next(answers)}

    probe = ReadinessProbe(checks, cache_seconds=1.0, clock=clock)
    assert probe().ready
    clock.now += 0.5
    assert probe().ready, "within the window the cached answer is served"
    assert len(runs) == 1
    clock.now += 0.6
    assert not probe().ready
    assert len(runs) == 2
    with pytest.raises(ValueError):
        ReadinessProbe(checks, cache_seconds=5)


def test_concurrent_probes_share_one_computation() -> None:
    gate = threading.Event()
    runs: list[int] = []

    def slow() -> Mapping[str, bool]:
        runs.append(1)
        gate.wait(5)
        return {"kubernetes": True}

    probe = ReadinessProbe(slow, cache_seconds=2.0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(probe) for _ in range(8)]
        gate.set()
        results = [f.result() for f in futures]
    assert all(r.ready for r in results)
    assert len(runs) == 1


def test_routes_methods_and_metrics() -> None:
    m = Metrics()
    m.command("status", "ok")
    app = health_app(ReadinessProbe(lambda: {"kubernetes": True}), m)
    assert call(app, "/healthz")[0] == "200 OK"
    assert call(app, "/nope")[0] == "404 Not Found"
    assert call(app, "/healthz", method="POST")[0] == "405 Method Not Allowed"
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/plain")
    assert 'rollout_bot_commands_total{outcome="ok",verb="status"} 1.0' in body.decode()


def test_the_listener_serves_over_real_http() -> None:
    m = Metrics()
    m.audit_written("decision")
    up = {"kubernetes": True}
    server = serve_health(
        ReadinessProbe(lambda: dict(up), cache_seconds=0), m, host="127.0.0.1", port=0
    )
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            families = {f.name for f in text_string_to_metric_families(resp.read().decode())}
        assert "rollout_bot_audit_entries_written" in families
        up["kubernetes"] = False
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert caught.value.code == 503
    finally:
        server.close()


# -- the counting Slack client ----------------------------------------------------------------


def test_slack_calls_errors_and_429s_are_counted() -> None:
    m = Metrics()
    with SlackStandin() as slack:
        client = InstrumentedWebClient(
            token=slack.token,
            base_url=slack.base_url,
            metrics=m,
            retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
        )
        client.auth_test()
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        client.chat_postMessage(channel="C0DEPLOYS", text="hello")
        slack.mark_channel_missing("C0GONE")
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel="C0GONE", text="hello")
    got = samples(m)
    assert got[("rollout_bot_slack_api_calls_total", (("method", "auth.test"),))] == 1
    # Requests, as Slack sees them: the 429, its retry, and the failing call.
    assert got[("rollout_bot_slack_api_calls_total", (("method", "chat.postMessage"),))] == 3
    assert got[("rollout_bot_slack_api_rate_limited_total", (("method", "chat.postMessage"),))] == 1
    errors = [
        dict(labels)
        for (name, labels), value in got.items()
        if name == "rollout_bot_slack_api_errors_total" and value
    ]
    assert sorted(e["error"] for e in errors) == ["channel_not_found", "ratelimited"]
    assert {e["method"] for e in errors} == {"chat.postMessage"}


def test_the_dashboard_and_the_readme_use_the_metric_names_the_code_exports() -> None:
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    exported = {
        sample_name
        for family in Metrics().registry.collect()
        for sample_name in (
            family.name,
            family.name + "_total",
            family.name + "_bucket",
            family.name + "_count",
            family.name + "_sum",
        )
    }
    dashboard = json.loads((repo / "deploy" / "grafana" / "rollout-bot.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"rollout_bot_[a-z_]+", e)}
    assert used and used <= exported, sorted(used - exported)
    readme = (repo / "README.md").read_text()
    documented = set(re.findall(r"`(rollout_bot_[a-z_]+)`", readme))
    families = {f.name for f in Metrics().registry.collect()}
    assert documented <= exported, sorted(documented - exported)
    assert {n.removesuffix("_total") for n in documented} >= families, "undocumented metrics"
