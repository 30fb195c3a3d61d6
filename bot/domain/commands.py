"""The ``/rollout`` grammar: the text of a slash command in, a typed command out.

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

Every verb but ``help`` also takes ``--context NAME`` (kubectl's flag): the kubeconfig context,
that is the cluster, it works on. ``None`` means the channel's context, else the default one.
Every change (``is_mutation``) also takes ``--break-glass=TEXT``: during a freeze it asks the
policy's break-glass approvers to let this one change through (``bot.domain.freezes``).

``DEPLOY`` names a workload as kubectl writes it: a bare ``NAME`` is a Deployment;
``deploy/NAME``, ``sts/NAME``, ``ds/NAME`` (singular, plural, ``….apps``) name a Deployment,
StatefulSet or DaemonSet, and the command's ``kind`` says which. ``create`` makes Deployments
only.

``parse_command`` is total: for any string it returns one of the command classes below or
raises ``CommandError``; no other exception escapes. Before tokenising (shell-like, POSIX
quoting) it undoes what Slack and autocorrect do to typed text:

* Slack markup: ``<@U1|bob>`` becomes ``@bob`` and a link becomes the text the user typed.
  Slack turns anything that looks like a domain (``registry.example.com/app:1``,
  ``deployment.apps/web``) into ``<http://…|…>``; then the entities ``&amp; &lt; &gt;``.
* Curly quotes become straight ones, except U+2019 between two letters: that is an apostrophe
  (``don't`` as autocorrect writes it), left alone so it does not open a quote.
* Every Unicode space becomes a plain space; zero-width spaces are dropped.
* Long dashes at the start of a flag: ``—replicas=3`` is ``--replicas=3``, and ``-n prod``
  written with an en dash is ``-n prod``. Autocorrect, not the user, picks the kind of dash,
  so for a flag written with one the name decides: a single letter is a short flag, a longer
  name a long one (``—n`` is ``-n``).

``render_command`` is the inverse: ``parse_command(render_command(c)) == c``.

Errors::

    CommandError        .message: one sentence, Slack mrkdwn, user input escaped
                        .usage:   the verb's usage line, or the whole grammar
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NoReturn, TypeAlias

from bot.domain import canary as canary_rules
from bot.domain import workloads

__all__ = [
    "ACTIONS",
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
    "USAGE",
    "VERBS",
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
    "command_record",
    "from_record",
    "parse_command",
    "render_command",
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
_MAX_IMAGE_NAME_LENGTH: Final = 255
MAX_AUDIT_LIMIT: Final = 500
# One screen of a Slack message.
DEFAULT_AUDIT_LIMIT: Final = 20
# Deployment revisions are int64 values in the `deployment.kubernetes.io/revision` annotation.
_MAX_REVISION: Final = 2**63 - 1


class CommandError(Exception):
    """The text is not a valid ``/rollout`` command.

    ``message`` is one short sentence in Slack mrkdwn; any user input quoted in it is
    shortened and escaped, so it can be sent as it is. ``usage`` is the usage line of the verb
    that was recognised, or the whole grammar when none was.
    """

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage if usage is not None else GRAMMAR


# --- commands ------------------------------------------------------------------------------


class CommandBase:
    """What every command has: the policy action it needs and whether it changes the cluster.

    ``namespace`` is ``None`` when the user gave none; the caller applies the channel default
    (``dataclasses.replace(command, namespace=...)``) before authorising.
    """

    __slots__ = ()
    action: ClassVar[str]
    is_mutation: ClassVar[bool] = False
    #: False for a change that runs as soon as the policy permits it, whatever approval rule or
    #: freeze covers its action (aborting a canary only removes what the canary added).
    needs_approval: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Help(CommandBase):
    action: ClassVar[str] = "help"
    verb: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListDeployments(CommandBase):
    action: ClassVar[str] = "list"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(CommandBase):
    action: ClassVar[str] = "status"
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Create(CommandBase):
    action: ClassVar[str] = "create"
    is_mutation: ClassVar[bool] = True
    deployment: str
    image: str
    # kubectl create deployment's default.
    replicas: int = 1
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetImage(CommandBase):
    action: ClassVar[str] = "set-image"
    is_mutation: ClassVar[bool] = True
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    # (container, image) in the order given; container "*" means every container.
    images: tuple[tuple[str, str], ...]
    namespace: str | None = None
    context: str | None = None
    reason: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale(CommandBase):
    action: ClassVar[str] = "scale"
    is_mutation: ClassVar[bool] = True
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    replicas: int
    namespace: str | None = None
    context: str | None = None
    reason: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class History(CommandBase):
    action: ClassVar[str] = "history"
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    revision: int | None = None
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Diff(CommandBase):
    action: ClassVar[str] = "diff"
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    rev: int
    # None: compare `rev` with the current template.
    rev2: int | None = None
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Undo(CommandBase):
    action: ClassVar[str] = "undo"
    is_mutation: ClassVar[bool] = True
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    # None: the previous revision (kubectl's `--to-revision=0`).
    to_revision: int | None = None
    namespace: str | None = None
    context: str | None = None
    reason: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(CommandBase):
    action: ClassVar[str] = "pause"
    is_mutation: ClassVar[bool] = True
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(CommandBase):
    action: ClassVar[str] = "resume"
    is_mutation: ClassVar[bool] = True
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart(CommandBase):
    action: ClassVar[str] = "restart"
    is_mutation: ClassVar[bool] = True
    deployment: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    namespace: str | None = None
    context: str | None = None
    reason: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Approvals(CommandBase):
    action: ClassVar[str] = "approvals"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit(CommandBase):
    action: ClassVar[str] = "audit"
    deployment: str | None = None
    namespace: str | None = None
    context: str | None = None
    limit: int = DEFAULT_AUDIT_LIMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Freeze(CommandBase):
    action: ClassVar[str] = "freeze"
    #: How long the freeze lasts from now, in seconds.
    seconds: int
    reason: str
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfreeze(CommandBase):
    # Whoever may freeze may lift a freeze.
    action: ClassVar[str] = "freeze"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Freezes(CommandBase):
    action: ClassVar[str] = "freezes"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Promote(CommandBase):
    """Promote a pipeline of the policy (``bot.domain.promotion``). The changes it makes are
    each target's own ``set image``, checked and made then; the command itself changes nothing."""

    action: ClassVar[str] = "promote"
    pipeline: str
    #: (container, image) pairs to promote instead of the source's images.
    images: tuple[tuple[str, str], ...] = ()
    dry_run: bool = False
    resume: bool = False
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Canary(CommandBase):
    """A canary of a Deployment: `web-canary` with the new images beside `web`. It needs what
    `set image` on `web` needs (the same permission, approvals and GitOps rules)."""

    action: ClassVar[str] = "set-image"
    is_mutation: ClassVar[bool] = True
    deployment: str
    images: tuple[tuple[str, str], ...]
    #: At most one of `replicas` and `weight` (a percentage); neither means one replica.
    replicas: int | None = None
    weight: int | None = None
    analysis_seconds: int = canary_rules.DEFAULT_ANALYSIS_SECONDS
    auto_promote: bool = False
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryStatus(CommandBase):
    action: ClassVar[str] = "status"
    deployment: str
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotions(CommandBase):
    action: ClassVar[str] = "promotions"
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryPromote(CommandBase):
    """`set image` on the Deployment with its canary's images: the same permission and
    approvals (four-eyes where the policy asks for it)."""

    action: ClassVar[str] = "set-image"
    is_mutation: ClassVar[bool] = True
    deployment: str
    namespace: str | None = None
    context: str | None = None
    #: Asks the break-glass approvers to let this change through a freeze, for this reason.
    break_glass: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryAbort(CommandBase):
    action: ClassVar[str] = "set-image"
    is_mutation: ClassVar[bool] = True
    needs_approval: ClassVar[bool] = False
    deployment: str
    namespace: str | None = None
    context: str | None = None
    #: Accepted like every change's; an abort waits for no freeze anyway.
    break_glass: str | None = None


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

