"""kubectl's refusals: what it would refuse before sending anything, in its own words.

Errors (every one is a refusal: nothing was changed)::

    RolloutRefused            .reason_code, .message
    └── UndoRefused           negative_revision | no_history | revision_not_found | paused
"""

from __future__ import annotations


class RolloutRefused(Exception):
    """A rollout action was refused before anything was sent; ``message`` is kubectl's text."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


class UndoRefused(RolloutRefused):
    """``rollout undo`` cannot proceed (reason codes listed in the module docstring)."""
