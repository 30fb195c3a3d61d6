"""Deciding, after the click's ack: an approval card's Approve / Reject / Cancel (an atomic
transition in Redis, so double clicks, concurrent clicks and clicks on two replicas resolve to
one outcome and the change runs once; the card is redrawn in place after every step), and a
promotion gate's Approve / Halt (a compare-and-set).

The worker side calls these (`handlers.perform`), and the runtime redraws cards with them; they
import no listener.
"""

from __future__ import annotations

import logging

from bot.domain.approval import ApprovalRequest
from bot.domain.errors import StoreError
from bot.domain.freeze_outcomes import break_glass_reason
from bot.domain.mrkdwn import code, escape
from bot.domain.promotion_outcomes import GateDecision
from bot.domain.targets import Actor
from bot.observability.logs import log_context
from bot.services.approvals import ApprovalFlow, Decision
from bot.services.use_cases import Services
from handlers.answers import announce, follow
from handlers.handoff import PROMOTION_APPROVE
from handlers.replies import Replier, user_facing_errors
from handlers.views.cards import approval_card
from handlers.views.changes import change_message
from handlers.views.freezes import break_glass_message
from handlers.views.message import error_message, info_message
from handlers.views.promotions import read_button_value
from handlers.views.text import mention

log = logging.getLogger(__name__)


_OUTCOME_REPLIES = {
    "recorded": "Your approval is recorded; more approvals are needed.",
    "duplicate": "You have already approved this request; each approver counts once.",
    "requester": "You requested this change, so your approval does not count (four-eyes rule).",
    "expired": "This request has expired and can no longer run. Request it again.",
    "not_requester": "Only the person who requested this change can cancel it.",
    "not_found": "This approval request no longer exists.",
    "voided": "The Deployment changed after this was requested, so the request was voided.",
}


def decide_approval(
    services: Services,
    verb: str,
    approval_id: str,
    actor: Actor,
    reason: str,
    replier: Replier,
) -> None:
    flow = services.approvals
    with (
        log_context(request_id=approval_id, user=actor.user_id, verb=verb),
        user_facing_errors(replier.ephemeral),
    ):
        if verb == "approve":
            decision = flow.approve(approval_id, actor.user_id, actor.user_name)
        elif verb == "reject":
            decision = flow.reject(approval_id, actor.user_id, actor.user_name, reason)
        else:
            decision = flow.cancel(approval_id, actor.user_id, actor.user_name)
        after_decision(services, decision, actor.user_id, replier)


def after_decision(services: Services, decision: Decision, user_id: str, replier: Replier) -> None:
    outcome = decision.outcome
    request = outcome.request
    if request is not None:
        redraw(replier, request, services.approvals)
        # Only what the bot sealed is shown: a field edited in Redis reads as withheld.
        request = services.approvals.shown(request)
    status = outcome.status
    if status == "voided" and decision.error and request is not None:
        # Refused at the last check (tampering, policy, expiry, the object changed): the
        # channel sees why, not only the person who clicked.
        replier.in_channel(error_message(decision.error), thread_ts=request.message_ts)
        replier.ephemeral(
            error_message(f"The request was voided and nothing ran: {decision.error}")
        )
        return
    if status == "already_decided" and request is not None:
        who = mention(request.decided_by) if request.decided_by else "the bot"
        when = request.decided_at.strftime("%Y-%m-%d %H:%M UTC") if request.decided_at else "?"
        replier.ephemeral(
            info_message(
                f"This request was already decided: *{escape(request.state)}* by {who} at {when}."
            )
        )
    elif status in _OUTCOME_REPLIES:
        replier.ephemeral(info_message(_OUTCOME_REPLIES[status]))
    elif status == "rejected" and request is not None:
        reason = f": {escape(request.reject_reason)}" if request.reject_reason else ""
        replier.in_channel(
            info_message(
                f"{mention(request.requester_id)}, your request `{code(request.id)}` "
                f"was rejected by {mention(user_id)}{reason}"
            ),
            thread_ts=request.message_ts,
        )
    elif status == "approved" and request is not None:
        if decision.change is not None:
            requester = Actor(request.requester_id, request.requester_name, request.channel)
            message = change_message(
                decision.change,
                requester,
                request.reason or None,
                approved_by=[a.user_id for a in request.approvals],
            )
            ts = replier.in_channel(message, thread_ts=request.message_ts)
            if break_glass_reason(request):
                # A change through a freeze is announced in the channel, not only in the thread.
                glass = break_glass_message(request, decision.change)
                announce(services, request.namespace, glass, replier)
            if ts is not None:
                # The progress thread hangs under the card, in the card's channel.
                follow(services, decision.change, replier.channel_id, request.message_ts or ts)
        elif decision.error:
            replier.in_channel(error_message(decision.error), thread_ts=request.message_ts)


# A request changes state a handful of times at most (pending, approved, running, done).
_REDRAW_ROUNDS = 4


def redraw(replier: Replier, request: ApprovalRequest, store: ApprovalFlow) -> None:
    """Draw the card, then again while the stored request has moved on since.

    Clicks on other threads or replicas redraw the same card, and Slack keeps whichever
    update arrives last, possibly a state that is already past. Checking after each update
    means the last update of all shows the current state.
    """
    place = store.card_of(request)
    if place is None:
        return
    channel, ts = place
    card = Replier(None, replier.client, channel)
    for _ in range(_REDRAW_ROUNDS):
        card.update(ts, approval_card(store.shown(request)))
        try:
            latest = store.get(request.id)
        except StoreError:
            return  # the state is safe in Redis; only the card may lag behind
        if latest is None or latest == request:
            return
        request = latest


_GATE_REPLIES = {
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


def decide_gate(services: Services, verb: str, value: str, actor: Actor, replier: Replier) -> None:
    with (
        log_context(request_id=value, user=actor.user_id, verb=verb),
        user_facing_errors(replier.ephemeral),
    ):
        parsed = read_button_value(value)
        if parsed is None or services.promotions is None:
            replier.ephemeral(
                error_message(
                    "This button does not name a promotion the bot knows. Nothing was changed."
                )
            )
            return
        promotion_id, wave = parsed
        decision: GateDecision
        if verb == PROMOTION_APPROVE:
            decision = services.promotions.approve(promotion_id, wave, actor)
        else:
            decision = services.promotions.halt(promotion_id, actor)
        if decision.status == "halted":
            replier.ephemeral(info_message("The promotion is halted; no wave starts."))
        elif decision.status in _GATE_REPLIES:
            replier.ephemeral(info_message(_GATE_REPLIES[decision.status]))