# --- normalisation and tokenising ----------------------------------------------------------

_QUOTES: Final = {
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
}
_APOSTROPHE: Final = "\u2019"
# Zero-width space, word joiner, byte-order mark: invisible, never meaningful in a command.
_INVISIBLE: Final = frozenset("\u200b\u2060\ufeff")
# Hyphen-like characters and how many ASCII hyphens each stands for.
_DASHES: Final = {
    "-": 1,
    "\u2010": 1,  # hyphen
    "\u2011": 1,  # non-breaking hyphen
    "\u2012": 1,  # figure dash
    "\u2013": 1,  # en dash
    "\u2212": 1,  # minus sign
    "\u2014": 2,  # em dash
    "\u2015": 2,  # horizontal bar
}
# Explicit direction marks and overrides can make text read differently from what it is.
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

_SLACK_MARKUP: Final = re.compile(r"<([^<>]*)>")
_SLACK_ENTITY: Final = re.compile(r"&(?:amp|lt|gt);")
_ENTITIES: Final = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def _unwrap_markup(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if target.startswith(("@", "#")):  # <@U123|bob>, <#C123|deploys>
        return target[0] + (label or target[1:])
    if target.startswith("!"):  # <!here>, <!subteam^S123|@sre>
        return label or "@" + target[1:]
    return label or target  # a link: the label is what the user typed


def _normalise(text: str) -> str:
    text = _SLACK_MARKUP.sub(_unwrap_markup, text)
    text = _SLACK_ENTITY.sub(lambda match: _ENTITIES[match.group(0)], text)
    out: list[str] = []
    last = len(text) - 1
    for i, char in enumerate(text):
        if char in _INVISIBLE:
            continue
        if char.isspace():
            out.append(" ")
        elif (
            char == _APOSTROPHE and 0 < i < last and text[i - 1].isalnum() and text[i + 1].isalnum()
        ):
            out.append(char)
        else:
            out.append(_QUOTES.get(char, char))
    return "".join(out)


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


def _show(value: str) -> str:
    """User input made safe to quote inside backticks in a Slack message."""
    if len(value) > 60:
        value = value[:57] + "…"
    value = "".join(
        "\ufffd" if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS else char
        for char in value
    )
    value = value.replace("`", "'")
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- flags ---------------------------------------------------------------------------------

_FLAG_DISPLAY: Final = {
    "namespace": "-n",
    "image": "--image",
    "replicas": "--replicas",
    "revision": "--revision",
    "to-revision": "--to-revision",
    "limit": "--limit",
    "reason": "--reason",
    "for": "--for",
    "weight": "--weight",
    "analysis": "--analysis",
    "auto-promote": "--auto-promote",
    "dry-run": "--dry-run",
    "resume": "--resume",
}
_FLAG_EXAMPLE: Final = {
    "namespace": "-n prod",
    "image": "--image=nginx:1.27",
    "replicas": "--replicas=3",
    "revision": "--revision=2",
    "to-revision": "--to-revision=2",
    "limit": "--limit=50",
    "reason": '--reason="fixes the login bug"',
    "for": "--for=2h",
    "weight": "--weight 10%",
    "analysis": "--analysis 10m",
    "auto-promote": "--auto-promote",
    "dry-run": "--dry-run",
    "resume": "--resume",
}
_FLAG_SPELLINGS: Final = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--image": "image",
    "--replicas": "replicas",
    "--revision": "revision",
    "--to-revision": "to-revision",
    "--limit": "limit",
    "--reason": "reason",
    "--for": "for",
    "--weight": "weight",
    "--analysis": "analysis",
    "--auto-promote": "auto-promote",
    "--dry-run": "dry-run",
    "--resume": "resume",
}
# Flags that take no value (present or not).
_SWITCHES: Final = frozenset({"auto-promote", "dry-run", "resume"})
# (verb, flag) pairs that may be given more than once; the values are joined with commas
# (which no value of theirs can contain).
_REPEATABLE: Final = frozenset({("canary", "image"), ("promote", "image")})
_VERB_FLAGS: Final[dict[str, tuple[str, ...]]] = {
    "help": (),
    "list": ("namespace",),
    "status": ("namespace",),
    "create": ("image", "replicas", "namespace"),
    "set image": ("namespace", "reason"),
    "scale": ("replicas", "namespace", "reason"),
    "history": ("revision", "namespace"),
    "diff": ("namespace",),
    "undo": ("to-revision", "namespace", "reason"),
    "pause": ("namespace",),
    "resume": ("namespace",),
    "restart": ("namespace", "reason"),
    "approvals": ("namespace",),
    "audit": ("namespace", "limit"),
    "freeze": ("namespace", "for", "reason"),
    "unfreeze": ("namespace",),
    "freezes": ("namespace",),
    "canary": ("image", "replicas", "weight", "analysis", "auto-promote", "namespace"),
    "canary status": ("namespace",),
    "canary promote": ("namespace",),
    "canary abort": ("namespace",),
    "promote": ("image", "dry-run", "resume"),
    "promotions": (),
}


