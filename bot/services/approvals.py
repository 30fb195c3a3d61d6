"""The approval use case: request → approve/reject/cancel/expire → run exactly once.

State lives in Redis (`RedisApprovalStore`, atomic Lua transitions), so any bot replica can
take any click and a restart loses nothing. The action itself runs through the same
`Executor` as an unapproved command, bound to the Deployment's fingerprint at request time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.domain import verbs as cmd
from bot.domain.approval import (
    Approval,
    ApprovalOutcome,
    ApprovalRequest,
    ApprovalState,
    decision_content,
    store_status,
)
from bot.domain.audit import AuditEvent, AuditEventKind
from bot.domain.errors import (
    NotDurable,
    NotFound,
    NotPermitted,
    Refused,
    RolloutBotError,
    StoreError,
    UnknownContext,
)
from bot.domain.freeze_outcomes import break_glass_reason
from bot.domain.integrity import Sealer
from bot.domain.mrkdwn import code
from bot.domain.policy import ApprovalRule
from bot.domain.targets import Actor, Change
from bot.observability.metrics import metrics
from bot.services.access import Access
from bot.services.clusters import Contexts
from bot.services.execution import (
    Executor,
    Mutation,
    audit_parameters,
    mutation_of,
    reason_of,
    target_of,
)
from bot.services.freezes import FreezeService
from bot.services.identity import BY_APPROVAL_SWEEPER
from bot.services.ports import ApprovalStore, AuditLog, Directory
from bot.services.previews import PREVIEW_LIMIT
from bot.services.registry import change_role
from bot.services.rollouts import Rollouts
from bot.services.tools import Tools

log = logging.getLogger(__name__)

#: Shown instead of a stored field whose seal does not hold.
WITHHELD = "(withheld: this part of the stored request failed the bot's integrity check)"
UNVERIFIED = "(unverified)"

# An approved request normally starts within a second of its last click; one still waiting
# after this long was orphaned and is started by whichever replica sweeps next.
STALLED_AFTER = timedelta(seconds=30)
# A single PATCH is bounded by the Kubernetes timeout (seconds); a request still "running"
# after minutes lost its replica mid-call.
RUNNING_ORPHANED_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Decision:
    """The result of a click, for the handler to render."""

    outcome: ApprovalOutcome
    change: Change | None = None
    error: str | None = None
    #: The stored record failed its integrity check: the channel is told, not only the clicker.
    tampered: bool = False


class ApprovalFlow:
    def __init__(
        self,
        store: ApprovalStore,
        audit: AuditLog,
        rollouts: Rollouts,
        executor: Executor,
        directory: Directory,
        *,
        access: Access,
        sealer: Sealer,
        cluster_name: str,
        clock: Callable[[], datetime] | None = None,
        contexts: Contexts | None = None,
        freezes: FreezeService | None = None,
    ) -> None:
        self.access = access
        #: Change windows: an approved request a freeze now stops is voided, and a break-glass
        #: request waits for (and is re-checked against) the break-glass approvers.
        self.freezes = freezes
        self.sealer = sealer
        self.store = store
        self.audit = audit
        self.rollouts = rollouts
        self.executor = executor
        self.directory = directory
        self.cluster_name = cluster_name
        self.contexts = contexts
        self._now = clock or (lambda: datetime.now(UTC))

    # -- reads -----------------------------------------------------------------------------------

    def get(self, approval_id: str) -> ApprovalRequest | None:
        return self.store.get(approval_id)

    def pending(
        self, namespace: str | None = None, context: str | None = None
    ) -> list[ApprovalRequest]:
        """Waiting requests, of one namespace and/or one context (cluster) when given."""
        found = self.store.pending(namespace)
        if context is None:
            return found
        return [request for request in found if (request.cluster or self.cluster_name) == context]

    def card_posted(self, approval_id: str, channel: str, ts: str) -> None:
        """Remember where the request's card is, so every replica can redraw it."""
        seal = self.sealer.seal("approval-card", [approval_id, channel, ts])
        self.store.set_message(approval_id, channel, ts, card_seal=seal)

    def card_of(self, request: ApprovalRequest) -> tuple[str, str] | None:
        """Where the request's card is (channel, ts), if the bot posted it there: a place
        written by anything else is never updated."""
        if not (request.card_channel and request.message_ts):
            return None
        if not self.sealer.valid(request.card_seal, "approval-card", request.card_content()):
            log.warning("approval request %s: its card's place failed its seal", request.id)
            return None
        return request.card_channel, request.message_ts

    def shown(self, request: ApprovalRequest) -> ApprovalRequest:
        """The request as a card or reply may show it: each field whose seal does not hold
        (written or edited outside the bot) is replaced by a notice, never shown."""
        update: dict[str, object] = {}
        if not self.sealer.valid(request.seal, "approval", request.sealed_content()):
            update.update(requester_name=UNVERIFIED, preview=WITHHELD, reason="")
        if request.decided_by is not None and not self.sealer.valid(
            request.decision_seal, "approval-decision", request.decision_content()
        ):
            update.update(decided_by=None, decided_by_name=None, reject_reason=WITHHELD)
        if request.result_message is not None and not self.sealer.valid(
            request.result_seal, "approval-result", request.result_content()
        ):
            update.update(result_message=WITHHELD)
        return request.model_copy(update=update) if update else request

    # -- request ---------------------------------------------------------------------------------

    def request(
        self, command: Mutation, namespace: str, actor: Actor, rule: ApprovalRule
    ) -> ApprovalRequest:
        target = target_of(command, namespace)
        role = change_role(type(command))  # type: ignore[arg-type]
        if role is None:
            raise AssertionError(f"not a mutation: {command!r}")
        fingerprint, preview = role.card(
            Tools(self.rollouts, self.executor.canaries), command, target
        )
        now = self._now()
        request = ApprovalRequest(
            requester_id=actor.user_id,
            requester_name=actor.user_name,
            channel=actor.channel_id,
            action=command.action,
            cluster=target.context or self.cluster_name,
            namespace=namespace,
            deployment=command.name,
            command=cmd.command_record(command),
            preview=preview[:PREVIEW_LIMIT],
            reason=reason_of(command) or "",
            required=rule.required,
            approvers=list(rule.approvers),
            created_at=now,
            expires_at=now + rule.ttl,
            fingerprint=fingerprint,
        )
        request = request.model_copy(
            update={"seal": self.sealer.seal("approval", request.sealed_content())}
        )
        # Audited first: a request nobody can trace must not exist.
        self._audit(AuditEventKind.REQUEST, request, actor.user_id, actor.user_name)
        return self.store.create(request)

    # -- decisions -------------------------------------------------------------------------------

    def approve(self, approval_id: str, user_id: str, user_name: str) -> Decision:
        request = self._existing(approval_id)
        tampered = self._tampering(request)
        if tampered:
            return self._refuse_tampered(request, tampered)
        counts = request.state == ApprovalState.PENDING and user_id != request.requester_id
        if counts:
            self._require_approver(request, user_id, user_name)
            # The entry naming the approver is written before the vote: if the audit cannot
            # take it, nothing is approved. The APPROVAL entry after the vote confirms it counted.
            self._audit(AuditEventKind.VOTE, request, user_id, user_name)
        now = self._now()
        vote = Approval(user_id=user_id, user_name=user_name, at=now)
        sig = self.sealer.seal("vote", vote.sealed_content(request.id))
        decided = self._decision_seal(request.id, user_id, user_name, "", now)
        try:
            outcome = self.store.approve(
                approval_id, user_id, user_name, now, sig=sig, decision_seal=decided
            )
        except NotDurable as exc:
            # Had this vote decided the request, it would sit approved on the primary, and be
            # resumed later: close it now, as the user is told, so it never runs.
            if store_status(exc.reply) == "approved":
                self._close_not_durable(approval_id, ApprovalState.APPROVED, exc)
            raise
        current = outcome.request or request
        if outcome.status in ("recorded", "approved"):
            self._audit_quietly(AuditEventKind.APPROVAL, current, user_id, user_name)
            if outcome.status == "approved":
                metrics().approval_decided("approved")
        if outcome.status == "expired":
            self._audit(AuditEventKind.EXPIRY, current, "", "")
            metrics().approval_decided("expired")
        if not outcome.should_execute:
            return Decision(outcome)
        return self._execute(current, outcome)

    def reject(self, approval_id: str, user_id: str, user_name: str, reason: str) -> Decision:
        request = self._existing(approval_id)
        if request.state == ApprovalState.PENDING:
            self._require_approver(request, user_id, user_name)
        now = self._now()
        decided = self._decision_seal(request.id, user_id, user_name, reason, now)
        outcome = self.store.reject(
            approval_id, user_id, user_name, reason, now, decision_seal=decided
        )
        if outcome.status == "rejected" and outcome.request is not None:
            self._audit(AuditEventKind.REJECTION, outcome.request, user_id, user_name, reason)
            metrics().approval_decided("rejected")
        return Decision(outcome)

    def cancel(self, approval_id: str, user_id: str, user_name: str) -> Decision:
        request = self._existing(approval_id)
        now = self._now()
        decided = self._decision_seal(request.id, user_id, user_name, "", now)
        outcome = self.store.cancel(
            approval_id, user_id, now, user_name=user_name, decision_seal=decided
        )
        if outcome.status == "cancelled" and outcome.request is not None:
            self._audit(AuditEventKind.CANCELLATION, outcome.request, user_id, user_name)
            metrics().approval_decided("cancelled")
        return Decision(outcome)

    def expire_due(self) -> list[ApprovalRequest]:
        expired = self.store.expire_due(self._now())
        for request in expired:
            self._audit(AuditEventKind.EXPIRY, request, "", "")
            metrics().approval_decided("expired")
        return expired

    def resume_stalled(self, min_age: timedelta = STALLED_AFTER) -> list[Decision]:
        """Runs requests that were approved but never started: the replica that took the final
        click died, or Redis failed between the approval and the start. Starting is a
        compare-and-set (approved → running), so a request still runs at most once."""
        now = self._now()
        decisions = []
        for request in self.store.active():
            claimed = request.claimed_at or request.decided_at
            if claimed is None:
                continue
            if request.state == ApprovalState.RUNNING and now - claimed > RUNNING_ORPHANED_AFTER:
                decisions.append(self._orphaned_while_running(request))
                continue
            if request.state != ApprovalState.APPROVED or now - claimed < min_age:
                continue
            log.info("resuming approved request %s", request.id)
            decisions.append(
                self._execute(
                    request,
                    ApprovalOutcome("approved", request, True),
                    continued_by=BY_APPROVAL_SWEEPER,
                )
            )
        return decisions

    def _orphaned_while_running(self, request: ApprovalRequest) -> Decision:
        """The replica running it died mid-call: whether the API server applied the change is
        unknown, so the card says exactly that instead of guessing either way."""
        why = (
            "The bot stopped while running this request, so whether the change was applied is "
            f"unknown. Check `/rollout history {request.deployment} -n {request.namespace}` "
            "before requesting it again."
        )
        failed = self.store.mark(
            request.id,
            ApprovalState.RUNNING,
            ApprovalState.FAILED,
            why,
            result_seal=self._result_seal(request.id, why),
        )
        if failed.status == "marked" and failed.request is not None:
            self._audit(AuditEventKind.OUTCOME, failed.request, "", "", why)
        return Decision(failed, error=why if failed.status == "marked" else None)

    # -- helpers ---------------------------------------------------------------------------------

    def _execute(
        self, request: ApprovalRequest, outcome: ApprovalOutcome, *, continued_by: str = ""
    ) -> Decision:
        """Runs an approved request after checking it again, just before it runs: the record is
        the bot's own, the policy still allows it, enough current approvers agreed, it has not
        expired, and the object is still what the card showed."""
        tampered = self._tampering(request)
        if tampered:
            return self._refuse_tampered(request, tampered)
        mutation = mutation_of(request)
        assert mutation is not None  # _tampering() checked it
        why = self._no_longer_allowed(request)
        if why is None and self.freezes is not None:
            why = self.freezes.void_reason(request)
        if why is None and request.fingerprint:
            try:
                now_print = self.rollouts.binding(
                    target_of(mutation, request.namespace, request.cluster or None),
                    request.action,
                )
            except NotFound:
                now_print = "gone"
            if now_print != request.fingerprint:
                why = (
                    f"`{request.deployment}` changed after this was requested, so the approval "
                    "no longer matches what would run. Request it again."
                )
        if why is not None:
            return self._void(request, why)
        try:
            running = self.store.mark(request.id, ApprovalState.APPROVED, ApprovalState.RUNNING)
        except NotDurable as exc:
            if store_status(exc.reply) == "marked":  # this replica claimed it
                self._close_not_durable(request.id, ApprovalState.RUNNING, exc)
            raise
        if running.status != "marked":
            # Another replica or a void got there first; it owns the outcome.
            return Decision(running)
        requester = Actor(request.requester_id, request.requester_name, request.channel)
        try:
            change = self.executor.run(
                mutation,
                request.namespace,
                requester,
                approval_id=request.id,
                expect=request.fingerprint or None,
                context=self._context_of(request),
                approvers=[vote.user_id for vote in request.approvals],
                continued_by=continued_by,
            )
        except RolloutBotError as exc:
            failed = self.store.mark(
                request.id,
                ApprovalState.RUNNING,
                ApprovalState.FAILED,
                exc.user_message,
                result_seal=self._result_seal(request.id, exc.user_message),
            )
            return Decision(replace(outcome, request=failed.request), error=exc.user_message)
        except NotDurable as exc:
            # The execution entry was not confirmed, so nothing ran: the request fails now
            # rather than waiting to be found "running" by the sweeper.
            self._close_not_durable(request.id, ApprovalState.RUNNING, exc)
            raise
        summary = change.summary or "; ".join(change.details)
        done = self.store.mark(
            request.id,
            ApprovalState.RUNNING,
            ApprovalState.DONE,
            summary,
            result_seal=self._result_seal(request.id, summary),
        )
        if self.freezes is not None and break_glass_reason(request):
            self.freezes.audit_break_glass(request, change)
        return Decision(replace(outcome, request=done.request), change=change)

    def _close_not_durable(self, approval_id: str, state: ApprovalState, exc: NotDurable) -> None:
        """Marks a request whose decision or start was not confirmed by enough Redis replicas
        as failed (best effort: the primary takes the mark even when replicas lag), so neither
        this replica nor the sweeper of another runs it later."""
        try:
            self.store.mark(
                approval_id,
                state,
                ApprovalState.FAILED,
                exc.message,
                result_seal=self._result_seal(approval_id, exc.message),
            )
        except StoreError:
            log.warning("could not close request %s after a write was not durable", approval_id)

    def _context_of(self, request: ApprovalRequest) -> str | None:
        """The context the approved change runs in, as a typed command's would be: "" with one
        cluster (so its announcement reads like every other one, without naming the cluster)."""
        if self.contexts is None or not request.cluster:
            return request.cluster or None
        try:
            return self.contexts.resolve(request.cluster) or None
        except UnknownContext:
            return request.cluster

    # -- integrity and re-checks -----------------------------------------------------------------

    def _decision_seal(
        self, request_id: str, user_id: str, user_name: str, reason: str, at: datetime
    ) -> str:
        content = decision_content(request_id, user_id, user_name, reason, at)
        return self.sealer.seal("approval-decision", content)

    def _result_seal(self, request_id: str, message: str) -> str:
        return self.sealer.seal("approval-result", [request_id, message])

    def _tampering(self, request: ApprovalRequest) -> str | None:
        """Why the stored record is not the bot's own, or None when it is."""
        if not request.seal or not self.sealer.valid(
            request.seal, "approval", request.sealed_content()
        ):
            return "its stored record does not carry the bot's seal (it was written or edited "
            "outside the bot)"
        if mutation_of(request) is None:
            return "its stored command is not one the bot can run"
        for vote in request.approvals:
            if not self.sealer.valid(vote.sig, "vote", vote.sealed_content(request.id)):
                return f"the vote recorded for `{code(vote.user_id)}` was not made by the bot"
        return None

    def _refuse_tampered(self, request: ApprovalRequest, problem: str) -> Decision:
        why = (
            f"This request was refused because {problem}. Nothing was changed. An operator "
            "should check who can write to the bot's Redis."
        )
        log.warning("approval request %s failed its integrity check", request.id)
        voided = self.store.void(
            request.id, why, self._now(), result_seal=self._result_seal(request.id, why)
        )
        self._audit_quietly(AuditEventKind.TAMPERING, voided.request or request, "", "", problem)
        return Decision(voided, error=why, tampered=True)

    def _no_longer_allowed(self, request: ApprovalRequest) -> str | None:
        """The policy as it is now: may the requester still do this, and do enough of the
        votes come from people who are still approvers?"""
        if self._now() >= request.expires_at:
            return "This request expired before it could run. Request it again."
        try:
            self.access.check(
                request.requester_id,
                request.channel,
                request.action,
                request.namespace,
                request.cluster,
            )
        except NotPermitted:
            return (
                f"<@{request.requester_id}> may no longer *{request.action}* in "
                f"`{request.namespace}` under the current policy, so the request did not run."
            )
        if break_glass_reason(request):
            # Re-checked against the break-glass approvers, never the ordinary rule.
            rule = self.freezes.break_glass_rule() if self.freezes is not None else None
            if rule is None:
                return (
                    "The policy no longer names break-glass approvers, so this break-glass "
                    "request did not run. Nothing was changed."
                )
        else:
            rule = self.access.policy.approval_rule_for(
                request.action, request.namespace, request.cluster
            )
        if rule is None:
            return None  # the change no longer needs approval at all
        counted = {
            vote.user_id
            for vote in request.approvals
            if vote.user_id != request.requester_id and self._is_approver(vote.user_id, rule)
        }
        if len(counted) < max(request.required, rule.required):
            return (
                "Not enough of the approvals come from people who are approvers under the "
                "current policy, so the request did not run. Request it again."
            )
        return None

    def _is_approver(self, user_id: str, rule: ApprovalRule) -> bool:
        if user_id in rule.approvers:
            return True
        groups = [g for g in rule.approvers if g.startswith("S")]
        return bool(groups) and bool(self.directory.groups_of(user_id, groups))

    def _void(self, request: ApprovalRequest, why: str) -> Decision:
        voided = self.store.void(
            request.id, why, self._now(), result_seal=self._result_seal(request.id, why)
        )
        if voided.status == "voided":  # only when the void won
            self._audit(AuditEventKind.VOID, voided.request or request, "", "", why)
            metrics().approval_decided("voided")
            return Decision(voided, error=why)
        return Decision(voided)

    def _existing(self, approval_id: str) -> ApprovalRequest:
        request = self.store.get(approval_id)
        if request is None:
            raise Refused("This approval request no longer exists (it may have been cleaned up).")
        return request

    def _require_approver(self, request: ApprovalRequest, user_id: str, user_name: str) -> None:
        if user_id in request.approvers:
            return
        groups = [g for g in request.approvers if g.startswith("S")]
        # DirectoryUnavailable propagates: if Slack cannot be asked, approval is refused.
        if groups and self.directory.groups_of(user_id, groups):
            return
        self._audit(AuditEventKind.REFUSAL, request, user_id, user_name, "not an approver")
        raise NotPermitted(
            "You are not an approver for this request, so your click was not counted. "
            "Approvers: " + ", ".join(_mention(a) for a in request.approvers) + "."
        )

    def _audit(
        self,
        kind: AuditEventKind,
        request: ApprovalRequest,
        user_id: str,
        user_name: str,
        reason: str | None = None,
    ) -> None:
        self.audit.append(
            AuditEvent(
                event=kind,
                user_id=user_id,
                user_name=user_name,
                channel=request.channel,
                action=request.action,
                cluster=request.cluster,
                namespace=request.namespace,
                deployment=request.deployment,
                parameters=audit_parameters(request),
                reason=reason if reason is not None else request.reason,
                approval_id=request.id,
                outcome=kind.value,
            )
        )

    def _audit_quietly(
        self,
        kind: AuditEventKind,
        request: ApprovalRequest,
        user_id: str,
        user_name: str,
        reason: str | None = None,
    ) -> None:
        """For entries that follow a decision already recorded: losing one must not turn the
        reply into "nothing was changed"."""
        try:
            self._audit(kind, request, user_id, user_name, reason)
        except StoreError:
            log.warning("could not audit %s of %s", kind.value, request.id)


def _mention(principal: str) -> str:
    return f"<!subteam^{principal}>" if principal.startswith("S") else f"<@{principal}>"
