"""Authorization: may this Slack user run this action in this namespace from this channel?"""

from __future__ import annotations

from collections.abc import Mapping

from bot.domain.errors import NotPermitted
from bot.domain.policy import EVERYONE, READ_ONLY_NOTICE, Policy
from bot.services.ports import Directory


class Access:
    def __init__(
        self,
        policy: Policy,
        directory: Directory,
        *,
        policy_loaded: bool,
        context_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.directory = directory
        self.policy_loaded = policy_loaded
        #: Other names of a served context (a one-cluster bot's kubeconfig context), so a
        #: channel bound by that name is bound to the context the checks name.
        self._aliases = dict(context_aliases or {})
        self._groups = frozenset(policy.referenced_groups())

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy, in force for every check from now on."""
        self._groups = frozenset(policy.referenced_groups())
        self.policy = policy
        self.policy_loaded = True

    def namespace_for(self, channel_id: str, requested: str | None) -> str:
        return requested or self.policy.default_namespace(channel_id)

    def groups_of(self, user_id: str) -> frozenset[str]:
        """The policy's groups the user is in, and ``EVERYONE`` when `*` stands for them."""
        groups = self.directory.groups_of(user_id, self._groups) if self._groups else frozenset()
        if self.policy.names_everyone() and self._is_everyone(user_id):
            groups |= {EVERYONE}
        return groups

    def _is_everyone(self, user_id: str) -> bool:
        if self.policy.wildcard_users == "anyone":
            return True
        return self.directory.is_full_member(user_id)

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
        if context and not self.policy.channel_allows_context(channel_id, context, self._aliases):
            raise NotPermitted(
                f"This channel may not act on context `{context}`: the policy binds it to "
                f"{self._binding(channel_id)}. Nothing was changed; run it from the channel "
                "for that cluster, or ask an admin to add it to this channel's `contexts`."
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
        if (self._groups or self.policy.names_everyone()) and self.policy.is_allowed(
            user_id, self.groups_of(user_id), action, namespace, context
        ):
            return
        if not self.policy_loaded:
            raise NotPermitted(
                f"*{action}* is not allowed: the bot runs without a policy file, so only "
                f"read commands work. Nothing was changed.\n{READ_ONLY_NOTICE}"
            )
        where = f" of context `{context}`" if context else ""
        if self.policy.is_allowed(user_id, frozenset({EVERYONE}), action, namespace, context):
            raise NotPermitted(
                f"You are not allowed to *{action}* in namespace `{namespace}`{where}: the "
                "policy grants it to `*`, which means full members of this workspace, not "
                "guests or people from other workspaces. Nothing was changed; ask an admin to "
                "name you in the bot's policy file."
            )
        raise NotPermitted(
            f"You are not allowed to *{action}* in namespace `{namespace}`{where}. Nothing was "
            "changed; ask an admin to grant it in the bot's policy file."
        )

    def _binding(self, channel_id: str) -> str:
        """The channel's binding as the policy writes it, for a refusal."""
        binding = self.policy.channels.get(channel_id)
        if binding is None:
            return "no context"
        if binding.contexts is not None:
            listed = ", ".join(binding.contexts)
            return f"`{{contexts: [{listed}]}}`"
        parts = [f"context: {binding.context}"]
        if binding.namespace is not None:
            parts.append(f"namespace: {binding.namespace}")
        return "`{" + ", ".join(parts) + "}`"
