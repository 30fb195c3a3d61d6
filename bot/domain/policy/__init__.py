"""Who may run which ``/rollout`` action in which namespace and cluster, which actions need
approval, and the change windows and promotion pipelines: the policy file named by
``ROLLOUT_BOT_POLICY``, read into a ``Policy`` whose decisions are pure. The README's "Approvals,
policy and audit" section and ``deploy/examples/policy.yaml`` show the file.

Permissions are additive; approval rules are ordered and the first that matches applies;
namespace and context patterns are shell globs over the whole name, and the same namespace in
two contexts is two places. The caller resolves a user's Slack groups (only when
``Policy.referenced_groups()`` is not empty) and passes them in. Whether a requester may
approve their own request is the approval flow's decision, not the policy's. Without a file the
bot runs with ``read_only_default()``. Every problem is a ``PolicyProblem(file, line, field,
message)`` of a ``PolicyError``.

The package re-exports what the rest of the bot uses; by idea: fields (the words a rule is
written in), rules (channels, permissions, approvals), change_windows (freezes, break glass),
pipelines, model (the Policy and its decisions), problems (what is wrong, said in policy
terms) and loading (the file's bytes, parsed and validated).
"""

from __future__ import annotations

from bot.domain.policy.change_windows import BreakGlassRule, FreezeRule
from bot.domain.policy.fields import (
    DEFAULT_NAMESPACE,
    EVERYONE,
    POLICY_ACTIONS,
    POLICY_ENV_VAR,
    READ_ONLY_ACTIONS,
)
from bot.domain.policy.loading import load_policy, parse_policy, read_policy_bytes
from bot.domain.policy.model import READ_ONLY_NOTICE, Policy, read_only_default
from bot.domain.policy.pipelines import Pipeline, PipelineTarget
from bot.domain.policy.problems import PolicyError, PolicyProblem
from bot.domain.policy.rules import ApprovalRule, ChannelBinding, PermissionRule

__all__ = [
    "DEFAULT_NAMESPACE",
    "EVERYONE",
    "POLICY_ACTIONS",
    "POLICY_ENV_VAR",
    "READ_ONLY_ACTIONS",
    "READ_ONLY_NOTICE",
    "ApprovalRule",
    "BreakGlassRule",
    "ChannelBinding",
    "FreezeRule",
    "PermissionRule",
    "Pipeline",
    "PipelineTarget",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "load_policy",
    "parse_policy",
    "read_only_default",
    "read_policy_bytes",
]
