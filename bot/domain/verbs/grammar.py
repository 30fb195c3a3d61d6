"""What every verb's grammar shares: limits, errors, flags, and the spec a verb declares.

A verb module declares one ``VerbSpec``: its usage line, help, examples, the flags it takes, its
command type (which carries the policy action and whether it changes the cluster), and its
parser and renderer. ``split_args`` reads a verb's words into an ``Args`` against the flags its
spec allows; the parser then reads values from it and raises ``CommandError`` through
``Args.fail``, with the verb's usage line.

Every verb but ``help`` also takes ``--context NAME`` (kubectl's flag: the kubeconfig context,
that is the cluster, it works on), and every change ``--break-glass=TEXT`` (during a freeze it
asks the policy's break-glass approvers to let this one change through). Both are taken out of
the words before the verb's own flags are read (``take_context``, ``take_break_glass``).

Errors::

    CommandError        .message: one sentence, Slack mrkdwn, user input escaped
                        .usage:   the verb's usage line, or the whole grammar
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NoReturn

from bot.domain.kinds import Kind
from bot.domain.verbs.text import as_flag, has_control_characters, join_or, looks_like_flag, show

if TYPE_CHECKING:
    from bot.domain.verbs import Command

__all__ = [
    "BREAK_GLASS_FLAG",
    "CONTEXT_FLAG",
    "DEFAULT_MAX_REPLICAS",
    "IMAGE",
    "MAX_IMAGE_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_TEXT_LENGTH",
    "NAMESPACE",
    "REASON",
    "REPLICAS",
    "Action",
    "Args",
    "ChangeCommand",
    "CommandBase",
    "CommandError",
    "Flag",
    "PatchPlan",
    "PatchRule",
    "VerbSpec",
    "WorkloadChange",
    "no_refusal",
    "split_args",
    "take_break_glass",
    "take_context",
    "valid_context_name",
]

DEFAULT_MAX_REPLICAS: Final = 100
# Slack's long-standing recommended maximum for message text; nobody types a longer command,
# and the cap bounds the work done on hostile input.
MAX_TEXT_LENGTH: Final = 4000
# The reason goes into the `kubernetes.io/change-cause` annotation, the approval card and the
# audit trail: a sentence and a ticket link fit, an essay does not.
MAX_REASON_LENGTH: Final = 300
# Docker caps the repository name at 255 characters and a tag at 128; a sha512 digest is 135.
MAX_IMAGE_LENGTH: Final = 512

#: The action names a policy can grant (`help` is always allowed).
Action = Literal[
    "help",
    "list",
    "status",
    "create",
    "set-image",
    "scale",
    "history",
    "diff",
    "undo",
    "pause",
    "resume",
    "restart",
    "approvals",
    "audit",
    "freeze",
    "freezes",
    "promote",
    "promotions",
]

DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class CommandError(Exception):
    """The text is not a valid ``/rollout`` command.

    ``message`` is one short sentence in Slack mrkdwn; any user input quoted in it is
    shortened and escaped, so it can be sent as it is. ``usage`` is the usage line of the verb
    that was recognised, or the whole grammar when none was.
    """

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if usage is None:
            # The whole grammar is built by the registry from every verb; by the time a
            # command is parsed the registry is loaded, so this import finds it done.
            from bot.domain.verbs import GRAMMAR

            usage = GRAMMAR
        self.usage = usage


class CommandBase:
    """What every command has: the policy action it needs and whether it changes the cluster.

    ``namespace`` is ``None`` when the user gave none; the caller applies the channel default
    (``dataclasses.replace(command, namespace=...)``) before authorising.
    """

    __slots__ = ()
    action: ClassVar[Action]
    is_mutation: ClassVar[bool] = False
    #: False for a change that runs as soon as the policy permits it, whatever approval rule or
    #: freeze covers its action (aborting a canary only removes what the canary added).
    needs_approval: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeCommand(CommandBase):
    """A command that changes the cluster: the object it names, where, and whether it asks to
    break a change window. Each verb adds its own fields."""

    is_mutation: ClassVar[bool] = True
    name: str
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadChange(ChangeCommand):
    """A change to a workload of any kind `kubectl rollout` supports (a bare NAME is a
    Deployment)."""

    kind: Kind = "deployment"


# --- flags ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """A flag a verb may take. The first spelling is how messages and usage write it."""

    name: str
    spellings: tuple[str, ...]
    #: How it is written in full, for "needs a value, as in ..." messages.
    example: str
    #: Takes no value (present or not).
    switch: bool = False

    @property
    def display(self) -> str:
        return self.spellings[0]


NAMESPACE: Final = Flag("namespace", ("-n", "--namespace"), "-n prod")
REASON: Final = Flag("reason", ("--reason",), '--reason="fixes the login bug"')
IMAGE: Final = Flag("image", ("--image",), "--image=nginx:1.27")
REPLICAS: Final = Flag("replicas", ("--replicas",), "--replicas=3")


@dataclass
class Args:
    """A verb's words split into positionals and flags (by name), ready for its parser."""

    verb: str
    usage: str
    positionals: list[str]
    flags: dict[str, str]

    def fail(self, message: str) -> NoReturn:
        raise CommandError(message, self.usage)

    def flag(self, name: str) -> str | None:
        return self.flags.get(name)

    def positional(self, index: int, what: str) -> str:
        if index >= len(self.positionals):
            self.fail(f"`{self.verb}` needs {what}.")
        return self.positionals[index]

    def optional_positional(self, index: int) -> str | None:
        return self.positionals[index] if index < len(self.positionals) else None

    def no_more_than(self, count: int) -> None:
        if len(self.positionals) > count:
            self.fail(f"unexpected extra argument `{show(self.positionals[count])}`.")

    def namespace(self) -> str | None:
        value = self.flag("namespace")
        if value is None:
            return None
        if len(value) > 63 or not DNS_LABEL.fullmatch(value):
            self.fail(
                f"`{show(value)}` is not a valid namespace: use at most 63 lowercase letters, "
                "digits and `-`, starting and ending with a letter or digit."
            )
        return value

    def reason(self) -> str | None:
        value = self.flag("reason")
        if value is None:
            return None
        value = value.strip(" ")
        if not value:
            self.fail("`--reason` needs some text.")
        if len(value) > MAX_REASON_LENGTH:
            self.fail(
                f"`--reason` is too long ({len(value)} characters; "
                f"the limit is {MAX_REASON_LENGTH})."
            )
        if has_control_characters(value):
            self.fail("`--reason` must not contain control characters.")
        return value


