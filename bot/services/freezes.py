"""Change windows as a use case: which freezes are in force, setting and lifting them from
Slack, stopping changes during them, and breaking glass.

    FreezeService.gate(change, namespace, ...)   None: go ahead; the break-glass rule: ask its
                                                 approvers; raises Frozen: refused, and why
    FreezeService.freeze / unfreeze / overview   the `freeze`, `unfreeze`, `freezes` verbs
    FreezeService.void_reason(request)           an approved request a freeze now stops

Scheduled freezes come from the policy (re-read at every check, so a reloaded policy applies
at once); freezes set from Slack live in Redis, sealed with the bot's key (a record without a
valid seal is ignored), and end on their own. Every freeze, unfreeze, refusal and break-glass
change is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.domain import verbs as cmd
from bot.domain.approval import ApprovalRequest, format_time
from bot.domain.audit import AuditEvent
from bot.domain.errors import Refused, StoreError
from bot.domain.freeze_outcomes import FreezeLifted, FreezeList, FreezeSet, break_glass_reason
from bot.domain.freezes import (
    ActiveFreeze,
    AdHocFreeze,
    Frozen,
    describe_until,
    refusal_message,
)
from bot.domain.integrity import Sealer
from bot.domain.policy import ApprovalRule, FreezeRule
from bot.domain.targets import Actor, Change
from bot.services.access import Access
from bot.services.ports import AuditLog, FreezeStore

log = logging.getLogger(__name__)

#: The name a freeze set from Slack goes by.
AD_HOC_NAME = "incident freeze"
# How far ahead `/rollout freezes` looks for the next scheduled freezes.
_LOOKAHEAD = timedelta(days=35)

FREEZE_EVENT = "freeze"
UNFREEZE_EVENT = "unfreeze"
BREAK_GLASS_EVENT = "break_glass"

FREEZE_NEEDS_STATE_KEY = (
    "Freezes from Slack are off: the bot has no ROLLOUT_BOT_STATE_KEY, so a freeze could not be "
    "sealed with a key every replica and the next start share, and would silently stop holding. "
    "Nothing was frozen. Ask whoever runs the bot to set ROLLOUT_BOT_STATE_KEY; scheduled "
    "freezes in the policy work without it."
)


class FreezeService:
    def __init__(
        self,
        access: Access,
        store: FreezeStore,
        audit: AuditLog,
        sealer: Sealer,
        *,
        cluster_name: str,
        shared_key: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.access = access
        #: Whether the seal key is the operator's ROLLOUT_BOT_STATE_KEY. A per-process key would
        #: make a freeze that other processes, replicas and the next start ignore as forged.
        self.shared_key = shared_key
        self.store = store
        self.audit = audit
        self.sealer = sealer
        #: The default context's label: what a one-cluster bot's freezes are keyed by.
        self.cluster_name = cluster_name
        self._now = clock or (lambda: datetime.now(UTC))
        #: Seals already reported as bad, so each is logged once.
        self._reported: set[str] = set()

    # -- what is frozen ------------------------------------------------------------------------

    def in_force(
        self, namespace: str, cluster: str, now: datetime | None = None
    ) -> list[ActiveFreeze]:
        """Every freeze covering ``namespace`` of ``cluster`` at ``now``, ending last first."""
        now = now or self._now()
        found = [
            active
            for rule in self.access.policy.freezes
            if rule.covers(namespace, cluster)
            and (active := _scheduled(rule, rule.window().covering(now))) is not None
        ]
        ad_hoc = self._ad_hoc(cluster, namespace)
        if ad_hoc is not None and ad_hoc.set_at <= now < ad_hoc.ends_at:
            found.append(_active(ad_hoc))
        return sorted(found, key=lambda freeze: freeze.ends_at, reverse=True)

    def blocking(self, action: str, namespace: str, cluster: str) -> ActiveFreeze | None:
        """The freeze that stops ``action`` here now (the one ending last), or None."""
        return next(
            (f for f in self.in_force(namespace, cluster) if not f.allows(action)),
            None,
        )

    def break_glass_rule(self) -> ApprovalRule | None:
        rule = self.access.policy.break_glass
        return rule.as_approval_rule() if rule is not None else None

    # -- the gate every typed change passes -----------------------------------------------------

    def gate(
        self,
        command: cmd.Command,
        namespace: str,
        cluster: str,
        actor: Actor,
        *,
        multi: bool = False,
    ) -> ApprovalRule | None:
        """None: no freeze stops this change. The break-glass approval rule: the change asks
        to break glass during a freeze, and waits for those approvers. Raises ``Frozen`` (a
        refusal naming the freeze, its end and how to break glass) or ``Refused``."""
        frozen = self.blocking(command.action, namespace, cluster)
        reason = getattr(command, "break_glass", None)
        where = f"{cluster}/{namespace}" if multi else namespace
        if frozen is None:
            if reason:
                raise Refused(
                    f"No freeze stops *{command.action}* in `{where}` now, so there is no glass "
                    "to break. Nothing was changed: run the command again without "
                    "`--break-glass`."
                )
            return None
        if reason:
            rule = self.break_glass_rule()
            if rule is not None:
                return rule
            message = (
                f"`{where}` is frozen by *{frozen.name}*, "
                f"{describe_until(frozen.ends_at, frozen.timezone, self._now())}, and the policy "
                "names no `break_glass` approvers, so this freeze cannot be broken from Slack. "
                "Nothing was changed; ask an admin to add `break_glass` to the policy."
            )
        else:
            message = refusal_message(
                frozen,
                command.action,
                where,
                self._now(),
                break_glass=self.access.policy.break_glass is not None,
            )
        self._audit_quietly(
            AuditEvent(
                event="denial",
                user_id=actor.user_id,
                user_name=actor.user_name,
                channel=actor.channel_id,
                action=command.action,
                cluster=cluster,
                namespace=namespace,
                deployment=str(getattr(command, "name", "") or ""),
                parameters={"command": cmd.render_command(command), "freeze": frozen.name},
                reason=frozen.reason,
                outcome=f"refused: frozen by {frozen.name}",
            )
        )
        raise Frozen(message)

    # -- approved requests ----------------------------------------------------------------------

    def void_reason(self, request: ApprovalRequest) -> str | None:
        """Why an approved request must not run now that a freeze is in force (None: it may).
        A break-glass request is what breaks the freeze, so it is never stopped by one."""
        if break_glass_reason(request):
            return None
        frozen = self.blocking(request.action, request.namespace, request.cluster)
        if frozen is None:
            return None
        why = f" ({frozen.reason})" if frozen.reason else ""
        return (
            f"`{request.namespace}` was frozen by *{frozen.name}*{why} after this "
            f"was requested, {describe_until(frozen.ends_at, frozen.timezone, self._now())}. "
            "An approval given before a freeze does not carry through it, so the request was "
            "voided and nothing ran. Request it again after the freeze, or with "
            "`--break-glass` if it cannot wait."
        )

    def audit_break_glass(self, request: ApprovalRequest, change: Change) -> None:
        """The break-glass change as its own entry: the reason, who asked and who let it
        through (best effort: the change already ran, and its execution entry records it)."""
        approvers = ", ".join(
            f"{vote.user_name or vote.user_id} ({vote.user_id})" for vote in request.approvals
        )
        self._audit_quietly(
            AuditEvent(
                event=BREAK_GLASS_EVENT,
                user_id=request.requester_id,
                user_name=request.requester_name,
                channel=request.channel,
                action=request.action,
                cluster=request.cluster,
                namespace=request.namespace,
                deployment=request.deployment,
                parameters={
                    "command": cmd.render_command(cmd.from_record(request.command)),
                    "requested_by": f"{request.requester_name or request.requester_id} "
                    f"({request.requester_id})",
                    "approved_by": approvers,
                },
                reason=break_glass_reason(request),
                approval_id=request.id,
                outcome="changed" if change.changed else "no change",
            )
        )

    # -- the verbs ------------------------------------------------------------------------------

    def freeze(
        self, command: cmd.Freeze, namespace: str, cluster: str, actor: Actor, context: str
    ) -> FreezeSet:
        if not self.shared_key:
            raise Refused(FREEZE_NEEDS_STATE_KEY)
        now = self._now()
        record = AdHocFreeze(
            namespace=namespace,
            cluster=cluster,
            reason=command.reason,
            set_by=actor.user_id,
            set_by_name=actor.user_name,
            channel=actor.channel_id,
            set_at=now,
            ends_at=now + timedelta(seconds=command.seconds),
        )
        record = record.model_copy(
            update={"seal": self.sealer.seal("freeze", record.sealed_content())}
        )
        replaced = self._ad_hoc(cluster, namespace) is not None
        # Audited first: a freeze nobody can trace must not exist.
        self.audit.append(
            self._event(FREEZE_EVENT, record, actor, f"frozen until {format_time(record.ends_at)}")
        )
        self.store.put(record, now)
        return FreezeSet(_active(record), namespace, context, replaced, now)

    def unfreeze(self, namespace: str, cluster: str, actor: Actor, context: str) -> FreezeLifted:
        now = self._now()
        current = self._ad_hoc(cluster, namespace)
        lifted: ActiveFreeze | None = None
        if current is not None:
            self.audit.append(self._event(UNFREEZE_EVENT, current, actor, "lifted"))
            self.store.delete(cluster, namespace)
            lifted = _active(current)
        still = tuple(f for f in self.in_force(namespace, cluster, now) if f.source == "policy")
        return FreezeLifted(namespace, context, lifted, still, now)

    def overview(self, namespace: str | None, cluster: str | None) -> FreezeList:
        """What is in force and what comes next (scheduled within a few weeks), of one
        namespace or of all, of one cluster or of all."""
        now = self._now()
        in_force: list[ActiveFreeze] = []
        upcoming: list[ActiveFreeze] = []
        for rule in self.access.policy.freezes:
            if namespace is not None and not rule.covers(namespace, cluster or "*"):
                continue
            current = _scheduled(rule, rule.window().covering(now))
            if current is not None:
                in_force.append(current)
            # The next occurrence that starts after now (after the current one, if any).
            following = _scheduled(rule, rule.window().next_after(now))
            if following is not None and following.starts_at - now <= _LOOKAHEAD:
                upcoming.append(following)
        for record in self._all_ad_hoc():
            if namespace is not None and record.namespace != namespace:
                continue
            if cluster is not None and record.cluster != cluster:
                continue
            if record.set_at <= now < record.ends_at:
                in_force.append(_active(record))
        return FreezeList(
            namespace,
            tuple(sorted(in_force, key=lambda f: f.ends_at)),
            tuple(sorted(upcoming, key=lambda f: f.starts_at)),
            now,
            self.access.policy.break_glass is not None,
        )

    def channels_for(self, namespace: str) -> tuple[str, ...]:
        """The channels the policy binds to ``namespace``: where its freezes are announced."""
        return tuple(
            channel
            for channel, binding in self.access.policy.channels.items()
            if binding.namespace == namespace
        )

    # -- storage --------------------------------------------------------------------------------

    def _ad_hoc(self, cluster: str, namespace: str) -> AdHocFreeze | None:
        return self._trusted(self.store.get(cluster, namespace))

    def _all_ad_hoc(self) -> list[AdHocFreeze]:
        return [r for r in map(self._trusted, self.store.all()) if r is not None]

    def _trusted(self, record: AdHocFreeze | None) -> AdHocFreeze | None:
        if record is None:
            return None
        if record.seal and self.sealer.valid(record.seal, "freeze", record.sealed_content()):
            return record
        marker = f"{record.cluster}/{record.namespace}/{record.seal}"
        if marker not in self._reported:
            self._reported.add(marker)
            log.warning(
                "the freeze stored for %s/%s does not carry the bot's seal; it is ignored",
                record.cluster,
                record.namespace,
            )
        return None

    def _event(self, event: str, record: AdHocFreeze, actor: Actor, outcome: str) -> AuditEvent:
        return AuditEvent(
            event=event,
            user_id=actor.user_id,
            user_name=actor.user_name,
            channel=actor.channel_id,
            action="freeze",
            cluster=record.cluster,
            namespace=record.namespace,
            parameters={
                "set_by": record.set_by,
                "from": format_time(record.set_at),
                "until": format_time(record.ends_at),
            },
            reason=record.reason,
            outcome=outcome,
        )

    def _audit_quietly(self, event: AuditEvent) -> None:
        try:
            self.audit.append(event)
        except StoreError:
            log.warning("could not audit %s", event.event)


def _active(record: AdHocFreeze) -> ActiveFreeze:
    return ActiveFreeze(
        name=AD_HOC_NAME,
        source="slack",
        scope=record.namespace,
        starts_at=record.set_at,
        ends_at=record.ends_at,
        timezone="UTC",
        allow=("undo", "pause"),
        reason=record.reason,
        set_by=record.set_by,
    )


def _scheduled(rule: FreezeRule, span: tuple[datetime, datetime] | None) -> ActiveFreeze | None:
    """One occurrence (start, end) of a policy freeze, as readers see it."""
    if span is None:
        return None
    return ActiveFreeze(
        name=rule.name,
        source="policy",
        scope=", ".join(rule.namespaces),
        starts_at=span[0],
        ends_at=span[1],
        timezone=rule.weekly.timezone if rule.weekly is not None else "UTC",
        allow=tuple(rule.allow),
        reason=rule.reason,
    )
