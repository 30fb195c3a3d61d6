"""The /rollout slash command: parse, acknowledge, hand the typed command to the service,
render what came back.

The command is acknowledged as soon as it is parsed and handed on (a parse error or `help` is
the ack's own reply); everything that talks to the cluster, Redis or Slack happens after the
ack, so the 3-second deadline holds whatever the cluster does. Reads answer the caller ephemerally;
changes are announced in the channel.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltRequest, Respond

from bot.domain import verbs as cmd
from bot.domain.errors import NotPermitted
from bot.domain.targets import Actor
from bot.domain.views import ApprovalList, AuditList, DiffView, HistoryView, Listing, StatusView
from bot.observability.logs import log_context
from bot.observability.metrics import metrics
from bot.services.canary import CanaryView
from bot.services.commands import ApprovalRequested, Changed, Outcome
from bot.services.container import Services
from bot.services.freezes import FreezeLifted, FreezeList, FreezeSet
from bot.services.progress.verdicts import command_verb
from bot.services.promotions import PromotionList, PromotionPlan, PromotionStarted
from handlers import canary
from handlers.replies import Replier, user_facing_errors
from handlers.views import blocks
from handlers.views import freezes as freeze_views
from handlers.views import promotions as promotion_views
from handlers.views.canary import canary_message
from handlers.work import Dispatch, Reply, RunCommand, hand_on, not_taken_message

log = logging.getLogger(__name__)


def register(app: App, services: Services, dispatch: Dispatch) -> None:
    @app.command("/rollout")
    def handle_rollout_command(
        ack: Ack,
        command: dict[str, Any],
        context: BoltContext,
        request: BoltRequest,
        respond: Respond,
    ) -> None:
        with metrics().time_ack():
            parsed = _parse(ack, command, services.max_replicas)
            if parsed is None:
                return
            actor = Actor(
                context.user_id or "",
                str(command.get("user_name") or context.user_id or ""),
                context.channel_id or "",
            )
            work = RunCommand(parsed, actor, Reply.to(respond, actor.channel_id, request))
            # The ack leaves when this returns (listeners run in the request's thread), so it
            # can still say that the command was not taken.
            if hand_on(dispatch, work):
                ack()
            else:
                message = not_taken_message(work)
                ack(text=message.text, blocks=message.blocks)


def _parse(ack: Ack, payload: dict[str, Any], max_replicas: int) -> cmd.Command | None:
    """The typed command; None when it was answered in the ack itself (an error, or help)."""
    try:
        parsed = cmd.parse_command(str(payload.get("text") or ""), max_replicas=max_replicas)
    except cmd.CommandError as exc:
        message = blocks.error_message(exc.message, exc.usage)
        ack(text=message.text, blocks=message.blocks)
        metrics().command("unknown", "invalid")
        return None
    if isinstance(parsed, cmd.Help):
        message = blocks.help_message(parsed.verb)
        ack(text=message.text, blocks=message.blocks)
        metrics().command("help", "ok")
        return None
    return parsed


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
            replier.ephemeral(blocks.deployments_message(namespace, rows, context))
        case StatusView():
            replier.ephemeral(blocks.status_message(outcome))
        case HistoryView():
            replier.ephemeral(blocks.history_message(outcome))
        case DiffView():
            replier.ephemeral(blocks.diff_message(outcome))
        case ApprovalList(namespace=namespace, requests=requests, context=context):
            shown = [services.approvals.shown(request) for request in requests]
            replier.ephemeral(blocks.approvals_list_message(namespace, shown, context))
        case AuditList(subject=subject, entries=entries):
            replier.ephemeral(blocks.audit_message(entries, subject))
        case CanaryView():
            replier.ephemeral(canary_message(outcome))
        case ApprovalRequested(request=request, rule=rule, target=target):
            # The rule may route its cards to the approvers' channel (a request made in a DM
            # or another channel is pointed there).
            where = rule.channel or actor.channel_id
            card_replier = replier if where == actor.channel_id else replier.elsewhere(where)
            ts = card_replier.in_channel(blocks.approval_card(request))
            if ts is not None:
                services.approvals.card_posted(request.id, where, ts)
            pointer = "" if where == actor.channel_id else f" The card is in <#{where}>."
            replier.ephemeral(
                blocks.info_message(
                    f"Approval requested (`{blocks.code(request.id)}`): "
                    f"*{command_verb(request.action)}* on "
                    f"`{blocks.code(target)}`{blocks.in_cluster(target.context)} runs once "
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
                    blocks.info_message(f"Promotion `{state.id}` resumes at wave {state.wave + 1}.")
                )
            elif not posted:
                replier.ephemeral(
                    blocks.info_message(
                        f"Promotion `{state.id}` started, but its message could not be posted "
                        "here (is the bot in this channel?); `/rollout promotions` follows it."
                    )
                )
        case PromotionList():
            replier.ephemeral(promotion_views.promotions_message(outcome))
        case Changed(change=change, reason=reason):
            message = blocks.change_message(change, actor, reason)
            if not change.changed:
                replier.ephemeral(message)
                return
            ts = replier.in_channel(message)
            if ts is not None:
                canary.follow(services, change, actor.channel_id, ts)


def announce(services: Services, namespace: str, message: blocks.Message, replier: Replier) -> None:
    """In the channel the command came from and in every channel bound to the namespace."""
    replier.in_channel(message)
    elsewhere = services.freezes.channels_for(namespace) if services.freezes else ()
    for channel in elsewhere:
        if channel != replier.channel_id:
            replier.elsewhere(channel).in_channel(message)
