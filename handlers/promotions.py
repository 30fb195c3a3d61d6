"""Promotions on Slack: the promotion message kept up to date in place (`SlackPromotionBoard`,
the service's board), and its Approve / Halt buttons.

A click is acknowledged at once and handed on like an approval click; the gate's decision is a
compare-and-set in Redis, so double clicks, concurrent clicks and clicks on two replicas
resolve to one outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltRequest, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain.promotion import GateRule, PromotionState
from bot.domain.targets import Actor
from bot.observability.logs import log_context
from bot.services.container import Services
from bot.services.promotions import GateDecision
from handlers.actors import clicker
from handlers.replies import Replier, user_facing_errors
from handlers.views import blocks
from handlers.views import promotions as views
from handlers.work import Decide, Dispatch, Reply, hand_on, tell_not_taken

log = logging.getLogger(__name__)

APPROVE = "promotion-approve"
HALT = "promotion-halt"
VERBS = (APPROVE, HALT)

_REPLIES = {
    "recorded": "Your approval of the gate is recorded; more approvals are needed.",
    "opened": "You opened the gate: the next wave starts now.",
    "requester": (
        "You started this promotion, so your approval does not count (four-eyes rule). "
        "Ask one of the approvers named on the message."
    ),
    "not_approver": (
        "You are not among the approvers of this gate (the policy's approval rules for the "
        "wave's targets name them on the message). Nothing was changed."
    ),
    "duplicate": "You have already approved this gate; each approver counts once.",
    "not_open": "This gate is not open any more (the promotion moved on, finished or halted).",
    "not_found": "This promotion no longer exists.",
    "not_permitted": (
        "Only the person who promoted, an approver of the gate, or someone allowed to "
        "*promote* this pipeline may halt it. Nothing was changed."
    ),
}


class SlackPromotionBoard:
    """The promotion message: posted once, then updated in place."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def post(self, state: PromotionState, gates: list[GateRule | None]) -> str | None:
        message = views.promotion_message(state, gates)
        try:
            response = self._client.chat_postMessage(
                channel=state.channel, text=message.text, blocks=message.blocks
            )
        except SlackApiError as exc:
            log.warning("chat.postMessage failed: %s", exc.response.get("error"))
            return None
        except (SlackClientError, OSError) as exc:
            log.warning("chat.postMessage failed: %s", type(exc).__name__)
            return None
        return str(response["ts"])

    def update(self, state: PromotionState, gates: list[GateRule | None]) -> None:
        if not state.message_ts:
            return
        message = views.promotion_message(state, gates)
        Replier(None, self._client, state.channel).update(state.message_ts, message)

    def note(self, state: PromotionState, text: str, *, error: bool = False) -> None:
        message = blocks.error_message(text) if error else blocks.info_message(text)
        Replier(None, self._client, state.channel).in_channel(
            message, thread_ts=state.message_ts or None
        )


def register(app: App, dispatch: Dispatch) -> None:
    app.action(views.PROMOTION_APPROVE_ACTION)(_click_handler(dispatch, APPROVE))
    app.action(views.PROMOTION_HALT_ACTION)(_click_handler(dispatch, HALT))


def _click_handler(dispatch: Dispatch, verb: str) -> Callable[..., None]:
    def handle_click(
        ack: Ack,
        action: dict[str, Any],
        body: dict[str, Any],
        context: BoltContext,
        request: BoltRequest,
        respond: Respond,
        client: WebClient,
    ) -> None:
        ack()
        actor = clicker(body, context)
        work = Decide(
            verb,
            str(action.get("value") or ""),
            actor,
            "",
            Reply.to(respond, actor.channel_id, request),
        )
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    handle_click.__name__ = f"handle_{verb.replace('-', '_')}_click"
    return handle_click


def decide(services: Services, verb: str, value: str, actor: Actor, replier: Replier) -> None:
    with (
        log_context(request_id=value, user=actor.user_id, verb=verb),
        user_facing_errors(replier.ephemeral),
    ):
        parsed = views.read_button_value(value)
        if parsed is None or services.promotions is None:
            replier.ephemeral(
                blocks.error_message(
                    "This button does not name a promotion the bot knows. Nothing was changed."
                )
            )
            return
        promotion_id, wave = parsed
        decision: GateDecision
        if verb == APPROVE:
            decision = services.promotions.approve(promotion_id, wave, actor)
        else:
            decision = services.promotions.halt(promotion_id, actor)
        if decision.status == "halted":
            replier.ephemeral(blocks.info_message("The promotion is halted; no wave starts."))
        elif decision.status in _REPLIES:
            replier.ephemeral(blocks.info_message(_REPLIES[decision.status]))
