"""The /rollout slash command: parse, acknowledge, authorize, hand off, render.

The command is acknowledged as soon as it is parsed (a parse error or `help` is the ack's own
reply); everything that talks to the cluster, Redis or Slack happens after the ack, so the
3-second deadline holds whatever the cluster does. Reads answer the caller ephemerally;
mutations are announced in the channel.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain import commands as cmd
from bot.domain.errors import NotPermitted
from bot.observability.logs import log_context
from bot.observability.metrics import metrics
from bot.services.container import Services
from bot.services.execution import Mutation, target_of
from bot.services.rollouts import Actor, Change, Target
from handlers.replies import Replier, user_facing_errors
from handlers.views import blocks

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> CommandRunner:
    runner = CommandRunner(services)

    @app.command("/rollout")
    def handle_rollout_command(
        ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        runner.handle(ack, command, respond, client)

    return runner


class CommandRunner:
    def __init__(self, services: Services) -> None:
        self.services = services

    def handle(
        self, ack: Ack, payload: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        with metrics().time_ack():
            self._parse_and_ack(ack, payload, respond, client)

    def _parse_and_ack(
        self, ack: Ack, payload: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        try:
            parsed = cmd.parse_command(
                str(payload.get("text") or ""), max_replicas=self.services.max_replicas
            )
        except cmd.CommandError as exc:
            message = blocks.error_message(exc.message, exc.usage)
            ack(text=message.text, blocks=message.blocks)
            metrics().command("unknown", "invalid")
            return
        if isinstance(parsed, cmd.Help):
            message = blocks.help_message(parsed.verb)
            ack(text=message.text, blocks=message.blocks)
            metrics().command("help", "ok")
            return
        ack()

        channel_id = str(payload.get("channel_id") or "")
        user_id = str(payload.get("user_id") or "")
        actor = Actor(user_id, str(payload.get("user_name") or user_id), channel_id)
        replier = Replier(respond, client, channel_id)
        self.services.background.submit(self.run_safely, parsed, actor, replier)

    def run_safely(self, command: cmd.Command, actor: Actor, replier: Replier) -> None:
        namespace = getattr(command, "namespace", None) or ""
        deployment = getattr(command, "deployment", None) or ""
        outcome = "failed"
        with (
            log_context(
                request_id=uuid.uuid4().hex[:12],
                user=actor.user_id,
                verb=command.action,
                target=f"{namespace}/{deployment}".strip("/") or None,
            ),
            user_facing_errors(replier.ephemeral),
        ):
            try:
                self.run(command, actor, replier)
                outcome = "ok"
            except NotPermitted:
                outcome = "denied"
                raise
        metrics().command(command.action, outcome)

    def run(self, command: cmd.Command, actor: Actor, replier: Replier) -> None:
        access = self.services.access
        if isinstance(command, cmd.Approvals) and command.namespace is None:
            # Without -n: every waiting request this user may see from this channel.
            visible = [
                request
                for request in self.services.approvals.pending()
                if access.may(actor.user_id, actor.channel_id, "approvals", request.namespace)
            ]
            replier.ephemeral(blocks.approvals_list_message(None, visible))
            return
        namespace = access.namespace_for(actor.channel_id, getattr(command, "namespace", None))
        try:
            access.check(actor.user_id, actor.channel_id, command.action, namespace)
        except NotPermitted:
            if command.is_mutation:
                self.services.executor.audit_denial(command, namespace, actor)
            raise
        command = dataclasses.replace(command, namespace=namespace)  # type: ignore[arg-type]
        if command.is_mutation:
            self._mutate(command, namespace, actor, replier)  # type: ignore[arg-type]
        else:
            replier.ephemeral(self._read(command, namespace))

    # -- reads -----------------------------------------------------------------------------------

    def _read(self, command: cmd.Command, namespace: str) -> blocks.Message:
        rollouts = self.services.rollouts
        match command:
            case cmd.ListDeployments():
                return blocks.deployments_message(namespace, rollouts.list_deployments(namespace))
            case cmd.Status():
                target = Target(namespace, command.deployment, command.kind)
                return blocks.status_message(rollouts.status(target))
            case cmd.History():
                target = Target(namespace, command.deployment, command.kind)
                return blocks.history_message(rollouts.history(target, command.revision))
            case cmd.Diff():
                target = Target(namespace, command.deployment, command.kind)
                view_diff = rollouts.diff(target, command.rev, command.rev2)
                return blocks.diff_message(view_diff)
            case cmd.Approvals():
                pending = self.services.approvals.pending(namespace)
                return blocks.approvals_list_message(namespace, pending)
            case cmd.Audit():
                entries = self.services.audit.recent(
                    command.limit, namespace=namespace, deployment=command.deployment
                )
                what = (
                    f"`{namespace}/{command.deployment}`"
                    if command.deployment
                    else (f"namespace `{namespace}`")
                )
                return blocks.audit_message(entries, what)
        raise AssertionError(f"not a read: {command!r}")

    # -- mutations -------------------------------------------------------------------------------

    def _mutate(self, command: Mutation, namespace: str, actor: Actor, replier: Replier) -> None:
        rule = self.services.access.policy.approval_rule_for(command.action, namespace)
        if rule is not None:
            request = self.services.approvals.request(command, namespace, actor, rule)
            card = blocks.approval_card(request)
            ts = replier.in_channel(card)
            if ts is not None:
                self.services.approvals.card_posted(request.id, actor.channel_id, ts)
            replier.ephemeral(
                blocks.info_message(
                    f"Approval requested (`{request.id}`): *{command.action}* on "
                    f"`{target_of(command, namespace)}` runs once {rule.required} "
                    "approver(s) agree."
                )
            )
            return
        change = self.services.executor.run(command, namespace, actor)
        self.announce(change, actor, getattr(command, "reason", None), replier)

    def announce(self, change: Change, actor: Actor, reason: str | None, replier: Replier) -> None:
        message = blocks.change_message(change, actor, reason)
        if not change.changed:
            replier.ephemeral(message)
            return
        ts = replier.in_channel(message)
        if ts is not None and change.starts_rollout and self.services.progress is not None:
            self.services.progress.track(change, actor.channel_id, ts)
