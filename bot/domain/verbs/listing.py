"""``/rollout list [-n NS]``: the workloads of a namespace with their images and readiness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.domain.verbs.grammar import NAMESPACE, Action, Args, CommandBase, VerbSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class ListDeployments(CommandBase):
    action: ClassVar[Action] = "list"
    namespace: str | None = None
    context: str | None = None


def _parse(args: Args, max_replicas: int) -> ListDeployments:
    args.no_more_than(0)
    return ListDeployments(namespace=args.namespace())


def _render(command: ListDeployments) -> list[str]:
    return ["list"]


SPEC = VerbSpec(
    verb="list",
    usage="/rollout list [-n NS]",
    help=(
        "List the Deployments, StatefulSets and DaemonSets in a namespace with their "
        "images and readiness."
    ),
    command=ListDeployments,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE,),
    examples=("/rollout list -n staging",),
    hints=("ls",),
)
