"""``/rollout history DEPLOY [--revision=N]``: a workload's revisions, or one revision's template.

kubectl's rule is ``bot.domain.revisions`` (the revision list for each kind) and
``bot.domain.describe`` (one revision's pod template, as kubectl describes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from bot.domain import kinds
from bot.domain.kinds import Kind
from bot.domain.verbs import values
from bot.domain.verbs.grammar import NAMESPACE, Action, Args, CommandBase, Flag, VerbSpec

REVISION: Final = Flag("revision", ("--revision",), "--revision=2")


@dataclass(frozen=True, slots=True, kw_only=True)
class History(CommandBase):
    action: ClassVar[Action] = "history"
    name: str
    kind: Kind = "deployment"
    revision: int | None = None
    namespace: str | None = None
    context: str | None = None


def _parse(args: Args, max_replicas: int) -> History:
    kind, name = values.only_workload(args)
    value = args.flag("revision")
    revision = None
    if value is not None:
        number = values.signed_revision(
            args, value, "`--revision`", "a revision number (0 lists them all)"
        )
        if number < 0:
            # kubectl's validation, word for word.
            args.fail(f"revision must be a positive integer: {number}")
        # kubectl treats --revision=0 as no revision: the whole list.
        revision = number or None
    return History(name=name, kind=kind, revision=revision, namespace=args.namespace())


def _render(command: History) -> list[str]:
    words = ["history", kinds.info(command.kind).word(command.name)]
    if command.revision is not None:
        words.append(f"--revision={command.revision}")
    return words


SPEC = VerbSpec(
    verb="history",
    usage="/rollout history DEPLOY [--revision=N] [-n NS]",
    help="List a Deployment's revisions, or show the pod template of one revision.",
    command=History,
    parse=_parse,
    render=_render,
    flags=(REVISION, NAMESPACE),
    examples=("/rollout history web -n prod", "/rollout history web --revision=3 -n prod"),
)
