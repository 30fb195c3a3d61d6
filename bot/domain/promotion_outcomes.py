"""What the promotion use cases answer (a plan, a promotion started, the promotions running, a
gate's decision): values the Slack views and buttons draw, so they live in the domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.promotion import GateRule, PromotionState


@dataclass(frozen=True)
class PromotionPlan:
    """`--dry-run`: what would happen; nothing was stored or changed."""

    state: PromotionState
    gates: list[GateRule | None]


@dataclass(frozen=True)
class PromotionStarted:
    state: PromotionState
    resumed: bool
    #: The promotion message could not be posted (the state is kept and runs anyway).
    posted: bool = True


@dataclass(frozen=True)
class PromotionList:
    promotions: tuple[PromotionState, ...]


@dataclass(frozen=True)
class GateDecision:
    #: opened | recorded | requester | not_approver | duplicate | not_open | halted |
    #: not_permitted | not_found
    status: str
    state: PromotionState | None = None
