"""The ``/rollout`` grammar: the text of a slash command in, a typed command out.

Each verb lives in one module of this package (its command, flags, parser, renderer, help and
its kubectl rule for every kind it supports; a verb that changes a workload with one patch also
its ``PatchRule``, which the services run as it is); this module only registers them, in the
order the help lists them. Adding a verb is one new module, its line in ``SPECS`` and its member
of the ``Command`` union (for the type checker); ``register`` is the one path a spec takes.

The grammar is a contract (the help text is built from ``USAGE``; the README lists it too)::

    /rollout help [VERB]
    /rollout list [-n NS]
    /rollout status DEPLOY [-n NS]
    /rollout create DEPLOY --image=IMAGE [--replicas=N] [-n NS]
    /rollout set image DEPLOY CONTAINER=IMAGE [CONTAINER=IMAGE ...] [-n NS] [--reason=TEXT]
    /rollout scale DEPLOY --replicas=N [-n NS] [--reason=TEXT]
    /rollout history DEPLOY [--revision=N] [-n NS]
    /rollout diff DEPLOY REV [REV2] [-n NS]
    /rollout undo DEPLOY [--to-revision=N] [-n NS] [--reason=TEXT]
    /rollout pause DEPLOY [-n NS]
    /rollout resume DEPLOY [-n NS]
    /rollout restart DEPLOY [-n NS] [--reason=TEXT]
    /rollout approvals [-n NS]
    /rollout audit [DEPLOY] [-n NS] [--limit=N]
    /rollout freeze -n NS --for=DURATION --reason=TEXT
    /rollout unfreeze -n NS
    /rollout freezes [-n NS]
    /rollout canary deploy/NAME --image CONTAINER=IMAGE [--replicas N | --weight P%]
        [--analysis 10m] [--auto-promote] [-n NS]
    /rollout canary status|promote|abort DEPLOY [-n NS]
    /rollout promote NAME [--image app=repo:tag] [--dry-run] [--resume]
    /rollout promotions

``parse_command`` is total: for any string it returns one of the command classes or raises
``CommandError``; no other exception escapes. Before tokenising (shell-like, POSIX quoting) it
undoes what Slack and autocorrect do to typed text (``bot.domain.verbs.text``).
``render_command`` is the inverse: ``parse_command(render_command(c)) == c``.
"""

from __future__ import annotations

import dataclasses
import difflib
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

from bot.domain.verbs import (
    approvals,
    audit,
    canary,
    create,
    diff,
    freeze,
    help,
    history,
    listing,
    pause,
    promote,
    restart,
    resume,
    scale,
    set_image,
    status,
    undo,
)
from bot.domain.verbs.approvals import Approvals
from bot.domain.verbs.audit import DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, Audit
from bot.domain.verbs.canary import Canary, CanaryAbort, CanaryPromote, CanaryStatus
from bot.domain.verbs.create import Create
from bot.domain.verbs.diff import Diff
from bot.domain.verbs.freeze import Freeze, Freezes, Unfreeze
from bot.domain.verbs.grammar import (
    BREAK_GLASS_FLAG,
    CONTEXT_FLAG,
    DEFAULT_MAX_REPLICAS,
    MAX_IMAGE_LENGTH,
    MAX_REASON_LENGTH,
    MAX_TEXT_LENGTH,
    Action,
    CommandBase,
    CommandError,
    Flag,
    PatchPlan,
    PatchRule,
    VerbSpec,
    split_args,
    take_break_glass,
    take_context,
    valid_context_name,
)
from bot.domain.verbs.help import Help
from bot.domain.verbs.history import History
from bot.domain.verbs.listing import ListDeployments
from bot.domain.verbs.pause import Pause
from bot.domain.verbs.promote import Promote, Promotions
from bot.domain.verbs.restart import Restart
from bot.domain.verbs.resume import Resume
from bot.domain.verbs.scale import Scale
from bot.domain.verbs.set_image import SetImage
from bot.domain.verbs.status import Status
from bot.domain.verbs.text import normalise, show
from bot.domain.verbs.undo import Undo

