"""The canary's pure rules and grammar: manifest, weight, health judgement, durations, view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain import canary as rules
from bot.domain.canary_view import CanaryView
from bot.domain.targets import Target
from bot.domain.verbs import (
    Canary,
    CanaryAbort,
    CanaryPromote,
    CanaryStatus,
    CommandError,
    command_record,
    from_record,
    parse_command,
    render_command,
)
from handlers.views.canary import ABORT_ACTION, PROMOTE_ACTION, canary_message
from tests.support.bot_process import message_text

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def web(replicas: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "uid-web",
            "labels": {"app": "web", "argocd.argoproj.io/instance": "shop"},
            "annotations": {"deployment.kubernetes.io/revision": "4"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "progressDeadlineSeconds": 120,
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1.25"},
                        {"name": "side", "image": "envoy:1"},
                    ]
                },
            },
            **extra,
        },
    }


def manifest(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "base": "fp",
        "analysis_seconds": 600,
        "auto_promote": False,
        "requester_id": "U0ALICE",
        "requester_name": "alice",
        "change_cause": "canary app=nginx:1.27 by @alice via Slack",
    }
    kwargs.update(overrides)
    made, _ = rules.canary_manifest(web(), [("app", "nginx:1.27")], 1, **kwargs)
    return made


# -- the canary Deployment ------------------------------------------------------------------------


def test_canary_runs_the_live_template_with_the_new_image_and_the_track_label() -> None:
    made = manifest()
    template = made["spec"]["template"]
    assert made["metadata"]["name"] == "web-canary"
    assert template["metadata"]["labels"] == {
        "app": "web",
        "tier": "front",
        rules.TRACK_LABEL: "canary",
    }
    images = {c["name"]: c["image"] for c in template["spec"]["containers"]}
    assert images == {"app": "nginx:1.27", "side": "envoy:1"}
    assert made["spec"]["replicas"] == 1
    assert made["spec"]["progressDeadlineSeconds"] == 120
    # web itself is not modified by building the canary.
    assert web()["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_canary_selector_is_its_own_and_never_selects_webs_pods() -> None:
    made = manifest()
    selector = made["spec"]["selector"]["matchLabels"]
    assert selector == {"app": "web", rules.TRACK_LABEL: "canary"}
    web_pod_labels = web()["spec"]["template"]["metadata"]["labels"]
    assert not all(web_pod_labels.get(k) == v for k, v in selector.items())
    # ...while a Service selecting web's pods selects the canary's as well.
    service = {"spec": {"selector": {"app": "web"}}}
    assert rules.routes_to(service, made["spec"]["template"]["metadata"]["labels"])


def test_canary_names_web_and_carries_no_gitops_tracking_label() -> None:
    made = manifest(auto_promote=True)
    annotations = made["metadata"]["annotations"]
    assert annotations[rules.OWNER_ANNOTATION] == "web"
    assert annotations[rules.OWNER_UID_ANNOTATION] == "uid-web"
    assert "argocd.argoproj.io/instance" not in made["metadata"]["labels"]
    settings = rules.settings_of(made)
    assert settings is not None
    assert (settings.of, settings.analysis_seconds, settings.auto_promote) == ("web", 600, True)


def test_refusals_before_anything_is_created() -> None:
    with pytest.raises(rules.CanaryRefused, match="already runs"):
        rules.canary_manifest(web(), [("app", "nginx:1.25")], 1, **_kw())
    with pytest.raises(rules.CanaryRefused, match='unable to find container named "nope"'):
        rules.canary_manifest(web(), [("nope", "nginx:1.27")], 1, **_kw())
    tracked = web()
    tracked["spec"]["selector"]["matchLabels"][rules.TRACK_LABEL] = "stable"
    with pytest.raises(rules.CanaryRefused, match="selector already uses"):
        rules.canary_manifest(tracked, [("app", "nginx:1.27")], 1, **_kw())
    canary = manifest()
    canary["metadata"]["uid"] = "x"
    with pytest.raises(rules.CanaryRefused, match="itself a canary"):
        rules.check_target(canary)


def _kw() -> dict[str, Any]:
    return {
        "base": "fp",
        "analysis_seconds": 60,
        "auto_promote": False,
        "requester_id": "U1",
        "requester_name": "a",
        "change_cause": "c",
    }


@pytest.mark.parametrize(
    ("weight", "web_replicas", "expected"),
    [(10, 3, 1), (10, 9, 1), (25, 9, 3), (50, 4, 4), (50, 10, 10), (1, 0, 1), (99, 1, 99)],
)
def test_weight_is_a_share_of_all_pods_and_at_least_one(
    weight: int, web_replicas: int, expected: int
) -> None:
    assert rules.replicas_for_weight(weight, web_replicas) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("5", 300), ("m", None), ("", None)],
)
def test_durations(text: str, seconds: int | None) -> None:
    assert rules.parse_duration(text) == seconds
    if seconds:
        assert rules.parse_duration(rules.describe_duration(seconds)) == seconds


# -- health --------------------------------------------------------------------------------------


def pod(name: str, *, ready: bool = True, restarts: int = 0, waiting: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-12-07T03:59:00Z"},
        "spec": {"containers": [{"name": "app"}]},
        "status": {
            "phase": "Running" if not waiting else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": "app", "ready": ready, "restartCount": restarts, "state": state}
            ],
        },
    }


def canary_obj(replicas: int = 1, created: datetime = NOW) -> dict[str, Any]:
    made = manifest()
    made["spec"]["replicas"] = replicas
    made["metadata"]["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return made


def test_all_ready_is_healthy() -> None:
    health = rules.judge(canary_obj(2), [pod("a"), pod("b")], NOW)
    assert health.all_ready and health.failed is None and health.ready == 2


@pytest.mark.parametrize(
    ("pods", "seen", "reason"),
    [
        ([pod("a", restarts=1)], (), "restarted"),
        ([pod("a", ready=False, waiting="ImagePullBackOff")], (), "ImagePullBackOff"),
        ([pod("a", ready=False, waiting="CrashLoopBackOff", restarts=3)], (), "restarted"),
        ([pod("a", ready=False)], ("a",), "readiness"),
    ],
)
def test_a_failing_pod_fails_the_canary(
    pods: list[dict[str, Any]], seen: tuple[str, ...], reason: str
) -> None:
    health = rules.judge(canary_obj(), pods, NOW, seen_ready=frozenset(seen))
    assert health.failed is not None and reason in health.failed


def test_not_ready_within_the_deadline_fails_and_before_it_waits() -> None:
    waiting = [pod("a", ready=False)]
    assert rules.judge(canary_obj(), waiting, NOW).failed is None
    late = rules.judge(canary_obj(created=NOW - timedelta(seconds=121)), waiting, NOW)
    assert late.failed is not None and "within 120s" in late.failed


# -- grammar -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "command"),
    [
        (
            "canary deploy/web --image app=nginx:1.27 --weight 10% --analysis 10m "
            "--auto-promote -n prod --context east",
            Canary(
                name="web",
                images=(("app", "nginx:1.27"),),
                weight=10,
                analysis_seconds=600,
                auto_promote=True,
                namespace="prod",
                context="east",
            ),
        ),
        (
            "canary web --image app=nginx:1.27 --image side=envoy:2 --replicas 2",
            Canary(
                name="web",
                images=(("app", "nginx:1.27"), ("side", "envoy:2")),
                replicas=2,
            ),
        ),
        ("canary status web", CanaryStatus(name="web")),
        ("canary promote deploy/web -n prod", CanaryPromote(name="web", namespace="prod")),
        ("canary abort web", CanaryAbort(name="web")),
    ],
)
def test_canary_grammar_round_trips(text: str, command: Any) -> None:
    parsed = parse_command(text)
    assert parsed == command
    assert parse_command(render_command(parsed)) == parsed
    assert from_record(command_record(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("canary sts/db --image a=b:1", "a canary is for Deployments only. A StatefulSet"),
        ("canary ds/agent --image a=b:1", "a canary is for Deployments only. A DaemonSet"),
        ("canary web", "`canary` needs `--image CONTAINER=IMAGE`"),
        ("canary web --image nginx:1", "expected `CONTAINER=IMAGE`"),
        ("canary web --image a=b:1 --replicas 2 --weight 5", "give `--replicas` or `--weight`"),
        ("canary web --image a=b:1 --weight 100%", "`--weight` is a share of the pods"),
        ("canary web --image a=b:1 --analysis 2d", "`--analysis` is how long"),
        ("canary web --image a=b:1 --auto-promote=yes", "`--auto-promote` takes no value"),
        ("canary web --image a=b:1 --image a=c:2", "a container is given more than once"),
    ],
)
def test_canary_refusals_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert caught.value.message.startswith(message), caught.value.message


def test_canary_commands_need_what_set_image_needs_but_abort_needs_no_approval() -> None:
    assert Canary.action == CanaryPromote.action == CanaryAbort.action == "set-image"
    assert Canary.needs_approval and CanaryPromote.needs_approval
    assert not CanaryAbort.needs_approval
    assert CanaryStatus.action == "status" and not CanaryStatus.is_mutation


# -- the message ---------------------------------------------------------------------------------


def view(state: str, **extra: Any) -> CanaryView:
    health = rules.judge(canary_obj(), [pod("web-canary-5f7-abcde")], NOW)
    fields: dict[str, Any] = {
        "target": Target("prod", "web"),
        "canary": "web-canary",
        "state": state,
        "images": (("app", "nginx:1.27"),),
        "web_images": (("app", "nginx:1.25"),),
        "web_replicas": 3,
        "health": health,
        "services": ("web",),
        "analysis_seconds": 600,
        "healthy_for": 70,
        "auto_promote": False,
        "autoscaler": None,
        "requester_id": "U0ALICE",
    }
    fields.update(extra)
    return CanaryView(**fields)


def buttons(message: Any) -> list[str]:
    return [e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def test_message_while_analysing_shows_pods_services_and_both_buttons() -> None:
    message = canary_message(view("analysing", autoscaler="web-hpa"))
    text = message_text({"text": message.text, "blocks": message.blocks})
    assert "Canary of `prod/web`* — analysing: healthy for 1m10s of 10m00s" in text
    assert "`web-canary`: 1 pod(s) with `app=nginx:1.27` beside 3 of `web`" in text
    assert "Services routing to it: `web`" in text
    assert "HorizontalPodAutoscaler `web-hpa`; the canary keeps its fixed replicas" in text
    assert "web-canary-5f7-abcde" in text and "Running" in text
    assert buttons(message) == [PROMOTE_ACTION, ABORT_ACTION]


def test_message_once_aborted_says_why_and_offers_nothing() -> None:
    why = "Pod `x` is stuck in `ImagePullBackOff`. `web-canary` was deleted; `web` is untouched."
    message = canary_message(view("aborted", why=why))
    text = message_text({"text": message.text, "blocks": message.blocks})
    assert "— *aborted*" in text and "ImagePullBackOff" in text and "untouched" in text
    assert buttons(message) == []
