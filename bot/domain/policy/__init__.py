"""Who may run which ``/rollout`` action in which namespace, and which actions need approval.

The policy is a YAML file named by ``ROLLOUT_BOT_POLICY``::

    channels:
      C0DEPLOYS: {namespace: default}
      C0PROD: {namespace: prod, namespaces: [prod, prod-*], follow_outside: true}
      C0EU: {context: prod-eu, contexts: [prod-eu], namespace: shop}
    permissions:
      - users: ["*"]
        namespaces: ["*"]
        actions: [list, status, history, diff]
      - users: [U0ALICE, S0DEVS]          # Slack user ids or user-group ids
        namespaces: ["*"]
        actions: ["*"]
        contexts: ["*"]                   # kubeconfig contexts (clusters); globs, default "*"
    approvals:
      - namespaces: [prod, prod-*]
        actions: [create, set-image, scale, undo, pause, resume, restart]
        required: 1                       # distinct approvers needed
        approvers: [U0BOB, S0SRE]         # user ids or user-group ids
        ttl: 30m
        on_failure: notify                # or rollback
        contexts: [prod-*]                # default "*": every context
    gitops: warn                          # or refuse: changes to Argo CD / Flux managed objects
    wildcard_users: members               # `*` is full members of the workspace; or anyone
    freezes:                              # change windows (bot.domain.freezes)
      - name: weekend
        namespaces: ["prod"]              # globs; contexts: [...] as elsewhere
        weekly: {from: "Fri 18:00", to: "Mon 08:00", timezone: "Europe/Berlin"}
      - name: black-friday
        namespaces: ["*"]
        from: "2026-11-26T00:00:00Z"      # or a fixed window, ISO timestamps with a zone
        to: "2026-11-30T00:00:00Z"
        allow: [undo, pause]              # what still runs during it (this is the default)
    break_glass:                          # who may let a change through a freeze
      approvers: [S0ONCALL]
      approvals: 1
    pipelines:                            # `/rollout promote web` (bot.domain.promotion)
      web:
        from: {context: staging, namespace: web, workload: deploy/web}
        waves:
          - [{context: prod-eu, namespace: web, workload: deploy/web}]
          - [{context: prod-us, namespace: web, workload: deploy/web}]
        gate: approval                    # or auto; approvers: the approval rules of the wave
        soak: 5m                          # healthy this long before the gate opens
        on_failure: halt                  # or rollback: undo the failed wave, then halt

A channel bound to a ``context`` reaches only that context unless it lists ``contexts``.
``load_policy(path, served_contexts=…)`` also refuses a ``contexts`` pattern that matches none
of the contexts served.

Permissions are additive: a user may do what any rule grants. Approval rules are ordered and
the first that matches applies. Namespace patterns are shell globs matched against the whole
name (``prod-*``); so are context patterns. The same namespace in two contexts is two
places: a rule with ``contexts`` covers only those clusters. The decisions here are pure:
the caller resolves the user's Slack groups (only when ``Policy.referenced_groups()`` is not
empty) and passes them in. Whether the requester may approve their own request is decided by
the approval flow, not here.

Without a file the bot runs with ``read_only_default()``.

Errors::

    PolicyError         .problems: one PolicyProblem(file, line, field, message) each

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
