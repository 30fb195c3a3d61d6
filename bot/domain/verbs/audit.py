"""``/rollout audit [DEPLOY] [--limit=N]``: who did what, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from bot.domain.verbs import values
from bot.domain.verbs.grammar import NAMESPACE, Action, Args, CommandBase, Flag, VerbSpec
from bot.domain.verbs.text import show

MAX_AUDIT_LIMIT: Final = 500
# One screen of a Slack message.
DEFAULT_AUDIT_LIMIT: Final = 20
LIMIT: Final = Flag("limit", ("--limit",), "--limit=50")


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit(CommandBase):
    action: ClassVar[Action] = "audit"
    #: The workload the entries are about; None: the whole namespace.
    name: str | None = None
    namespace: str | None = None
    context: str | None = None
    limit: int = DEFAULT_AUDIT_LIMIT


def _parse(args: Args, max_replicas: int) -> Audit:
    first = args.optional_positional(0)
    args.no_more_than(1)
    name = None if first is None else values.target(args, first)[1]
    value = args.flag("limit")
    limit = DEFAULT_AUDIT_LIMIT
    if value is not None:
        number = values.number(value, 1, MAX_AUDIT_LIMIT)
        if number is None:
            args.fail(
                f"`--limit` must be a whole number from 1 to {MAX_AUDIT_LIMIT}, "
                f"got `{show(value)}`."
            )
        limit = number
    return Audit(name=name, namespace=args.namespace(), limit=limit)


def _render(command: Audit) -> list[str]:
    words = ["audit"] if command.name is None else ["audit", command.name]
    if command.limit != DEFAULT_AUDIT_LIMIT:
        words.append(f"--limit={command.limit}")
    return words


SPEC = VerbSpec(
    verb="audit",
    usage="/rollout audit [DEPLOY] [-n NS] [--limit=N]",
    help="Show who did what, newest first.",
    command=Audit,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE, LIMIT),
    examples=("/rollout audit web -n prod --limit=20", "/rollout audit -n prod"),
)
