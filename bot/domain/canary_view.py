"""What the canary message and `canary status` show of one canary: a value the canary use
cases build and the Slack views draw, so it lives in the domain, beside neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain import canary as rules
from bot.domain.targets import Target


@dataclass(frozen=True)
class CanaryView:
    """What the canary message and `canary status` show."""

    target: Target
    canary: str
    #: starting | analysing | ready | promoting | promoted | aborted | gone
    state: str
    images: tuple[tuple[str, str], ...]
    web_images: tuple[tuple[str, str], ...]
    web_replicas: int
    health: rules.Health | None
    services: tuple[str, ...]
    analysis_seconds: int
    #: Seconds the canary has been healthy so far (None: not all pods Ready yet).
    healthy_for: int | None
    auto_promote: bool
    #: The HorizontalPodAutoscaler of `web`, if any: the canary keeps fixed replicas.
    autoscaler: str | None
    requester_id: str
    why: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("promoted", "aborted", "gone")


def images_text(images: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{c}={i}" for c, i in images) or "-"
