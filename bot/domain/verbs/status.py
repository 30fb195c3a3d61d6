"""``/rollout status DEPLOY``: a workload's rollout status, as ``kubectl rollout status`` says.

kubectl's verdict for each kind is ``bot.domain.status.workload_status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.domain import kinds
from bot.domain.kinds import Kind
from bot.domain.verbs import values
from bot.domain.verbs.grammar import NAMESPACE, Action, Args, CommandBase, VerbSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(CommandBase):
    action: ClassVar[Action] = "status"
    name: str
    kind: Kind = "deployment"
    namespace: str | None = None
    context: str | None = None


def _parse(args: Args, max_replicas: int) -> Status:
    kind, name = values.only_workload(args)
    return Status(name=name, kind=kind, namespace=args.namespace())


def _render(command: Status) -> list[str]:
    return ["status", kinds.info(command.kind).word(command.name)]


SPEC = VerbSpec(
    verb="status",
    usage="/rollout status DEPLOY [-n NS]",
    help="Show a Deployment's rollout status, as `kubectl rollout status` reports it.",
    command=Status,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE,),
    examples=("/rollout status web -n prod", "/rollout status sts/db -n prod"),
    hints=("get",),
)
