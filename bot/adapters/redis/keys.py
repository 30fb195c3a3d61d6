"""Every Redis key the bot uses, in one place.

All keys share one hash tag, `{<prefix>}`, so they live in one Redis Cluster slot: the Lua
scripts that touch several keys at once (approval + pending index, audit stream + head) stay
legal on a cluster, and MULTI/EXEC never spans slots. The prefix lets several bots share
one Redis; it is the tag itself, so two bots with different prefixes never collide.

Layout for the default prefix `rollout-bot`:

    {rollout-bot}:audit                  stream: the hash-chained audit trail
    {rollout-bot}:audit:head             hash: seq, hash, id of the last audit entry (and
                                         kid, mac when keyed)
    {rollout-bot}:audit:anchor           hash: the retention record: seq, hash, id of the
                                         last entry trimmed away, from, time, reason (and
                                         kid, mac when keyed)
    {rollout-bot}:approval:<id>          string: one approval request as JSON
    {rollout-bot}:approvals:pending      sorted set: pending approval ids, score = expiry
    {rollout-bot}:approvals:active       sorted set: approved or running approval ids,
                                         score = decision time (what a restarted bot
                                         must pick up again)
    {rollout-bot}:op:<token>             string: result of one store transition, so a
                                         command redis-py retried after a lost reply
                                         returns the first result instead of acting twice
    {rollout-bot}:event:<event_id>       string: Slack request already handled (replay guard)
    {rollout-bot}:rollout:<id>           string: one tracked rollout (progress message) as JSON
    {rollout-bot}:rollouts:active        set: ids of tracked rollouts without a verdict yet
    {rollout-bot}:rollout-lease:<id>     string: the replica driving that rollout, with a TTL
    {rollout-bot}:ours:<uid>:<gen>       string: the bot made this generation of a Deployment
                                         (claimed before the write, confirmed after it)
    {rollout-bot}:auto-rollback:<id>     string: the rollout was rolled back automatically
    {rollout-bot}:notice:<uid>:<rev>     string: an outside-change notice was posted
    {rollout-bot}:freeze:<ctx>:<ns>      string: a freeze set from Slack (sealed JSON), expiring
                                         when the freeze ends
    {rollout-bot}:freezes                set: `<ctx>:<ns>` of every freeze set from Slack
    {rollout-bot}:canary:<uid>           string: where a canary's message is and what the
                                         bot saw of it (the canary Deployment's uid)
    {rollout-bot}:canary-end:<uid>       string: how the canary ended (the first end wins)
    {rollout-bot}:canaries:active        set: ids of canaries still running (found again and
                                         resumed after a restart; leases as rollout-lease:)
    {rollout-bot}:promotion:<id>         string: a promotion's state (sealed JSON)
    {rollout-bot}:promotion-of:<name>    string: the id of the pipeline's live promotion
    {rollout-bot}:promotion-step:<id>    lock: the replica driving the promotion's next step
    {rollout-bot}:promotions             sorted set: promotion ids by start time
    {rollout-bot}:promotions:live        set: ids of promotions running or halted

With several clusters (kubeconfig contexts) the same namespace in two clusters is two places:
what belongs to one cluster carries its context, `<ctx>` (`context_part`):

    {rollout-bot}:rollouts:active:<ctx>  set: that cluster's tracked rollouts without a verdict
    {rollout-bot}:rollout:<ctx>.<uid>-<gen>   (and rollout-lease:, auto-rollback:) likewise
    {rollout-bot}:ours:<ctx>:<uid>:<gen> string: the bot made this generation (that cluster)
    {rollout-bot}:notice:<ctx>:<uid>:<rev>  string: a notice was posted (that cluster)

A one-cluster installation keeps the layout above, so an upgrade picks its rollouts up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.domain.context_names import context_part

__all__ = ["DEFAULT_PREFIX", "Keys", "context_part"]

DEFAULT_PREFIX = "rollout-bot"

# Braces would end or restart the hash tag; whitespace and ':' would make keys ambiguous.
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Identifiers interpolated into keys come from Slack payloads (button values, event ids);
# a strict alphabet keeps a forged value from addressing another key family. Matched whole
# (`fullmatch`): `$` would let a trailing newline through.
_PART_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one bot installation (one prefix)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(
                "Redis key prefix must be 1-64 characters of letters, digits, '.', '_' or '-' "
                f"and start with a letter or digit; got {self.prefix!r}"
            )

    @property
    def tag(self) -> str:
        """The hash tag every key starts with, e.g. `{rollout-bot}`."""
        return "{" + self.prefix + "}"

    # -- audit ---------------------------------------------------------------------------

    @property
    def audit(self) -> str:
        return f"{self.tag}:audit"

    @property
    def audit_head(self) -> str:
        return f"{self.tag}:audit:head"

    @property
    def audit_anchor(self) -> str:
        return f"{self.tag}:audit:anchor"

    # -- approvals -----------------------------------------------------------------------

    def approval(self, approval_id: str) -> str:
        return f"{self.tag}:approval:{_part(approval_id, 'approval id')}"

    @property
    def approvals_pending(self) -> str:
        return f"{self.tag}:approvals:pending"

    @property
    def approvals_active(self) -> str:
        return f"{self.tag}:approvals:active"

    def op(self, token: str) -> str:
        return f"{self.tag}:op:{_part(token, 'operation token')}"

    # -- ingress and execution -------------------------------------------------------------

    def event_seen(self, event_id: str) -> str:
        return f"{self.tag}:event:{_part(event_id, 'event id')}"

    # -- progress --------------------------------------------------------------------------

    def rollout(self, rollout_id: str) -> str:
        return f"{self.tag}:rollout:{_part(rollout_id, 'rollout id')}"

    @property
    def rollouts_active(self) -> str:
        return f"{self.tag}:rollouts:active"

    def rollouts_active_in(self, context: str) -> str:
        """The active set of one context ("" is the one-cluster layout)."""
        if not context:
            return self.rollouts_active
        return f"{self.rollouts_active}:{context_part(context)}"

    def rollout_lease(self, rollout_id: str) -> str:
        return f"{self.tag}:rollout-lease:{_part(rollout_id, 'rollout id')}"

    def ours(self, uid: str, generation: int, context: str = "") -> str:
        where = f"{context_part(context)}:" if context else ""
        return f"{self.tag}:ours:{where}{_part(uid, 'uid')}:{int(generation)}"

    def auto_rollback(self, rollout_id: str) -> str:
        return f"{self.tag}:auto-rollback:{_part(rollout_id, 'rollout id')}"

    def notice(self, uid: str, revision: int, context: str = "") -> str:
        where = f"{context_part(context)}:" if context else ""
        return f"{self.tag}:notice:{where}{_part(uid, 'uid')}:{int(revision)}"

    # -- change windows --------------------------------------------------------------------

    def freeze(self, cluster: str, namespace: str) -> str:
        return f"{self.tag}:freeze:{context_part(cluster)}:{_part(namespace, 'namespace')}"

    @property
    def freezes(self) -> str:
        return f"{self.tag}:freezes"

    # -- canaries --------------------------------------------------------------------------

    def canary(self, canary_id: str) -> str:
        return f"{self.tag}:canary:{_part(canary_id, 'canary id')}"

    def canary_end(self, canary_id: str) -> str:
        return f"{self.tag}:canary-end:{_part(canary_id, 'canary id')}"

    @property
    def canaries_active(self) -> str:
        return f"{self.tag}:canaries:active"

    # -- promotions ------------------------------------------------------------------------

    def promotion(self, promotion_id: str) -> str:
        return f"{self.tag}:promotion:{_part(promotion_id, 'promotion id')}"

    def promotion_of(self, pipeline: str) -> str:
        return f"{self.tag}:promotion-of:{_part(pipeline, 'pipeline')}"

    def promotion_step(self, promotion_id: str) -> str:
        return f"{self.tag}:promotion-step:{_part(promotion_id, 'promotion id')}"

    @property
    def promotions(self) -> str:
        return f"{self.tag}:promotions"

    @property
    def promotions_live(self) -> str:
        return f"{self.tag}:promotions:live"

    # -- introspection ---------------------------------------------------------------------

    def fixed(self) -> tuple[str, ...]:
        """The keys that take no argument (for static checks and tooling)."""
        return (
            self.audit,
            self.audit_head,
            self.audit_anchor,
            self.approvals_pending,
            self.approvals_active,
            self.rollouts_active,
            self.freezes,
            self.canaries_active,
            self.promotions,
            self.promotions_live,
        )

    def owns(self, key: str) -> bool:
        """True if `key` belongs to this installation (starts with this hash tag)."""
        return key.startswith(self.tag + ":")

    @staticmethod
    def valid_part(value: str) -> bool:
        """True if `value` may be used as an id inside a key."""
        return bool(_PART_RE.fullmatch(value))


def _part(value: str, what: str) -> str:
    if not _PART_RE.fullmatch(value):
        raise ValueError(f"invalid {what} for a Redis key: {value!r}")
    return value
