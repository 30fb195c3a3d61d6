"""The promotion plan and message, without a cluster: each target's image change, what a plan
refuses, where the gates are, and the buttons the message carries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.policy import Pipeline, PipelineTarget
from bot.domain.promotion import PlanRefused, new_promotion, target_change
from handlers.views.promotions import (
    PROMOTION_APPROVE_ACTION,
    PROMOTION_HALT_ACTION,
    promotion_message,
    read_button_value,
)

pytestmark = pytest.mark.timeout(30)

EU = PipelineTarget(context="prod-eu", namespace="web", workload="deploy/web")
US = PipelineTarget(context="prod-us", namespace="web", workload="sts/web")


def pipeline(gate: str = "approval") -> Pipeline:
    return Pipeline.model_validate(
        {
            "from": {"context": "staging", "namespace": "web", "workload": "deploy/web"},
            "waves": [[EU.model_dump()], [US.model_dump()]],
            "gate": gate,
            "soak": timedelta(seconds=30),
        }
    )


def test_a_target_gets_the_sources_images_for_the_containers_it_shares() -> None:
    change = target_change(
        EU, {"web": "web:1", "sidecar": "envoy:1"}, {"web": "web:2", "init": "x"}, named=False
    )
    assert change.changes == [("web", "web:1", "web:2")] and change.step == "waiting"
    same = target_change(EU, {"web": "web:2"}, {"web": "web:2"}, named=False)
    assert same.step == "unchanged" and same.changes == []


def test_a_plan_refuses_a_target_without_the_named_container_or_any_shared_one() -> None:
    with pytest.raises(PlanRefused, match="has no container `app`"):
        target_change(EU, {"web": "web:1"}, {"app": "app:2"}, named=True)
    with pytest.raises(PlanRefused, match="shares no container name with the source"):
        target_change(EU, {"web": "web:1"}, {"api": "api:2"}, named=False)


@pytest.mark.parametrize(
    ("gate", "first_gate", "steps"),
    [
        ("approval", False, ["start", "gate"]),
        ("approval", True, ["gate", "gate"]),
        ("auto", False, ["start", "start"]),
        ("auto", True, ["gate", "start"]),
    ],
)
def test_gates_sit_between_waves_and_before_the_first_only_when_a_rule_covers_it(
    gate: str, first_gate: bool, steps: list[str]
) -> None:
    waves = [
        [target_change(EU, {"web": "web:1"}, {"web": "web:2"}, named=False)],
        [target_change(US, {"web": "web:1"}, {"web": "web:2"}, named=False)],
    ]
    state = new_promotion(
        "web",
        pipeline(gate),
        waves,
        requester_id="U0ALICE",
        requester_name="alice",
        channel="C0",
        now=0.0,
        first_gate=first_gate,
    )
    assert [wave.step for wave in state.waves] == steps
    assert state.soak_seconds == 30 and state.id.startswith("p-")


def test_the_message_lists_each_change_and_offers_approve_only_at_an_open_gate() -> None:
    waves = [
        [target_change(EU, {"web": "web:1"}, {"web": "web:2"}, named=False)],
        [target_change(US, {"web": "web:1"}, {"web": "web:2"}, named=False)],
    ]
    state = new_promotion(
        "web",
        pipeline(),
        waves,
        requester_id="U0ALICE",
        requester_name="alice",
        channel="C0",
        now=0.0,
        first_gate=False,
    )

    def buttons(message: object) -> dict[str, str]:
        return {
            e["action_id"]: e["value"]
            for b in message.blocks  # type: ignore[attr-defined]
            if b["type"] == "actions"
            for e in b["elements"]
        }

    running = promotion_message(state, [None, None], now=0.0)
    assert "`web` `web:1` → `web:2`" in str(running.blocks)
    assert set(buttons(running)) == {PROMOTION_HALT_ACTION}
    at_gate = state.model_copy(update={"wave": 1})
    offered = buttons(promotion_message(at_gate, [None, None], now=0.0))
    assert read_button_value(offered[PROMOTION_APPROVE_ACTION]) == (state.id, 1)
    assert read_button_value("p-x:one") is None and read_button_value("nope:1") is None
