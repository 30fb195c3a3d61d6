"""As whom the bot acts in Kubernetes: itself, or (policy `identity.mode: impersonate`) the
person who asked, so that Kubernetes RBAC decides and the API server's audit log names them.

    Identities.identity_for(user_id, context, approvers=, continued_by=)
                                  the person's `KubeIdentity` (None: the bot's own identity);
                                  a guest, a bot user or a person without email is refused
    Identities.check_change(identity, action, target)
                                  RBAC's answer before anything is asked or sent (a
                                  SelfSubjectAccessReview as the person): a "no" is raised
                                  as Forbidden in kubectl's words, so no approval card is
                                  posted for what could not run
    Identities.rollouts_as(rollouts, identity, context)
                                  the same verbs, with writes (and reads, with `reads:
                                  impersonate`) made as the person
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bot.domain import kinds
from bot.domain.errors import Forbidden, NotPermitted
from bot.domain.identity import (
    EXTRA_APPROVED_BY,
    EXTRA_CONTINUED_BY,
    IdentityRule,
    KubeIdentity,
    forbidden_message,
    identity_of,
    refusal_of,
)
from bot.domain.policy import Policy
from bot.domain.targets import Target
from bot.services.ports import People, PersonClusters
from bot.services.rollouts import Rollouts

log = logging.getLogger(__name__)

#: `continued_by` values: what of the bot continues a person's change on its own.
BY_AUTO_ROLLBACK = "auto-rollback"
BY_APPROVAL_SWEEPER = "approval-sweeper"

WHAT_TO_DO = (
    "Nothing was changed. Kubernetes RBAC decides what you may do here: ask the cluster's "
    "admins for a RoleBinding that grants it to you."
)


class Identities:
    def __init__(
        self,
        policy: Policy,
        people: People,
        clients: Mapping[str, PersonClusters],
        *,
        default_context: str,
    ) -> None:
        self.policy = policy
        self._people = people
        self._clients = dict(clients)
        self._default = default_context

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy, in force for every change from now on."""
        self.policy = policy

    def rule(self, context: str = "") -> IdentityRule:
        """The identity rule of a context ("" is the default one)."""
        return self.policy.identity_for(context or self._default)

    def impersonates(self, context: str = "") -> bool:
        return self.rule(context).impersonates

    def identity_for(
        self,
        user_id: str,
        context: str = "",
        *,
        approvers: Sequence[str] = (),
        continued_by: str = "",
    ) -> KubeIdentity | None:
        """The person's Kubernetes identity in this context, None when the bot acts as itself.
        Raises NotPermitted (with what to do) for someone who cannot be given one, and
        PeopleUnavailable when Slack cannot be asked."""
        rule = self.rule(context)
        if not rule.impersonates:
            return None
        if not user_id or not user_id.startswith(("U", "W")):
            raise NotPermitted(
                "The bot cannot tell whose change this continues, so it cannot act as them in "
                "Kubernetes (the policy's `identity.mode` is `impersonate`). Nothing was "
                "changed; run it again with `/rollout`."
            )
        person = self._people.person(user_id, with_usergroups=rule.needs("usergroup_handle"))
        refusal = refusal_of(rule, person)
        if refusal is not None:
            raise NotPermitted(f"{refusal} Nothing was changed.")
        try:
            identity = identity_of(rule, person)
        except ValueError:
            raise NotPermitted(
                "The policy's `identity.user` template gives you no usable Kubernetes user "
                "name. Nothing was changed; ask an admin to check the template."
            ) from None
        voters = [a for a in dict.fromkeys(approvers) if a and a != user_id]
        identity = identity.with_extra(EXTRA_APPROVED_BY, voters)
        if continued_by:
            identity = identity.with_extra(EXTRA_CONTINUED_BY, [continued_by])
        return identity

    def check_change(self, identity: KubeIdentity, action: str, target: Target) -> None:
        """Raises Forbidden, in the API server's words for the request that would be refused,
        when RBAC does not let the person make this change (`create` of a Deployment, else
        `patch` of the workload: what `rollout-bot` sends for every other verb)."""
        verb = "create" if action == "create" else "patch"
        resource = kinds.info(target.kind).resource
        name = "" if action == "create" else target.name
        review = self._clients_of(target.context).review(
            identity, verb, resource, "apps", target.namespace, name
        )
        if review.allowed:
            return
        words = forbidden_message(
            identity, verb, resource, "apps", target.namespace, name, review.reason
        )
        raise Forbidden(f"Error from server (Forbidden): {words}\n{WHAT_TO_DO}", detail=words)

    def rollouts_as(
        self, rollouts: Rollouts, identity: KubeIdentity | None, context: str = ""
    ) -> Rollouts:
        """`rollouts` with this context's cluster reached as the person (unchanged for the
        bot's own identity)."""
        if identity is None:
            return rollouts
        person = self._clients_of(context).as_person(
            rollouts.on(context), identity, reads_as_person=self.rule(context).reads_as_person
        )
        return rollouts.through(context, person)

    def reader(self, rollouts: Rollouts, user_id: str, context: str = "") -> Rollouts:
        """What a read runs on: as the person with `reads: impersonate`, else as the bot."""
        if not self.rule(context).reads_as_person:
            return rollouts
        return self.rollouts_as(rollouts, self.identity_for(user_id, context), context)

    def _clients_of(self, context: str) -> PersonClusters:
        return self._clients[context or self._default]