__all__ = [
    "ACTIONS",
    "AUTOSCALED_ACTIONS",
    "BOUND_FIELDS",
    "BREAK_GLASS_FLAG",
    "CONTEXT_FLAG",
    "DEFAULT_AUDIT_LIMIT",
    "DEFAULT_MAX_REPLICAS",
    "EXAMPLES",
    "GRAMMAR",
    "HELP_NOTES",
    "HELP_TEXT",
    "MAX_AUDIT_LIMIT",
    "MAX_IMAGE_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_TEXT_LENGTH",
    "SPECS",
    "USAGE",
    "VERBS",
    "Action",
    "Approvals",
    "Audit",
    "Canary",
    "CanaryAbort",
    "CanaryPromote",
    "CanaryStatus",
    "Command",
    "CommandBase",
    "CommandError",
    "Create",
    "Diff",
    "Freeze",
    "Freezes",
    "Help",
    "History",
    "ListDeployments",
    "PatchPlan",
    "PatchRule",
    "Pause",
    "Promote",
    "Promotions",
    "Restart",
    "Resume",
    "Scale",
    "SetImage",
    "Status",
    "Undo",
    "Unfreeze",
    "VerbSpec",
    "command_record",
    "from_record",
    "parse_command",
    "register",
    "render_command",
    "spec_of",
    "unregister",
    "valid_context_name",
]

Command: TypeAlias = (
    Help
    | ListDeployments
    | Status
    | Create
    | SetImage
    | Scale
    | History
    | Diff
    | Undo
    | Pause
    | Resume
    | Restart
    | Approvals
    | Audit
    | Freeze
    | Unfreeze
    | Freezes
    | Canary
    | CanaryStatus
    | CanaryPromote
    | CanaryAbort
    | Promote
    | Promotions
)

# Every verb, in the order the help lists them: one line each.
SPECS: Final[tuple[VerbSpec, ...]] = (
    help.SPEC,
    listing.SPEC,
    status.SPEC,
    create.SPEC,
    set_image.SPEC,
    scale.SPEC,
    history.SPEC,
    diff.SPEC,
    undo.SPEC,
    pause.SPEC,
    resume.SPEC,
    restart.SPEC,
    approvals.SPEC,
    audit.SPEC,
    freeze.FREEZE,
    freeze.UNFREEZE,
    freeze.FREEZES,
    canary.CANARY,
    canary.STATUS,
    canary.PROMOTE,
    canary.ABORT,
    promote.PROMOTE,
    promote.PROMOTIONS,
)

_SPEC_OF: Final[dict[type, VerbSpec]] = {}
_SPEC_BY_VERB: Final[dict[str, VerbSpec]] = {}
# Every spelling of every verb's flags: a flag one verb takes is named in another's refusal.
_FLAGS: Final[dict[str, Flag]] = {}
# Words people reach for that the grammar spells differently.
_VERB_HINTS: Final[dict[str, str]] = {}
USAGE: Final[dict[str, str]] = {}
HELP_TEXT: Final[dict[str, str]] = {}
# `/rollout help VERB` shows these under the usage; each one parses (tests check it).
EXAMPLES: Final[dict[str, tuple[str, ...]]] = {}
# What a newcomer needs beside the usage, for the verbs that need more than one line.
HELP_NOTES: Final[dict[str, str]] = {}
# The spec fields an approval of each patching action is bound to besides the pod template.
BOUND_FIELDS: Final[dict[str, tuple[str, ...]]] = {}
# The actions whose field an autoscaler sets too (the reply and the card name the HPA).
AUTOSCALED_ACTIONS: Final[set[str]] = set()


def register(spec: VerbSpec) -> None:
    """Makes ``spec``'s verb parse, render, help and (for a change) run: every verb of
    ``SPECS`` comes through here once. A verb registered after import (a test's) is left out
    of the grammar's summary lines (``VERBS``, ``GRAMMAR``, ``ACTIONS``)."""
    _SPEC_OF[spec.command] = spec
    _SPEC_BY_VERB[spec.verb] = spec
    _FLAGS.update({spelling: flag for flag in spec.flags for spelling in flag.spellings})
    _VERB_HINTS.update(dict.fromkeys(spec.hints, spec.verb))
    USAGE[spec.verb] = spec.usage
    HELP_TEXT[spec.verb] = spec.help
    EXAMPLES[spec.verb] = spec.examples
    if spec.note is not None:
        HELP_NOTES[spec.verb] = spec.note
    if spec.patch is not None:
        BOUND_FIELDS[spec.command.action] = spec.patch.bound_fields
        if spec.patch.autoscaled:
            AUTOSCALED_ACTIONS.add(spec.command.action)


