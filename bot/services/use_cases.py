"""Every use case the Slack surface may call, in one typed bundle built by the runtime.

The surface sees services and domain types only: never a Redis client, a Kubernetes client or
the settings object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.services.access import Access
from bot.services.approvals import ApprovalFlow
from bot.services.audit_trail import AuditTrail
from bot.services.canary import CanaryService
from bot.services.commands import CommandService
from bot.services.execution import Executor
from bot.services.freezes import FreezeService
from bot.services.progress.publishing import Tracking
from bot.services.promotions import PromotionService
from bot.services.rollouts import Rollouts


@dataclass
class Services:
    #: Runs a typed command for an actor: the one entry for every verb.
    commands: CommandService
    access: Access
    rollouts: Rollouts
    executor: Executor
    approvals: ApprovalFlow
    audit: AuditTrail
    progress: Tracking | None
    #: The largest `--replicas` a command may ask for.
    max_replicas: int
    #: Readiness of this replica's dependencies, by name (for /readyz).
    readiness: Callable[[], dict[str, bool]]
    #: True the first time a signed request's key is seen inside Slack's replay window.
    first_seen: Callable[[str], bool]
    #: Change windows (freezes and break-glass); None: nothing is ever frozen.
    freezes: FreezeService | None = None
    #: Canaries of Deployments (`/rollout canary`).
    canaries: CanaryService | None = None
    #: Promotion pipelines (`/rollout promote`); None: not available.
    promotions: PromotionService | None = None
