"""``/rollout approvals [-n NS]``: the approval requests waiting for a decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.domain.verbs.grammar import NAMESPACE, Action, Args, CommandBase, VerbSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Approvals(CommandBase):
    action: ClassVar[Action] = "approvals"
    namespace: str | None = None
    context: str | None = None


def _parse(args: Args, max_replicas: int) -> Approvals:
    args.no_more_than(0)
    return Approvals(namespace=args.namespace())


def _render(command: Approvals) -> list[str]:
    return ["approvals"]


SPEC = VerbSpec(
    verb="approvals",
    usage="/rollout approvals [-n NS]",
    help="List the approval requests that are waiting for a decision.",
    command=Approvals,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE,),
    examples=("/rollout approvals", "/rollout approvals -n prod"),
)