# --- how a change verb changes a workload ------------------------------------------------


@dataclass(frozen=True)
class PatchPlan:
    """What a change verb sends to the object as it is now: one strategic-merge patch, or
    ``patch`` None when nothing would change (nothing is sent)."""

    patch: dict[str, Any] | None
    #: kubectl's words after the object's name: what it did (``image updated``), or for no
    #: change its line (``""`` where kubectl prints nothing).
    summary: str
    details: tuple[str, ...] = ()
    #: What kubectl prints on stderr beside its line.
    warnings: tuple[str, ...] = ()
    #: The change-cause's description (``set image app=app:2``) for a template change; None
    #: leaves the change-cause alone, as kubectl does for any other change.
    cause: str | None = None
    #: Whether the channel gets a progress message to follow (a paused object starts none).
    starts_rollout: bool = True


@dataclass(frozen=True)
class PatchRule:
    """kubectl's rule for a verb that changes a workload with one patch, for every kind: the
    services read the object, plan, check who else owns it, write and report, the same for
    every such verb, so a new one declares only this.

    Each function raises ``RolloutRefused`` where kubectl refuses, in kubectl's words."""

    #: (command, kind, the object as it is now, the time now) -> what to send.
    plan: Callable[[Any, Kind, dict[str, Any], datetime], PatchPlan]
    #: kubectl's refusals before an approval card is posted (no clock: a card waits).
    check: Callable[[Kind, dict[str, Any]], None]
    #: What an approval card says the change will do, in mrkdwn.
    preview: Callable[[Any, dict[str, Any]], str]
    #: As whom kubectl writes the fields (``kubectl-set``, ``kubectl-scale``...).
    field_manager: str = "kubectl-rollout"
    #: The spec fields an approval is bound to besides the pod template: if they change
    #: before the vote, the approval no longer holds.
    bound_fields: tuple[str, ...] = ()
    #: Whether an autoscaler (an HPA) sets the same field, so the reply and the card name it.
    autoscaled: bool = False


def no_refusal(kind: Kind, obj: dict[str, Any]) -> None:
    """A verb kubectl refuses nothing for before it plans."""


# --- the spec a verb declares --------------------------------------------------------------


@dataclass(frozen=True)
class VerbSpec:
    verb: str
    usage: str
    help: str
    command: type[CommandBase]
    #: Reads the verb's arguments (None for `help`, which the registry reads itself).
    parse: Callable[[Args, int], Command] | None
    #: The verb's own words, without the flags every command shares (`-n`, `--reason`, ...).
    render: Callable[[Any], list[str]]
    #: The flags it takes, in the order its refusals list them.
    flags: tuple[Flag, ...] = ()
    #: Flags that may be given more than once; the values are joined with commas (which no
    #: value of theirs can contain).
    repeatable: frozenset[str] = frozenset()
    #: Shown under the usage by `/rollout help VERB`; each one parses (tests check it).
    examples: tuple[str, ...] = ()
    #: What a newcomer needs beside the usage, for the verbs that need more than one line.
    note: str | None = None
    #: Words people reach for that mean this verb.
    hints: tuple[str, ...] = ()
    #: For a verb that changes a workload with one patch: how (the services run it).
    patch: PatchRule | None = None


