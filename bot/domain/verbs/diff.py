"""``/rollout diff DEPLOY REV [REV2]``: compare the pod templates of two revisions.

The bot's own verb (kubectl has none): without ``REV2`` it compares ``REV`` with the current
template. The comparison is ``bot.domain.templates.template_diff``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.domain import kinds
from bot.domain.kinds import Kind
from bot.domain.verbs import values
from bot.domain.verbs.grammar import NAMESPACE, Action, Args, CommandBase, VerbSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Diff(CommandBase):
    action: ClassVar[Action] = "diff"
    name: str
    kind: Kind = "deployment"
    rev: int
    # None: compare `rev` with the current template.
    rev2: int | None = None
    namespace: str | None = None
    context: str | None = None


def _parse(args: Args, max_replicas: int) -> Diff:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    rev = values.revision(args, args.positional(1, "a revision number"), "REV")
    second = args.optional_positional(2)
    args.no_more_than(3)
    rev2 = None if second is None else values.revision(args, second, "REV2")
    if rev == rev2:
        args.fail(f"both revisions are {rev}; name two different revisions.")
    return Diff(name=name, kind=kind, rev=rev, rev2=rev2, namespace=args.namespace())


def _render(command: Diff) -> list[str]:
    words = ["diff", kinds.info(command.kind).word(command.name), str(command.rev)]
    if command.rev2 is not None:
        words.append(str(command.rev2))
    return words


SPEC = VerbSpec(
    verb="diff",
    usage="/rollout diff DEPLOY REV [REV2] [-n NS]",
    help="Compare the pod templates of two revisions, or of one revision and the current one.",
    command=Diff,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE,),
    examples=("/rollout diff web 2 -n prod", "/rollout diff web 2 3 -n prod"),
)