def _as_flag(token: str) -> tuple[str, str | None] | None:
    """``(spelling, inline value)`` if the token is a flag, e.g. ``("--replicas", "3")``.

    A token that starts with dashes and then a digit is a (negative) number, not a flag.
    """
    width = 0
    fancy = False
    end = 0
    while end < len(token) and token[end] in _DASHES:
        width += _DASHES[token[end]]
        fancy = fancy or token[end] != "-"
        end += 1
    if end == 0 or token[end : end + 1].isdigit():
        return None
    name, equals, value = token[end:].partition("=")
    prefix = ("-" if len(name) == 1 else "--") if fancy else "-" * width
    return prefix + name, value if equals else None


def _looks_like_flag(token: str) -> bool:
    flag = _as_flag(token)
    if flag is None:
        return False
    first = flag[0].lstrip("-")[:1]
    return first.isascii() and first.isalpha()


def _join_or(items: Sequence[str]) -> str:
    quoted = [f"`{item}`" for item in items]
    if len(quoted) <= 2:
        return " or ".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


@dataclass
class _Args:
    verb: str
    positionals: list[str]
    flags: dict[str, str]

    def fail(self, message: str) -> NoReturn:
        raise CommandError(message, USAGE[self.verb])

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
            self.fail(f"unexpected extra argument `{_show(self.positionals[count])}`.")

    def namespace(self) -> str | None:
        value = self.flag("namespace")
        if value is None:
            return None
        if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
            self.fail(
                f"`{_show(value)}` is not a valid namespace: use at most 63 lowercase letters, "
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
        if any(
            unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS for char in value
        ):
            self.fail("`--reason` must not contain control characters.")
        return value


def _split_args(verb: str, tokens: Sequence[str]) -> _Args:
    allowed = _VERB_FLAGS[verb]
    args = _Args(verb, [], {})
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        flag = _as_flag(token)
        if flag is None:
            args.positionals.append(token)
            continue
        spelling, value = flag
        name = _FLAG_SPELLINGS.get(spelling)
        if name is None or name not in allowed:
            args.fail(_unknown_flag_message(verb, spelling, name, allowed))
        display = _FLAG_DISPLAY[name]
        repeatable = (verb, name) in _REPEATABLE
        if name in args.flags and not repeatable:
            args.fail(f"`{display}` is given more than once.")
        if name in _SWITCHES:
            if value is not None:
                args.fail(f"`{display}` takes no value.")
            args.flags[name] = "yes"
            continue
        if value is None and i < len(tokens) and not _looks_like_flag(tokens[i]):
            value = tokens[i]
            i += 1
        if not value:
            args.fail(f"`{display}` needs a value, as in `{_FLAG_EXAMPLE[name]}`.")
        if repeatable and name in args.flags:
            value = args.flags[name] + "," + value
        args.flags[name] = value
    return args


def _unknown_flag_message(
    verb: str, spelling: str, name: str | None, allowed: tuple[str, ...]
) -> str:
    if name is not None:
        message = f"`{verb}` does not take `{_FLAG_DISPLAY[name]}`."
    else:
        message = f"unknown flag `{_show(spelling)}` for `{verb}`."
        spellings = [s for s, n in _FLAG_SPELLINGS.items() if n in allowed]
        if spelling.startswith("-n") and len(spelling) > 2 and "namespace" in allowed:
            message += f" Did you mean `-n {_show(spelling[2:].lstrip('='))}`?"
        elif close := difflib.get_close_matches(spelling.lower(), spellings, n=1, cutoff=0.6):
            message += f" Did you mean `{close[0]}`?"
    if allowed:
        message += f" It takes {_join_or([_FLAG_DISPLAY[n] for n in allowed])}."
    else:
        message += " It takes no flags."
    return message


# --- values --------------------------------------------------------------------------------

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_SIGNED: Final = re.compile(r"[+-]?[0-9]{1,19}")

# Docker's reference grammar: [domain[:port]/]path[:tag][@digest], path lowercase.
_PATH_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE: Final = re.compile(
    rf"(?P<name>(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@(?:sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}))?"
)


def _target(args: _Args, token: str) -> tuple[str, str]:
    """(kind, name) from ``NAME`` (a Deployment), ``KIND/NAME`` as kubectl writes it
    (``deploy/``, ``sts/``, ``ds/``, singular, plural, ``….apps``)."""
    spelling, slash, name = token.partition("/")
    kind: str = "deployment"
    if not slash:
        name = token
    else:
        found = workloads.parse_kind(spelling)
        if found is None:
            args.fail(
                f"`{_show(token)}` is not a Deployment, StatefulSet or DaemonSet: write `NAME`, "
                "`deploy/NAME`, `sts/NAME` or `ds/NAME`."
            )
        kind = found
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        noun = "deployment" if kind == "deployment" else workloads.info(kind).display
        args.fail(
            f"`{_show(name)}` is not a valid {noun} name: use at most 253 lowercase "
            "letters, digits, `-` and `.`, starting and ending with a letter or digit."
        )
    return kind, name


def _deployment(args: _Args, token: str) -> str:
    kind, name = _target(args, token)
    if kind != "deployment":
        args.fail(
            f"`create` makes Deployments only; create {workloads.info(kind).display}s with "
            "kubectl, then use the other verbs on them."
        )
    return name


def _word(kind: str, name: str) -> str:
    """The target as written back: ``NAME`` for a Deployment, ``statefulset/NAME`` else."""
    return name if kind == "deployment" else f"{kind}/{name}"


def _image(args: _Args, value: str) -> str:
    if len(value) > MAX_IMAGE_LENGTH:
        args.fail(f"the image reference is too long (the limit is {MAX_IMAGE_LENGTH}).")
    match = _IMAGE.fullmatch(value)
    if match is None:
        if _IMAGE.fullmatch(value.lower()):
            args.fail(f"`{_show(value)}` is not a valid image: repository names are lowercase.")
        args.fail(
            f"`{_show(value)}` is not a valid image reference; "
            "expected something like `nginx:1.27` or `registry.example.com/team/app@sha256:…`."
        )
    if len(match.group("name")) > _MAX_IMAGE_NAME_LENGTH:
        args.fail(f"the image name is too long (the limit is {_MAX_IMAGE_NAME_LENGTH}).")
    return value


def _number(value: str, lowest: int, highest: int) -> int | None:
    if not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if lowest <= number <= highest else None


def _replicas(args: _Args, value: str, max_replicas: int) -> int:
    number = _number(value, 0, max_replicas)
    if number is None:
        args.fail(
            f"`--replicas` must be a whole number from 0 to {max_replicas}, got `{_show(value)}`."
        )
    return number


def _revision(args: _Args, value: str, what: str) -> int:
    number = _number(value, 1, _MAX_REVISION)
    if number is None:
        args.fail(f"{what} must be a revision number (1 or more), got `{_show(value)}`.")
    return number


def _set_image_pair(args: _Args, token: str) -> tuple[str, str]:
    container, equals, image = token.partition("=")
    if not equals:
        args.fail(f"expected `CONTAINER=IMAGE`, got `{_show(token)}`.")
    if container != "*" and (len(container) > 63 or not _DNS_LABEL.fullmatch(container)):
        args.fail(
            f"`{_show(container)}` is not a valid container name: use at most 63 lowercase "
            "letters, digits and `-`, or `*` for every container."
        )
    if not image:
        args.fail(f"container `{_show(container)}` needs an image after `=`.")
    return container, _image(args, image)


# --- verbs ---------------------------------------------------------------------------------

_DEPLOY: Final = "a deployment name"


def _parse_list(args: _Args, max_replicas: int) -> Command:
    args.no_more_than(0)
    return ListDeployments(namespace=args.namespace())


def _parse_status(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return Status(deployment=deployment, kind=kind, namespace=args.namespace())


def _parse_create(args: _Args, max_replicas: int) -> Command:
    deployment = _deployment(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    image = args.flag("image")
    if image is None:
        args.fail("`create` needs `--image=IMAGE`.")
    replicas = args.flag("replicas")
    return Create(
        deployment=deployment,
        image=_image(args, image),
        replicas=1 if replicas is None else _replicas(args, replicas, max_replicas),
        namespace=args.namespace(),
    )


def _parse_set_image(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.positional(1, "at least one `CONTAINER=IMAGE`")
    pairs = [_set_image_pair(args, token) for token in args.positionals[1:]]
    # kubectl reads the pairs into a map: a container named twice keeps its last image, and
    # `*` beside another container is its error, word for word.
    named = {container for container, _ in pairs}
    if "*" in named and len(named) > 1:
        args.fail(
            "all containers are already specified by *, but saw more than one "
            "container_name=container_image pairs"
        )
    return SetImage(
        deployment=deployment,
        kind=kind,
        images=tuple(pairs),
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _parse_scale(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    replicas = args.flag("replicas")
    if replicas is None:
        args.fail("`scale` needs `--replicas=N`.")
    return Scale(
        deployment=deployment,
        kind=kind,
        replicas=_replicas(args, replicas, max_replicas),
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _signed_revision(args: _Args, value: str, what: str, usage: str) -> int:
    """A revision flag as kubectl's int64 flag reads it: any whole number, negative too (what
    a negative one means is kubectl's verb's own answer)."""
    if not _SIGNED.fullmatch(value) or abs(int(value)) > _MAX_REVISION:
        args.fail(f"{what} must be {usage}, got `{_show(value)}`.")
    return int(value)


def _parse_history(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    value = args.flag("revision")
    revision = None
    if value is not None:
        number = _signed_revision(
            args, value, "`--revision`", "a revision number (0 lists them all)"
        )
        if number < 0:
            # kubectl's validation, word for word.
            args.fail(f"revision must be a positive integer: {number}")
        # kubectl treats --revision=0 as no revision: the whole list.
        revision = number or None
    return History(deployment=deployment, kind=kind, revision=revision, namespace=args.namespace())


def _parse_diff(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    rev = _revision(args, args.positional(1, "a revision number"), "REV")
    second = args.optional_positional(2)
    args.no_more_than(3)
    rev2 = None if second is None else _revision(args, second, "REV2")
    if rev == rev2:
        args.fail(f"both revisions are {rev}; name two different revisions.")
    return Diff(deployment=deployment, kind=kind, rev=rev, rev2=rev2, namespace=args.namespace())


def _parse_undo(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    value = args.flag("to-revision")
    to_revision = None
    if value is not None:
        # A negative number is kubectl's rollbacker's to refuse ("unable to find specified
        # revision -1 in history"), after the object is looked up, as kubectl does.
        number = _signed_revision(
            args, value, "`--to-revision`", "a revision number (0 means the previous one)"
        )
        to_revision = number or None
    return Undo(
        deployment=deployment,
        kind=kind,
        to_revision=to_revision,
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _parse_pause(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return Pause(deployment=deployment, kind=kind, namespace=args.namespace())


def _parse_resume(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return Resume(deployment=deployment, kind=kind, namespace=args.namespace())


def _parse_restart(args: _Args, max_replicas: int) -> Command:
    kind, deployment = _target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return Restart(
        deployment=deployment, kind=kind, namespace=args.namespace(), reason=args.reason()
    )


def _parse_approvals(args: _Args, max_replicas: int) -> Command:
    args.no_more_than(0)
    return Approvals(namespace=args.namespace())


def _parse_audit(args: _Args, max_replicas: int) -> Command:
    first = args.optional_positional(0)
    args.no_more_than(1)
    deployment = None if first is None else _target(args, first)[1]
    value = args.flag("limit")
    limit = DEFAULT_AUDIT_LIMIT
    if value is not None:
        number = _number(value, 1, MAX_AUDIT_LIMIT)
        if number is None:
            args.fail(
                f"`--limit` must be a whole number from 1 to {MAX_AUDIT_LIMIT}, "
                f"got `{_show(value)}`."
            )
        limit = number
    return Audit(deployment=deployment, namespace=args.namespace(), limit=limit)


def _parse_freeze(args: _Args, max_replicas: int) -> Command:
    from bot.domain.freezes import MAX_FREEZE, MIN_FREEZE, parse_duration

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
            f"`1m`, `2h` or `1d`; got `{_show(text)}`."
        )
    reason = args.reason()
    if reason is None:
        args.fail('`freeze` needs a reason people will read, as in `--reason "incident 4711"`.')
    return Freeze(seconds=int(duration.total_seconds()), reason=reason, namespace=namespace)


def _parse_unfreeze(args: _Args, max_replicas: int) -> Command:
    args.no_more_than(0)
    namespace = args.namespace()
    if namespace is None:
        args.fail("`unfreeze` needs the namespace, as in `-n prod`.")
    return Unfreeze(namespace=namespace)


def _parse_freezes(args: _Args, max_replicas: int) -> Command:
    args.no_more_than(0)
    return Freezes(namespace=args.namespace())


# --- canary ------------------------------------------------------------------------------------


def _canary_target(args: _Args, token: str) -> str:
    kind, name = _target(args, token)
    if kind != "deployment":
        display = workloads.info(kind).display
        args.fail(
            f"a canary is for Deployments only. A {display} rolls out pod by pod: "
            + (
                "its canary is a partition (`spec.updateStrategy.rollingUpdate.partition`), "
                "then `set image`."
                if kind == "statefulset"
                else "limit how many pods change at once with `maxUnavailable`, then `set image`."
            )
        )
    if len(name) > canary_rules.MAX_NAME_LENGTH:
        args.fail(f"`{_show(name)}` is too long a name to add `{canary_rules.SUFFIX}` to.")
    return name


def _parse_canary(args: _Args, max_replicas: int) -> Command:
    deployment = _canary_target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    value = args.flag("image")
    if value is None:
        args.fail("`canary` needs `--image CONTAINER=IMAGE`, as in `--image app=nginx:1.27`.")
    pairs = [_set_image_pair(args, token) for token in value.split(",")]
    containers = [container for container, _ in pairs]
    if len(set(containers)) != len(containers):
        args.fail("a container is given more than once in `--image`.")
    if "*" in containers and len(pairs) > 1:
        args.fail("`*=IMAGE` sets every container; do not combine it with named containers.")
    replicas_text, weight_text = args.flag("replicas"), args.flag("weight")
    if replicas_text is not None and weight_text is not None:
        args.fail("give `--replicas` or `--weight`, not both.")
    replicas = None
    if replicas_text is not None:
        replicas = _number(replicas_text, 1, max(1, max_replicas))
        if replicas is None:
            args.fail(
                f"`--replicas` must be a whole number from 1 to {max(1, max_replicas)}, "
                f"got `{_show(replicas_text)}`."
            )
    weight = None
    if weight_text is not None:
        weight = _number(weight_text.removesuffix("%"), 1, 99)
        if weight is None:
            args.fail(
                f"`--weight` is a share of the pods from 1% to 99%, got `{_show(weight_text)}`."
            )
    analysis = canary_rules.DEFAULT_ANALYSIS_SECONDS
    analysis_text = args.flag("analysis")
    if analysis_text is not None:
        seconds = canary_rules.parse_duration(analysis_text)
        low, high = canary_rules.MIN_ANALYSIS_SECONDS, canary_rules.MAX_ANALYSIS_SECONDS
        if seconds is None or not low <= seconds <= high:
            args.fail(
                f"`--analysis` is how long the canary must stay healthy, from {low}s to "
                f"{high // 3600}h (`90s`, `10m`, `1h`), got `{_show(analysis_text)}`."
            )
        analysis = seconds
    return Canary(
        deployment=deployment,
        images=tuple(pairs),
        replicas=replicas,
        weight=weight,
        analysis_seconds=analysis,
        auto_promote=args.flag("auto-promote") is not None,
        namespace=args.namespace(),
    )


def _parse_canary_status(args: _Args, max_replicas: int) -> Command:
    deployment = _canary_target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return CanaryStatus(deployment=deployment, namespace=args.namespace())


def _parse_canary_promote(args: _Args, max_replicas: int) -> Command:
    deployment = _canary_target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return CanaryPromote(deployment=deployment, namespace=args.namespace())


def _parse_canary_abort(args: _Args, max_replicas: int) -> Command:
    deployment = _canary_target(args, args.positional(0, _DEPLOY))
    args.no_more_than(1)
    return CanaryAbort(deployment=deployment, namespace=args.namespace())


_PIPELINE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")


def _parse_promote(args: _Args, max_replicas: int) -> Command:
    args.no_more_than(1)
    name = args.positional(0, "the name of a pipeline from the policy, as in `promote web`")
    if not _PIPELINE.fullmatch(name):
        args.fail(
            f"`{_show(name)}` is not a pipeline name: pipelines are named with lowercase "
            "letters, digits and `-` in the policy's `pipelines`."
        )
    images = tuple(
        _set_image_pair(args, pair) for pair in (args.flag("image") or "").split(",") if pair
    )
    containers = [container for container, _ in images]
    if "*" in containers:
        args.fail("`--image` names a container, as in `--image app=repo:tag`; `*` is not one.")
    if len(set(containers)) != len(containers):
        args.fail("`--image` names the same container more than once.")
    resume = args.flag("resume") is not None
    if resume and images:
        args.fail("`--resume` continues a halted promotion with its own images; drop `--image`.")
    return Promote(
        pipeline=name, images=images, dry_run=args.flag("dry-run") is not None, resume=resume
    )


def _parse_promotions(args: _Args, max_replicas: int) -> Command:
    args.no_more_than(0)
    return Promotions()


# Words people reach for that the grammar spells differently.
_VERB_HINTS: Final = {
    "rollback": "undo",
    "revert": "undo",
    "ls": "list",
    "get": "status",
    "image": "set image",
    "set-image": "set image",
    "deploy": "set image",
    "replicas": "scale",
    "unpause": "resume",
    "redeploy": "restart",
}


def _unknown_verb(word: str) -> CommandError:
    message = f"unknown command `{_show(word)}`."
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
    if word == "canary" and len(tokens) > 1 and f"canary {tokens[1].lower()}" in _PARSERS:
        return f"canary {tokens[1].lower()}", tokens[2:]
    if word in _PARSERS or word == "help":
        return word, tokens[1:]
    raise _unknown_verb(word)


def _parse_help(tokens: Sequence[str]) -> Command:
    args = _split_args("help", tokens)
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
    tokens = _tokenise(_normalise(text))
    if not tokens:
        return Help()
    verb, rest = _verb(tokens)
    if verb == "help":
        return _parse_help(rest)
    rest, context = _take_context(verb, rest)
    rest, break_glass = _take_break_glass(verb, rest)
    command = _PARSERS[verb](_split_args(verb, rest), max_replicas)
    if break_glass is not None:
        command = dataclasses.replace(command, break_glass=break_glass)  # type: ignore[arg-type]
    if context is None:
        return command
    return dataclasses.replace(command, context=context)  # type: ignore[arg-type]


# --- --context, which every verb takes ------------------------------------------------------
#
# kubectl's flag: the kubeconfig context (cluster) the command works on. It is taken out of the
# arguments before the verb's own flags are read, so each verb's grammar stays as it is.

CONTEXT_FLAG: Final = "--context"
# Kubeconfig context names are free text in principle; in practice letters, digits and
# `.-_@:/` (`kind-dev`, `admin@prod`, `arn:aws:eks:…:cluster/prod`).
_CONTEXT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}")


def valid_context_name(value: str) -> bool:
    return bool(_CONTEXT_NAME.fullmatch(value))


def _take_context(verb: str, tokens: Sequence[str]) -> tuple[list[str], str | None]:
    rest: list[str] = []
    context: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        flag = _as_flag(token)
        if flag is None or flag[0] != CONTEXT_FLAG:
            rest.append(token)
            continue
        value = flag[1]
        if value is None and i < len(tokens) and not _looks_like_flag(tokens[i]):
            value = tokens[i]
            i += 1
        if context is not None:
            raise CommandError("`--context` is given more than once.", USAGE[verb])
        if not value:
            raise CommandError("`--context` needs a value, as in `--context prod-eu`.", USAGE[verb])
        if not valid_context_name(value):
            raise CommandError(
                f"`{_show(value)}` is not a valid context name: use letters, digits and "
                "`.`, `-`, `_`, `@`, `:` or `/`.",
                USAGE[verb],
            )
        context = value
    return rest, context


BREAK_GLASS_FLAG: Final = "--break-glass"


def _take_break_glass(verb: str, tokens: Sequence[str]) -> tuple[list[str], str | None]:
    """``--break-glass=TEXT`` out of a change's arguments (a read has no freeze to break)."""
    rest: list[str] = []
    reason: str | None = None
    i = 0
    while i < len(tokens):
        flag = _as_flag(tokens[i])
        i += 1
        if flag is None or flag[0] != BREAK_GLASS_FLAG:
            rest.append(tokens[i - 1])
            continue
        if not _COMMAND_TYPES[verb].is_mutation:
            raise CommandError(
                f"`{verb}` does not change anything, so there is no freeze to break: "
                "drop `--break-glass`.",
                USAGE[verb],
            )
        value = flag[1]
        if value is None and i < len(tokens) and not _looks_like_flag(tokens[i]):
            value = tokens[i]
            i += 1
        value = (value or "").strip(" ")
        if reason is not None:
            raise CommandError("`--break-glass` is given more than once.", USAGE[verb])
        if not value:
            raise CommandError(
                "`--break-glass` needs the reason the change cannot wait, as in "
                '`--break-glass "rolls back the outage fix"`.',
                USAGE[verb],
            )
        if len(value) > MAX_REASON_LENGTH or any(
            unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS for char in value
        ):
            raise CommandError(
                f"`--break-glass` takes one line of text of at most {MAX_REASON_LENGTH} "
                "characters.",
                USAGE[verb],
            )
        reason = value
    return rest, reason


# --- rendering -----------------------------------------------------------------------------
#
# Each verb's words, without the flags every command shares (-n, --reason), which
# `render_command` adds.


def _render_help(command: Help) -> list[str]:
    return ["help"] if command.verb is None else ["help", command.verb]


def _render_list(command: ListDeployments) -> list[str]:
    return ["list"]


def _render_status(command: Status) -> list[str]:
    return ["status", _word(command.kind, command.deployment)]


def _render_create(command: Create) -> list[str]:
    words = ["create", command.deployment, f"--image={command.image}"]
    if command.replicas != 1:
        words.append(f"--replicas={command.replicas}")
    return words


def _render_set_image(command: SetImage) -> list[str]:
    pairs = (f"{container}={image}" for container, image in command.images)
    return ["set image", _word(command.kind, command.deployment), *pairs]


def _render_scale(command: Scale) -> list[str]:
    return ["scale", _word(command.kind, command.deployment), f"--replicas={command.replicas}"]


def _render_history(command: History) -> list[str]:
    words = ["history", _word(command.kind, command.deployment)]
    if command.revision is not None:
        words.append(f"--revision={command.revision}")
    return words


def _render_diff(command: Diff) -> list[str]:
    words = ["diff", _word(command.kind, command.deployment), str(command.rev)]
    if command.rev2 is not None:
        words.append(str(command.rev2))
    return words


def _render_undo(command: Undo) -> list[str]:
    words = ["undo", _word(command.kind, command.deployment)]
    if command.to_revision is not None:
        words.append(f"--to-revision={command.to_revision}")
    return words


def _render_pause(command: Pause) -> list[str]:
    return ["pause", _word(command.kind, command.deployment)]


def _render_resume(command: Resume) -> list[str]:
    return ["resume", _word(command.kind, command.deployment)]


def _render_restart(command: Restart) -> list[str]:
    return ["restart", _word(command.kind, command.deployment)]


def _render_approvals(command: Approvals) -> list[str]:
    return ["approvals"]


def _render_audit(command: Audit) -> list[str]:
    words = ["audit"] if command.deployment is None else ["audit", command.deployment]
    if command.limit != DEFAULT_AUDIT_LIMIT:
        words.append(f"--limit={command.limit}")
    return words


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


def _render_canary(command: Canary) -> list[str]:
    words = ["canary", f"deploy/{command.deployment}"]
    words += [f"--image={container}={image}" for container, image in command.images]
    if command.replicas is not None:
        words.append(f"--replicas={command.replicas}")
    if command.weight is not None:
        words.append(f"--weight={command.weight}%")
    if command.analysis_seconds != canary_rules.DEFAULT_ANALYSIS_SECONDS:
        words.append(f"--analysis={canary_rules.describe_duration(command.analysis_seconds)}")
    if command.auto_promote:
        words.append("--auto-promote")
    return words


def _render_canary_status(command: CanaryStatus) -> list[str]:
    return ["canary status", command.deployment]


def _render_canary_promote(command: CanaryPromote) -> list[str]:
    return ["canary promote", command.deployment]


def _render_canary_abort(command: CanaryAbort) -> list[str]:
    return ["canary abort", command.deployment]


def _render_promote(command: Promote) -> list[str]:
    words = ["promote", command.pipeline]
    words += [f"--image={container}={image}" for container, image in command.images]
    if command.dry_run:
        words.append("--dry-run")
    if command.resume:
        words.append("--resume")
    return words


def _render_promotions(command: Promotions) -> list[str]:
    return ["promotions"]


def render_command(command: Command) -> str:
    """The canonical text of a command, as Slack would deliver it after ``/rollout``.

    Flags use ``--flag=value`` and ``-n NS``; defaults are left out; ``&``, ``<`` and ``>`` are
    escaped as Slack escapes them, so the text is also safe inside mrkdwn.
    """
    words = _SPEC_OF[type(command)].render(command)
    if not isinstance(command, Help) and command.namespace is not None:
        words += ["-n", command.namespace]
    reason = getattr(command, "reason", None)
    if isinstance(reason, str):
        words.append("--reason=" + shlex.quote(reason))
    break_glass = getattr(command, "break_glass", None)
    if isinstance(break_glass, str):
        words.append(f"{BREAK_GLASS_FLAG}=" + shlex.quote(break_glass))
    if not isinstance(command, Help) and command.context is not None:
        words += [CONTEXT_FLAG, command.context]
    text = " ".join(words)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- the verbs -----------------------------------------------------------------------------
#
# A verb is declared once, here: its grammar (usage, parser, renderer), its help, and its
# command type, which carries the policy action, whether it changes the cluster and whether
# it starts a rollout. Adding a verb is its command type and parser above, its spec below,
# its kubectl rule (bot.domain), its use case (bot.services) and its view (handlers.views).


@dataclass(frozen=True)
class VerbSpec:
    verb: str
    usage: str
    help: str
    command: type[CommandBase]
    #: Reads the verb's arguments (None for `help`, which the parser handles itself).
    parse: Callable[[_Args, int], Command] | None
    render: Callable[[Any], list[str]]


SPECS: Final[tuple[VerbSpec, ...]] = (
    VerbSpec(
        verb="help",
        usage="/rollout help [VERB]",
        help="Show every command, or the usage of one.",
        command=Help,
        parse=None,
        render=_render_help,
    ),
    VerbSpec(
        verb="list",
        usage="/rollout list [-n NS]",
        help=(
            "List the Deployments, StatefulSets and DaemonSets in a namespace with their "
            "images and readiness."
        ),
        command=ListDeployments,
        parse=_parse_list,
        render=_render_list,
    ),
    VerbSpec(
        verb="status",
        usage="/rollout status DEPLOY [-n NS]",
        help="Show a Deployment's rollout status, as `kubectl rollout status` reports it.",
        command=Status,
        parse=_parse_status,
        render=_render_status,
    ),
    VerbSpec(
        verb="create",
        usage="/rollout create DEPLOY --image=IMAGE [--replicas=N] [-n NS]",
        help="Create a Deployment that runs one image.",
        command=Create,
        parse=_parse_create,
        render=_render_create,
    ),
    VerbSpec(
        verb="set image",
        usage=(
            "/rollout set image DEPLOY CONTAINER=IMAGE [CONTAINER=IMAGE ...] [-n NS] "
            "[--reason=TEXT]"
        ),
        help="Change container images and start a rollout; `*=IMAGE` sets every container.",
        command=SetImage,
        parse=_parse_set_image,
        render=_render_set_image,
    ),
    VerbSpec(
        verb="scale",
        usage="/rollout scale DEPLOY --replicas=N [-n NS] [--reason=TEXT]",
        help="Change the number of replicas.",
        command=Scale,
        parse=_parse_scale,
        render=_render_scale,
    ),
    VerbSpec(
        verb="history",
        usage="/rollout history DEPLOY [--revision=N] [-n NS]",
        help="List a Deployment's revisions, or show the pod template of one revision.",
        command=History,
        parse=_parse_history,
        render=_render_history,
    ),
    VerbSpec(
        verb="diff",
        usage="/rollout diff DEPLOY REV [REV2] [-n NS]",
        help="Compare the pod templates of two revisions, or of one revision and the current one.",
        command=Diff,
        parse=_parse_diff,
        render=_render_diff,
    ),
    VerbSpec(
        verb="undo",
        usage="/rollout undo DEPLOY [--to-revision=N] [-n NS] [--reason=TEXT]",
        help="Roll back to the previous revision, or to `--to-revision=N`.",
        command=Undo,
        parse=_parse_undo,
        render=_render_undo,
    ),
    VerbSpec(
        verb="pause",
        usage="/rollout pause DEPLOY [-n NS]",
        help="Pause a rollout: template changes wait until `resume`.",
        command=Pause,
        parse=_parse_pause,
        render=_render_pause,
    ),
    VerbSpec(
        verb="resume",
        usage="/rollout resume DEPLOY [-n NS]",
        help="Resume a paused rollout.",
        command=Resume,
        parse=_parse_resume,
        render=_render_resume,
    ),
    VerbSpec(
        verb="restart",
        usage="/rollout restart DEPLOY [-n NS] [--reason=TEXT]",
        help="Replace every pod of a Deployment with a rolling update.",
        command=Restart,
        parse=_parse_restart,
        render=_render_restart,
    ),
    VerbSpec(
        verb="approvals",
        usage="/rollout approvals [-n NS]",
        help="List the approval requests that are waiting for a decision.",
        command=Approvals,
        parse=_parse_approvals,
        render=_render_approvals,
    ),
    VerbSpec(
        verb="audit",
        usage="/rollout audit [DEPLOY] [-n NS] [--limit=N]",
        help="Show who did what, newest first.",
        command=Audit,
        parse=_parse_audit,
        render=_render_audit,
    ),
    VerbSpec(
        verb="freeze",
        usage="/rollout freeze -n NS --for=DURATION --reason=TEXT",
        help="Stop changes in a namespace for `90s`, `1m`, `2h`, `1d`…; it ends on its own.",
        command=Freeze,
        parse=_parse_freeze,
        render=_render_freeze,
    ),
    VerbSpec(
        verb="unfreeze",
        usage="/rollout unfreeze -n NS",
        help="Lift the freeze set from Slack on a namespace.",
        command=Unfreeze,
        parse=_parse_unfreeze,
        render=_render_unfreeze,
    ),
    VerbSpec(
        verb="freezes",
        usage="/rollout freezes [-n NS]",
        help="List the freezes in force and the next ones to come, with who set them.",
        command=Freezes,
        parse=_parse_freezes,
        render=_render_freezes,
    ),
    VerbSpec(
        verb="canary",
        usage=(
            "/rollout canary deploy/NAME --image CONTAINER=IMAGE [--replicas N | --weight P%] "
            "[--analysis 10m] [--auto-promote] [-n NS]"
        ),
        help="Run new images in a few pods beside a Deployment first; then Promote or Abort.",
        command=Canary,
        parse=_parse_canary,
        render=_render_canary,
    ),
    VerbSpec(
        verb="canary status",
        usage="/rollout canary status DEPLOY [-n NS]",
        help="Show a Deployment's canary: its pods, the Services routing to it, its state.",
        command=CanaryStatus,
        parse=_parse_canary_status,
        render=_render_canary_status,
    ),
    VerbSpec(
        verb="canary promote",
        usage="/rollout canary promote DEPLOY [-n NS]",
        help="Set the Deployment's images to its canary's, then remove the canary.",
        command=CanaryPromote,
        parse=_parse_canary_promote,
        render=_render_canary_promote,
    ),
    VerbSpec(
        verb="canary abort",
        usage="/rollout canary abort DEPLOY [-n NS]",
        help="Remove a Deployment's canary; the Deployment stays as it is.",
        command=CanaryAbort,
        parse=_parse_canary_abort,
        render=_render_canary_abort,
    ),
    VerbSpec(
        verb="promote",
        usage="/rollout promote NAME [--image app=repo:tag] [--dry-run] [--resume]",
        help="Roll a pipeline's source images out to its targets, wave by wave, with gates.",
        command=Promote,
        parse=_parse_promote,
        render=_render_promote,
    ),
    VerbSpec(
        verb="promotions",
        usage="/rollout promotions",
        help="List the promotions running and the last ones finished.",
        command=Promotions,
        parse=_parse_promotions,
        render=_render_promotions,
    ),
)

_SPEC_OF: Final[dict[type[CommandBase], VerbSpec]] = {spec.command: spec for spec in SPECS}
_COMMAND_TYPES: Final[dict[str, type[CommandBase]]] = {spec.verb: spec.command for spec in SPECS}
_PARSERS: Final[dict[str, Callable[[_Args, int], Command]]] = {
    spec.verb: spec.parse for spec in SPECS if spec.parse is not None
}
VERBS: Final[tuple[str, ...]] = tuple(spec.verb for spec in SPECS)
USAGE: Final[dict[str, str]] = {spec.verb: spec.usage for spec in SPECS}
GRAMMAR: Final = "\n".join(spec.usage for spec in SPECS)
HELP_TEXT: Final[dict[str, str]] = {spec.verb: spec.help for spec in SPECS}
# `/rollout help VERB` shows these under the usage; each one parses (tests check it).
EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "help": ("/rollout help set image",),
    "list": ("/rollout list -n staging",),
    "status": ("/rollout status web -n prod", "/rollout status sts/db -n prod"),
    "create": ("/rollout create web --image=nginx:1.27-alpine --replicas=2 -n staging",),
    "set image": (
        '/rollout set image web nginx=nginx:1.27-alpine -n prod --reason="CVE-2026-1234"',
        "/rollout set image web *=registry.example.com/web:2.4.1 -n staging",
    ),
    "scale": ('/rollout scale web --replicas=5 -n prod --reason="launch traffic"',),
    "history": ("/rollout history web -n prod", "/rollout history web --revision=3 -n prod"),
    "diff": ("/rollout diff web 2 -n prod", "/rollout diff web 2 3 -n prod"),
    "undo": ("/rollout undo web -n prod", "/rollout undo web --to-revision=2 -n prod"),
    "pause": ("/rollout pause web -n prod",),
    "resume": ("/rollout resume web -n prod",),
    "restart": ('/rollout restart web -n prod --reason="pick up the new ConfigMap"',),
    "approvals": ("/rollout approvals", "/rollout approvals -n prod"),
    "audit": ("/rollout audit web -n prod --limit=20", "/rollout audit -n prod"),
    "freeze": ('/rollout freeze -n prod --for=2h --reason="release night"',),
    "unfreeze": ("/rollout unfreeze -n prod",),
    "freezes": ("/rollout freezes", "/rollout freezes -n prod"),
    "canary": (
        "/rollout canary deploy/web --image nginx=nginx:1.27 --weight 10% --analysis 10m -n prod",
    ),
    "canary status": ("/rollout canary status web -n prod",),
    "canary promote": ("/rollout canary promote web -n prod",),
    "canary abort": ("/rollout canary abort web -n prod",),
    "promote": (
        "/rollout promote web --dry-run",
        "/rollout promote web --image web=registry.example.com/web:2.4.1",
        "/rollout promote web --resume",
    ),
    "promotions": ("/rollout promotions",),
}
# What a newcomer needs beside the usage, for the verbs that need more than one line.
HELP_NOTES: Final[dict[str, str]] = {
    "set image": (
        "`CONTAINER` is the container's name in the pod template, not the image: "
        "`/rollout status DEPLOY` lists the images as `NAME=IMAGE`, and "
        "`kubectl get deploy DEPLOY -o jsonpath='{.spec.template.spec.containers[*].name}'` "
        "prints the names. `*=IMAGE` sets every container."
    ),
    "undo": "`/rollout history DEPLOY` lists the revisions; `diff` shows what an undo restores.",
    "create": "Makes a Deployment only; create StatefulSets and DaemonSets with kubectl.",
    "canary": (
        "Runs `DEPLOY-canary` beside the Deployment with the new images behind the same "
        "Services; Promote sets them on the Deployment, Abort deletes the canary."
    ),
}
# The action names a policy can grant, in grammar order. `help` is always allowed.
ACTIONS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(spec.command.action for spec in SPECS if spec.verb != "help")
)


# --- structured records --------------------------------------------------------------------
#
# An approval request keeps the command it will run as data (verb and fields), never as text
# to parse again: what runs is exactly what was shown, with no second trip through the grammar.


def command_record(command: Command) -> dict[str, Any]:
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
    """The command a record holds. Raises ValueError for anything this version cannot run."""
    from pydantic import TypeAdapter, ValidationError

    verb = record.get("verb")
    fields = record.get("fields")
    if not isinstance(verb, str) or verb not in _COMMAND_TYPES or not isinstance(fields, dict):
        raise ValueError("not a command record")
    try:
        command: Command = TypeAdapter(_COMMAND_TYPES[verb]).validate_python(fields)  # type: ignore[assignment]
    except ValidationError as exc:
        raise ValueError("not a command record") from exc
    return command
