"""``/rollout help [VERB]``: every command, or the usage of one (read by the registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.domain.verbs.grammar import Action, CommandBase, VerbSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Help(CommandBase):
    action: ClassVar[Action] = "help"
    verb: str | None = None


def _render(command: Help) -> list[str]:
    return ["help"] if command.verb is None else ["help", command.verb]


SPEC = VerbSpec(
    verb="help",
    usage="/rollout help [VERB]",
    help="Show every command, or the usage of one.",
    command=Help,
    parse=None,
    render=_render,
    examples=("/rollout help set image",),
)
