"""What a verb's handler works with: the cluster verbs and, where served, the canaries."""

from __future__ import annotations

from dataclasses import dataclass

from bot.services.canary import CanaryService
from bot.services.rollouts import Rollouts


@dataclass(frozen=True)
class Tools:
    rollouts: Rollouts
    #: None where canaries are not served (their verbs are then refused).
    canaries: CanaryService | None = None
