"""Answering a command, after its ack: run it through the use cases for the actor and show what
came back (ephemerally for a read; in the channel, and in the namespace's channels, for a
change), then what follows a change (a canary's message, a rollout's progress).

The worker side calls these (`handlers.perform`); they import no listener, so the listeners
never call back into their own performers.
"""

from __future__ import annotations

import logging
import uuid

from slack_sdk import WebClient

from bot.domain import canary as rules
from bot.domain import verbs as cmd
from bot.domain.action_words import command_verb
from bot.domain.canary import CanaryRecord
from bot.domain.canary_view import CanaryView
from bot.domain.errors import NotPermitted
from bot.domain.freeze_outcomes import FreezeLifted, FreezeList, FreezeSet
from bot.domain.mrkdwn import code
from bot.domain.promotion_outcomes import PromotionList, PromotionPlan, PromotionStarted
from bot.domain.targets import Actor, Change
from bot.domain.views import ApprovalList, AuditList, DiffView, HistoryView, Listing, StatusView
from bot.observability.logs import log_context
from bot.observability.metrics import metrics
from bot.services.canary import CANARY_ACTION
from bot.services.commands import ApprovalRequested, Changed, Outcome
from bot.services.use_cases import Services
from handlers.handoff import Clicked
from handlers.replies import Replier, user_facing_errors
from handlers.views import freezes as freeze_views
from handlers.views import promotions as promotion_views
from handlers.views.audit import audit_message
from handlers.views.canary import canary_message
from handlers.views.cards import approval_card, approvals_list_message
from handlers.views.changes import change_message
from handlers.views.message import Message, info_message, with_note
from handlers.views.reads import deployments_message, diff_message, history_message, status_message
from handlers.views.text import in_cluster, time_of_day_now

log = logging.getLogger(__name__)


def answer(
    services: Services,
    command: cmd.Command,
    actor: Actor,
    replier: Replier,
    *,
    at_revision: int | None = None,
) -> Outcome | None:
    """Runs the command for the actor and shows the outcome; any refusal or failure becomes a
    short reply to the actor, never a trace (and None). ``at_revision``: a button's, see
    `RunCommand`."""
    namespace = getattr(command, "namespace", None) or ""
    name = getattr(command, "name", None) or ""
    result = "failed"
    outcome: Outcome | None = None
    with (
        log_context(
            request_id=uuid.uuid4().hex[:12],
            user=actor.user_id,
            verb=command.action,
            target=f"{namespace}/{name}".strip("/") or None,
        ),
        user_facing_errors(replier.ephemeral),
    ):
        try:
            outcome = services.commands.run(command, actor, at_revision=at_revision)
            show(services, outcome, actor, replier)
            result = "ok"
        except NotPermitted:
            result = "denied"
            raise
    metrics().command(command.action, result)
    return outcome


def show(services: Services, outcome: Outcome, actor: Actor, replier: Replier) -> None:
    match outcome:
        case Listing(namespace=namespace, rows=rows, context=context):
            replier.ephemeral(deployments_message(namespace, rows, context))
        case StatusView():
            replier.ephemeral(status_message(outcome))
        case HistoryView():
            replier.ephemeral(history_message(outcome))
        case DiffView():
            replier.ephemeral(diff_message(outcome))
        case ApprovalList(namespace=namespace, requests=requests, context=context):
            shown = [services.approvals.shown(request) for request in requests]
            replier.ephemeral(approvals_list_message(namespace, shown, context))
        case AuditList(subject=subject, entries=entries):
            replier.ephemeral(audit_message(entries, subject))
        case CanaryView():
            replier.ephemeral(canary_message(outcome))
        case ApprovalRequested(request=request, rule=rule, target=target):
            # The rule may route its cards to the approvers' channel (a request made in a DM
            # or another channel is pointed there).
            where = rule.channel or actor.channel_id
            card_replier = replier if where == actor.channel_id else replier.elsewhere(where)
            ts = card_replier.in_channel(approval_card(request))
            if ts is not None:
                services.approvals.card_posted(request.id, where, ts)
            pointer = "" if where == actor.channel_id else f" The card is in <#{where}>."
            replier.ephemeral(
                info_message(
                    f"Approval requested (`{code(request.id)}`): "
                    f"*{command_verb(request.action)}* on "
                    f"`{code(target)}`{in_cluster(target.context)} runs once "
                    + (
                        "one approver agrees."
                        if rule.required == 1
                        else f"{rule.required} approvers agree."
                    )
                    + pointer
                )
            )
        case FreezeSet(namespace=namespace):
            announce(services, namespace, freeze_views.freeze_set_message(outcome), replier)
        case FreezeLifted(namespace=namespace, lifted=lifted):
            message = freeze_views.freeze_lifted_message(outcome, actor.user_id)
            if lifted is None:
                replier.ephemeral(message)
            else:
                announce(services, namespace, message, replier)
        case FreezeList():
            replier.ephemeral(freeze_views.freezes_message(outcome))
        case PromotionPlan():
            replier.ephemeral(promotion_views.plan_message(outcome))
        case PromotionStarted(state=state, resumed=resumed, posted=posted):
            # The promotion message itself is in the channel (the service's board posts it).
            if resumed:
                replier.ephemeral(
                    info_message(f"Promotion `{state.id}` resumes at wave {state.wave + 1}.")
                )
            elif not posted:
                replier.ephemeral(
                    info_message(
                        f"Promotion `{state.id}` started, but its message could not be posted "
                        "here (is the bot in this channel?); `/rollout promotions` follows it."
                    )
                )
        case PromotionList():
            replier.ephemeral(promotion_views.promotions_message(outcome))
        case Changed(change=change, reason=reason):
            message = change_message(change, actor, reason)
            if not change.changed:
                replier.ephemeral(message)
                return
            ts = replier.in_channel(message)
            if ts is not None:
                follow(services, change, actor.channel_id, ts)