def split_args(spec: VerbSpec, tokens: Sequence[str], known: Mapping[str, Flag]) -> Args:
    """The verb's words as an `Args`; `known` maps every spelling of every verb's flags."""
    allowed = tuple(flag.name for flag in spec.flags)
    args = Args(spec.verb, spec.usage, [], {})
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        flag = as_flag(token)
        if flag is None:
            args.positionals.append(token)
            continue
        spelling, value = flag
        found = known.get(spelling)
        if found is None or found.name not in allowed:
            args.fail(_unknown_flag_message(spec, spelling, found, known))
        display = found.display
        repeatable = found.name in spec.repeatable
        if found.name in args.flags and not repeatable:
            args.fail(f"`{display}` is given more than once.")
        if found.switch:
            if value is not None:
                args.fail(f"`{display}` takes no value.")
            args.flags[found.name] = "yes"
            continue
        if value is None and i < len(tokens) and not looks_like_flag(tokens[i]):
            value = tokens[i]
            i += 1
        if not value:
            args.fail(f"`{display}` needs a value, as in `{found.example}`.")
        if repeatable and found.name in args.flags:
            value = args.flags[found.name] + "," + value
        args.flags[found.name] = value
    return args


def _unknown_flag_message(
    spec: VerbSpec, spelling: str, found: Flag | None, known: Mapping[str, Flag]
) -> str:
    verb = spec.verb
    allowed = {flag.name for flag in spec.flags}
    if found is not None:
        message = f"`{verb}` does not take `{found.display}`."
    else:
        message = f"unknown flag `{show(spelling)}` for `{verb}`."
        spellings = [s for s, flag in known.items() if flag.name in allowed]
        if spelling.startswith("-n") and len(spelling) > 2 and "namespace" in allowed:
            message += f" Did you mean `-n {show(spelling[2:].lstrip('='))}`?"
        elif close := difflib.get_close_matches(spelling.lower(), spellings, n=1, cutoff=0.6):
            message += f" Did you mean `{close[0]}`?"
    if spec.flags:
        message += f" It takes {join_or([flag.display for flag in spec.flags])}."
    else:
        message += " It takes no flags."
    return message


# --- --context, which every verb takes, and --break-glass, which every change takes ---------

CONTEXT_FLAG: Final = "--context"
BREAK_GLASS_FLAG: Final = "--break-glass"
# Kubeconfig context names are free text in principle; in practice letters, digits and
# `.-_@:/` (`kind-dev`, `admin@prod`, `arn:aws:eks:…:cluster/prod`).
_CONTEXT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}")


def valid_context_name(value: str) -> bool:
    return bool(_CONTEXT_NAME.fullmatch(value))


def take_context(spec: VerbSpec, tokens: Sequence[str]) -> tuple[list[str], str | None]:
    rest: list[str] = []
    context: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        flag = as_flag(token)
        if flag is None or flag[0] != CONTEXT_FLAG:
            rest.append(token)
            continue
        value = flag[1]
        if value is None and i < len(tokens) and not looks_like_flag(tokens[i]):
            value = tokens[i]
            i += 1
        if context is not None:
            raise CommandError("`--context` is given more than once.", spec.usage)
        if not value:
            raise CommandError("`--context` needs a value, as in `--context prod-eu`.", spec.usage)
        if not valid_context_name(value):
            raise CommandError(
                f"`{show(value)}` is not a valid context name: use letters, digits and "
                "`.`, `-`, `_`, `@`, `:` or `/`.",
                spec.usage,
            )
        context = value
    return rest, context


def take_break_glass(spec: VerbSpec, tokens: Sequence[str]) -> tuple[list[str], str | None]:
    """``--break-glass=TEXT`` out of a change's arguments (a read has no freeze to break)."""
    rest: list[str] = []
    reason: str | None = None
    i = 0
    while i < len(tokens):
        flag = as_flag(tokens[i])
        i += 1
        if flag is None or flag[0] != BREAK_GLASS_FLAG:
            rest.append(tokens[i - 1])
            continue
        if not spec.command.is_mutation:
            raise CommandError(
                f"`{spec.verb}` does not change anything, so there is no freeze to break: "
                "drop `--break-glass`.",
                spec.usage,
            )
        value = flag[1]
        if value is None and i < len(tokens) and not looks_like_flag(tokens[i]):
            value = tokens[i]
            i += 1
        value = (value or "").strip(" ")
        if reason is not None:
            raise CommandError("`--break-glass` is given more than once.", spec.usage)
        if not value:
            raise CommandError(
                "`--break-glass` needs the reason the change cannot wait, as in "
                '`--break-glass "rolls back the outage fix"`.',
                spec.usage,
            )
        if len(value) > MAX_REASON_LENGTH or has_control_characters(value):
            raise CommandError(
                f"`--break-glass` takes one line of text of at most {MAX_REASON_LENGTH} "
                "characters.",
                spec.usage,
            )
        reason = value
    return rest, reason
