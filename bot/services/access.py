"""Authorization: may this Slack user run this action in this namespace from this channel?"""

from __future__ import annotations

from bot.adapters.slack.directory import SlackDirectory
from bot.domain.errors import NotPermitted
from bot.domain.policy import READ_ONLY_NOTICE, Policy


class Access:
    def __init__(self, policy: Policy, directory: SlackDirectory, *, policy_loaded: bool) -> None:
        self.policy = policy
        self.directory = directory
        self.policy_loaded = policy_loaded
        self._groups = frozenset(policy.referenced_groups())

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy, in force for every check from now on."""
        self._groups = frozenset(policy.referenced_groups())
        self.policy = policy
        self.policy_loaded = True

    def namespace_for(self, channel_id: str, requested: str | None) -> str:
        return requested or self.policy.default_namespace(channel_id)

    def groups_of(self, user_id: str) -> frozenset[str]:
        if not self._groups:
            return frozenset()
        return self.directory.groups_of(user_id, self._groups)

    def may(
        self, user_id: str, channel_id: str, action: str, namespace: str, context: str = ""
    ) -> bool:
        try:
            self.check(user_id, channel_id, action, namespace, context)
        except NotPermitted:
            return False
        return True

    def check(
        self, user_id: str, channel_id: str, action: str, namespace: str, context: str = ""
    ) -> None:
        """Raises NotPermitted saying what was refused, why, and what to do. ``context`` is
        the kubeconfig context (cluster) the command works on."""
        if context and not self.policy.channel_allows_context(channel_id, context):
            raise NotPermitted(
                f"This channel may not act on context `{context}`: the policy binds it to "
                "other contexts. Nothing was changed; run it from the channel for that "
                "cluster, or ask an admin to add it to this channel's `contexts`."
            )
        if not self.policy.channel_allows_namespace(channel_id, namespace):
            raise NotPermitted(
                f"This channel may not act on namespace `{namespace}`: the policy binds it to "
                "other namespaces. Nothing was changed; run it from the channel for that "
                "namespace, or ask an admin to add it to this channel's `namespaces`."
            )
        if not self.policy.permissions and self.policy.identity_for(context).impersonates:
            return  # no permission rules in impersonate mode: Kubernetes RBAC alone decides
        # Groups cost a Tier-2 Slack call each (cached); a user granted by id needs none.
        if self.policy.is_allowed(user_id, frozenset(), action, namespace, context):
            return
        if self._groups and self.policy.is_allowed(
            user_id, self.groups_of(user_id), action, namespace, context
        ):
            return
        if not self.policy_loaded:
            raise NotPermitted(
                f"*{action}* is not allowed: the bot runs without a policy file, so only "
                f"read commands work. Nothing was changed.\n{READ_ONLY_NOTICE}"
            )
        where = f" of context `{context}`" if context else ""
        raise NotPermitted(
            f"You are not allowed to *{action}* in namespace `{namespace}`{where}. Nothing was "
            "changed; ask an admin to grant it in the bot's policy file."
        )
