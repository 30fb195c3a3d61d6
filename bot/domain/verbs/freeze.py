"""``/rollout freeze | unfreeze | freezes``: stop changes in a namespace for a while, lift such
a stop, list the stops in force (``bot.domain.freezes`` holds the rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from bot.domain.freezes import MAX_FREEZE, MIN_FREEZE, parse_duration
from bot.domain.verbs.grammar import NAMESPACE, REASON, Action, Args, CommandBase, Flag, VerbSpec
from bot.domain.verbs.text import show

FOR: Final = Flag("for", ("--for",), "--for=2h")


@dataclass(frozen=True, slots=True, kw_only=True)
class Freeze(CommandBase):
    action: ClassVar[Action] = "freeze"
    #: How long the freeze lasts from now, in seconds.
    seconds: int
    reason: str
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfreeze(CommandBase):
    # Whoever may freeze may lift a freeze.
    action: ClassVar[Action] = "freeze"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Freezes(CommandBase):
    action: ClassVar[Action] = "freezes"
    namespace: str | None = None
    context: str | None = None


def _parse_freeze(args: Args, max_replicas: int) -> Freeze:
    args.no_more_than(0)
    namespace = args.namespace()
    if namespace is None:
        args.fail("`freeze` needs the namespace it freezes, as in `-n prod`.")
    text = args.flag("for")
    if text is None:
        args.fail("`freeze` needs how long it lasts, as in `--for 2h`.")
    duration = parse_duration(text)
    if duration is None or not MIN_FREEZE <= duration <= MAX_FREEZE:
        args.fail(
            f"`--for` must be a duration from `1s` to `{MAX_FREEZE.days}d`, such as `90s`, "
            f"`1m`, `2h` or `1d`; got `{show(text)}`."
        )
    reason = args.reason()
    if reason is None:
        args.fail('`freeze` needs a reason people will read, as in `--reason "incident 4711"`.')
    return Freeze(seconds=int(duration.total_seconds()), reason=reason, namespace=namespace)


def _parse_unfreeze(args: Args, max_replicas: int) -> Unfreeze:
    args.no_more_than(0)
    namespace = args.namespace()
    if namespace is None:
        args.fail("`unfreeze` needs the namespace, as in `-n prod`.")
    return Unfreeze(namespace=namespace)


def _parse_freezes(args: Args, max_replicas: int) -> Freezes:
    args.no_more_than(0)
    return Freezes(namespace=args.namespace())


def _render_freeze(command: Freeze) -> list[str]:
    seconds = command.seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return ["freeze", f"--for={seconds // size}{unit}"]
    return ["freeze", f"--for={seconds}s"]


def _render_unfreeze(command: Unfreeze) -> list[str]:
    return ["unfreeze"]


def _render_freezes(command: Freezes) -> list[str]:
    return ["freezes"]


FREEZE = VerbSpec(
    verb="freeze",
    usage="/rollout freeze -n NS --for=DURATION --reason=TEXT",
    help="Stop changes in a namespace for `90s`, `1m`, `2h`, `1d`…; it ends on its own.",
    command=Freeze,
    parse=_parse_freeze,
    render=_render_freeze,
    flags=(NAMESPACE, FOR, REASON),
    examples=('/rollout freeze -n prod --for=2h --reason="release night"',),
)
UNFREEZE = VerbSpec(
    verb="unfreeze",
    usage="/rollout unfreeze -n NS",
    help="Lift the freeze set from Slack on a namespace.",
    command=Unfreeze,
    parse=_parse_unfreeze,
    render=_render_unfreeze,
    flags=(NAMESPACE,),
    examples=("/rollout unfreeze -n prod",),
)
FREEZES = VerbSpec(
    verb="freezes",
    usage="/rollout freezes [-n NS]",
    help="List the freezes in force and the next ones to come, with who set them.",
    command=Freezes,
    parse=_parse_freezes,
    render=_render_freezes,
    flags=(NAMESPACE,),
    examples=("/rollout freezes", "/rollout freezes -n prod"),
)
