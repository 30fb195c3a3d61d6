"""A policy action's name (`set-image`) as the command is typed (`set image`): how every
message names what was run.
"""

from __future__ import annotations


def command_verb(action: str) -> str:
    """The command as typed (`set image`), from the policy's action name (`set-image`)."""
    return action.replace("-", " ")