def unregister(spec: VerbSpec) -> None:
    """Undoes ``register`` (for a test's throwaway verb)."""
    _SPEC_OF.pop(spec.command, None)
    _SPEC_BY_VERB.pop(spec.verb, None)
    for flag in spec.flags:
        for spelling in flag.spellings:
            if not any(flag in other.flags for other in _SPEC_BY_VERB.values()):
                _FLAGS.pop(spelling, None)
    for hint in spec.hints:
        _VERB_HINTS.pop(hint, None)
    for table in (USAGE, HELP_TEXT, EXAMPLES, HELP_NOTES):
        table.pop(spec.verb, None)
    if spec.patch is not None:
        BOUND_FIELDS.pop(spec.command.action, None)
        AUTOSCALED_ACTIONS.discard(spec.command.action)


def spec_of(command_type: type[CommandBase]) -> VerbSpec | None:
    """The spec that declared this command type, if any."""
    return _SPEC_OF.get(command_type)


for _spec in SPECS:
    register(_spec)

VERBS: Final[tuple[str, ...]] = tuple(spec.verb for spec in SPECS)
GRAMMAR: Final = "\n".join(spec.usage for spec in SPECS)
# The action names a policy can grant, in grammar order. `help` is always allowed.
ACTIONS: Final[tuple[Action, ...]] = tuple(
    dict.fromkeys(spec.command.action for spec in SPECS if spec.verb != "help")
)


