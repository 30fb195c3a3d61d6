"""Approve / Reject / Cancel buttons on approval cards.

Each click is acknowledged at once; the decision is an atomic transition in Redis, so double
clicks, concurrent clicks and clicks on two bot replicas resolve to one outcome, and the
action runs exactly once. The card is redrawn in place after every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltRequest, Respond
from slack_sdk import WebClient

from bot.domain.approval import ApprovalRequest, is_approval_id
from bot.domain.errors import StoreError
from bot.domain.targets import Actor
from bot.observability.logs import log_context
from bot.services.approvals import ApprovalFlow, Decision
from bot.services.container import Services
from bot.services.freezes import break_glass_reason
from handlers import canary
from handlers.actors import clicker
from handlers.replies import Replier, user_facing_errors
from handlers.views import blocks
from handlers.work import Decide, Dispatch, Notify, Reply, Work, hand_on, tell_not_taken

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


def register(app: App, dispatch: Dispatch) -> None:
    for action_id, verb in (
        (blocks.APPROVE_ACTION, "approve"),
        (blocks.REJECT_ACTION, "reject"),
        (blocks.CANCEL_ACTION, "cancel"),
    ):
        app.action(action_id)(_click_handler(dispatch, verb))

    @app.action(blocks.REJECT_REASON_ACTION)
    def handle_reason_typing(ack: Ack) -> None:
        ack()  # the reason is read from the card's state when Reject is clicked


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
        approval_id = str(action.get("value") or "")
        reason = _reject_reason(body) if verb == "reject" else ""
        reply = Reply.to(respond, actor.channel_id, request)
        work: Work
        if is_approval_id(approval_id):
            work = Decide(verb, approval_id, actor, reason, reply)
        else:
            # Not a value the bot wrote: it is never logged, looked up or shown.
            log.warning("a %s click carried no valid approval id; refused", verb)
            work = Notify(
                blocks.error_message(
                    "This button does not name an approval request. Nothing was changed."
                ),
                reply,
            )
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    handle_click.__name__ = f"handle_{verb}_click"  # what Bolt names in its logs
    return handle_click


def _reject_reason(body: dict[str, Any]) -> str:
    values = (body.get("state") or {}).get("values") or {}
    field = (values.get(blocks.REJECT_REASON_BLOCK) or {}).get(blocks.REJECT_REASON_ACTION) or {}
    return str(field.get("value") or "").strip()[:300]


def decide(
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
        replier.in_channel(blocks.error_message(decision.error), thread_ts=request.message_ts)
        replier.ephemeral(
            blocks.error_message(f"The request was voided and nothing ran: {decision.error}")
        )
        return
    if status == "already_decided" and request is not None:
        who = blocks.mention(request.decided_by) if request.decided_by else "the bot"
        when = request.decided_at.strftime("%Y-%m-%d %H:%M UTC") if request.decided_at else "?"
        replier.ephemeral(
            blocks.info_message(
                f"This request was already decided: *{blocks.escape(request.state)}* by {who} "
                f"at {when}."
            )
        )
    elif status in _OUTCOME_REPLIES:
        replier.ephemeral(blocks.info_message(_OUTCOME_REPLIES[status]))
    elif status == "rejected" and request is not None:
        reason = f": {blocks.escape(request.reject_reason)}" if request.reject_reason else ""
        replier.in_channel(
            blocks.info_message(
                f"{blocks.mention(request.requester_id)}, your request `{blocks.code(request.id)}` "
                f"was rejected by {blocks.mention(user_id)}{reason}"
            ),
            thread_ts=request.message_ts,
        )
    elif status == "approved" and request is not None:
        if decision.change is not None:
            requester = Actor(request.requester_id, request.requester_name, request.channel)
            message = blocks.change_message(
                decision.change,
                requester,
                request.reason or None,
                approved_by=[a.user_id for a in request.approvals],
            )
            ts = replier.in_channel(message, thread_ts=request.message_ts)
            if break_glass_reason(request):
                # A change through a freeze is announced in the channel, not only in the thread.
                from handlers.commands import announce
                from handlers.views.freezes import break_glass_message

                glass = break_glass_message(request, decision.change)
                announce(services, request.namespace, glass, replier)
            if ts is not None:
                # The progress thread hangs under the card, in the card's channel.
                canary.follow(
                    services, decision.change, replier.channel_id, request.message_ts or ts
                )
        elif decision.error:
            replier.in_channel(blocks.error_message(decision.error), thread_ts=request.message_ts)


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
        card.update(ts, blocks.approval_card(store.shown(request)))
        try:
            latest = store.get(request.id)
        except StoreError:
            return  # the state is safe in Redis; only the card may lag behind
        if latest is None or latest == request:
            return
        request = latest