def announce(services: Services, namespace: str, message: Message, replier: Replier) -> None:
    """In the channel the command came from and in every channel bound to the namespace."""
    replier.in_channel(message)
    elsewhere = services.freezes.channels_for(namespace) if services.freezes else ()
    for channel in elsewhere:
        if channel != replier.channel_id:
            replier.elsewhere(channel).in_channel(message)


def replace_used_buttons(
    replier: Replier, clicked: Clicked, outcome: Outcome, actor: Actor
) -> None:
    """After a click did something, its message says what instead of offering the buttons
    again: "rolled back by @alice", "paused by @alice", "roll back waits for approval"."""
    match outcome:
        case Changed(change=change) if change.changed:
            done = {"undo": "Rolled back", "pause": "Paused"}.get(change.action, "Done")
            note = f"{done} by <@{actor.user_id}> {time_of_day_now()}"
            if change.action == "undo":
                note += ": its progress follows in this thread"
        case Changed(change=change):
            note = f"<@{actor.user_id}> clicked: `{code(change.summary)}` (nothing changed)"
        case ApprovalRequested(request=request):
            what = "Roll back" if request.action == "undo" else "Pause"
            note = (
                f"{what} requested by <@{actor.user_id}>: waiting for approval "
                f"(request `{request.id}`)"
            )
        case _:
            return
    kept = [b for b in clicked.blocks if b.get("type") != "actions"]
    replier.elsewhere(clicked.channel).update(clicked.ts, with_note(kept, note, text=note))


def follow(services: Services, change: Change, channel: str, thread_ts: str) -> None:
    """What follows a change announced in `thread_ts`: a canary's message, or a rollout's
    progress."""
    if change.action == CANARY_ACTION and services.canaries is not None:
        services.canaries.follow(change, channel, thread_ts)
    elif change.changed and change.starts_rollout and services.progress is not None:
        services.progress.track(change, channel, thread_ts)


def auto_promote(
    services: Services, client: WebClient, record: CanaryRecord, settings: rules.Settings
) -> None:
    """`--auto-promote`: Promote for the user who started the canary, as their click would run
    (an approval rule still asks its approvers), answered in the canary's thread."""
    actor = Actor(settings.requester_id, settings.requester_name, record.channel)
    command = cmd.CanaryPromote(
        name=record.deployment,
        namespace=record.namespace,
        context=record.context or None,
    )
    answer(services, command, actor, _ThreadReplier(client, record.channel, record.thread_ts))


class _ThreadReplier(Replier):
    """Answers for nobody's click: everything goes into the canary's thread."""

    def __init__(self, client: WebClient, channel: str, thread_ts: str) -> None:
        super().__init__(None, client, channel)
        self._thread_ts = thread_ts

    def ephemeral(self, message: Message) -> None:
        self.in_channel(message, thread_ts=self._thread_ts)

    def in_channel(self, message: Message, *, thread_ts: str | None = None) -> str | None:
        return super().in_channel(message, thread_ts=thread_ts or self._thread_ts)