def _tokenise(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        words = text.lower().split()
        verb = "set image" if words[:1] == ["set"] else "".join(words[:1])
        usage = USAGE.get(verb, GRAMMAR)
        if "quotation" in str(exc):
            message = (
                "a quote is not closed: every `\"` and `'` needs a partner "
                '(put text with an apostrophe in double quotes, like `--reason="don\'t"`).'
            )
        else:
            message = "the text ends with a lone `\\`."
        raise CommandError(message, usage) from None


def _unknown_verb(word: str) -> CommandError:
    message = f"unknown command `{show(word)}`."
    hint = _VERB_HINTS.get(word) or next(
        iter(difflib.get_close_matches(word, VERBS, n=1, cutoff=0.6)), None
    )
    if hint:
        message += f" Did you mean `{hint}`?"
    # `canary status|promote|abort` are named by `canary`'s usage.
    verbs = (verb for verb in VERBS if not verb.startswith("canary "))
    message += " Commands: " + ", ".join(f"`{verb}`" for verb in verbs) + "."
    return CommandError(message, GRAMMAR)


def _verb(tokens: Sequence[str]) -> tuple[str, Sequence[str]]:
    word = tokens[0].lower()
    if word == "set":
        if len(tokens) > 1 and tokens[1].lower() == "image":
            return "set image", tokens[2:]
        raise CommandError("`set` is followed by `image`.", USAGE["set image"])
    if word == "canary" and len(tokens) > 1:
        sub = _SPEC_BY_VERB.get(f"canary {tokens[1].lower()}")
        if sub is not None and sub.parse is not None:
            return sub.verb, tokens[2:]
    if word == "help" or (word in _SPEC_BY_VERB and _SPEC_BY_VERB[word].parse is not None):
        return word, tokens[1:]
    raise _unknown_verb(word)


def _parse_help(tokens: Sequence[str]) -> Command:
    args = split_args(help.SPEC, tokens, _FLAGS)
    words = [word.lower() for word in args.positionals]
    if not words:
        return Help()
    if words[:2] == ["set", "image"]:
        args.no_more_than(2)
        return Help(verb="set image")
    if len(words) == 2 and " ".join(words) in USAGE:
        return Help(verb=" ".join(words))
    args.no_more_than(1)
    if words[0] in ("set", "set-image"):
        return Help(verb="set image")
    if words[0] not in USAGE:
        raise _unknown_verb(args.positionals[0])
    return Help(verb=words[0])


def parse_command(text: str, *, max_replicas: int = DEFAULT_MAX_REPLICAS) -> Command:
    """Parse the ``text`` of a ``/rollout`` slash command (everything after ``/rollout``).

    Empty text is ``Help()``. Raises ``CommandError`` for anything that is not a command.
    """
    if max_replicas < 0:
        raise ValueError("max_replicas must not be negative")
    if len(text) > MAX_TEXT_LENGTH:
        raise CommandError(
            f"the command is too long ({len(text)} characters; the limit is {MAX_TEXT_LENGTH})."
        )
    tokens = _tokenise(normalise(text))
    if not tokens:
        return Help()
    verb, rest = _verb(tokens)
    if verb == "help":
        return _parse_help(rest)
    spec = _SPEC_BY_VERB[verb]
    assert spec.parse is not None  # _verb() only returns verbs with a parser
    rest, context = take_context(spec, rest)
    rest, break_glass = take_break_glass(spec, rest)
    command = spec.parse(split_args(spec, rest, _FLAGS), max_replicas)
    if break_glass is not None:
        command = dataclasses.replace(command, break_glass=break_glass)  # type: ignore[arg-type]
    if context is None:
        return command
    return dataclasses.replace(command, context=context)  # type: ignore[arg-type]


def render_command(command: object) -> str:
    """The canonical text of a command, as Slack would deliver it after ``/rollout``.

    Flags use ``--flag=value`` and ``-n NS``; defaults are left out; ``&``, ``<`` and ``>`` are
    escaped as Slack escapes them, so the text is also safe inside mrkdwn.
    """
    words = _SPEC_OF[type(command)].render(command)
    namespace = getattr(command, "namespace", None)
    if not isinstance(command, Help) and namespace is not None:
        words += ["-n", namespace]
    reason = getattr(command, "reason", None)
    if isinstance(reason, str):
        words.append("--reason=" + shlex.quote(reason))
    break_glass = getattr(command, "break_glass", None)
    if isinstance(break_glass, str):
        words.append(f"{BREAK_GLASS_FLAG}=" + shlex.quote(break_glass))
    context = getattr(command, "context", None)
    if not isinstance(command, Help) and context is not None:
        words += [CONTEXT_FLAG, context]
    text = " ".join(words)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- structured records --------------------------------------------------------------------
#
# An approval request keeps the command it will run as data (verb and fields), never as text
# to parse again: what runs is exactly what was shown, with no second trip through the grammar.


def command_record(command: object) -> dict[str, Any]:
    """`{"verb": "set image", "fields": {...}}`: JSON-safe, and `from_record` restores it."""
    from pydantic import TypeAdapter

    fields = TypeAdapter(type(command)).dump_python(command, mode="json")
    if fields.get("context", "") is None:
        # A command without `--context` keeps the record it had before the flag existed.
        del fields["context"]
    if fields.get("break_glass", "") is None:
        del fields["break_glass"]
    return {"verb": _SPEC_OF[type(command)].verb, "fields": fields}


def from_record(record: Mapping[str, Any]) -> Command:
    """The command a record holds. Raises ValueError for anything this version cannot run.

    Records written before the workload field was called `name` say `deployment`; approvals
    pending across an upgrade still hold them."""
    from pydantic import TypeAdapter, ValidationError

    verb = record.get("verb")
    fields = record.get("fields")
    if not isinstance(verb, str) or verb not in _SPEC_BY_VERB or not isinstance(fields, dict):
        raise ValueError("not a command record")
    if "deployment" in fields and "name" not in fields:
        fields = {("name" if key == "deployment" else key): value for key, value in fields.items()}
    try:
        command: Command = TypeAdapter(_SPEC_BY_VERB[verb].command).validate_python(fields)  # type: ignore[assignment]
    except ValidationError as exc:
        raise ValueError("not a command record") from exc
    return command
