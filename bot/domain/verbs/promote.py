"""``/rollout promote NAME`` and ``/rollout promotions``: roll a pipeline of the policy out,
wave by wave (``bot.domain.promotion``), and list the promotions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Final

from bot.domain.verbs import values
from bot.domain.verbs.grammar import IMAGE, Action, Args, CommandBase, Flag, VerbSpec
from bot.domain.verbs.text import show

DRY_RUN: Final = Flag("dry-run", ("--dry-run",), "--dry-run", switch=True)
RESUME: Final = Flag("resume", ("--resume",), "--resume", switch=True)
_PIPELINE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Promote(CommandBase):
    """Promote a pipeline of the policy (``bot.domain.promotion``). The changes it makes are
    each target's own ``set image``, checked and made then; the command itself changes nothing."""

    action: ClassVar[Action] = "promote"
    pipeline: str
    #: (container, image) pairs to promote instead of the source's images.
    images: tuple[tuple[str, str], ...] = ()
    dry_run: bool = False
    resume: bool = False
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotions(CommandBase):
    action: ClassVar[Action] = "promotions"
    namespace: str | None = None
    context: str | None = None


def _parse_promote(args: Args, max_replicas: int) -> Promote:
    args.no_more_than(1)
    name = args.positional(0, "the name of a pipeline from the policy, as in `promote web`")
    if not _PIPELINE.fullmatch(name):
        args.fail(
            f"`{show(name)}` is not a pipeline name: pipelines are named with lowercase "
            "letters, digits and `-` in the policy's `pipelines`."
        )
    images = tuple(
        values.set_image_pair(args, pair) for pair in (args.flag("image") or "").split(",") if pair
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


def _parse_promotions(args: Args, max_replicas: int) -> Promotions:
    args.no_more_than(0)
    return Promotions()


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


PROMOTE = VerbSpec(
    verb="promote",
    usage="/rollout promote NAME [--image app=repo:tag] [--dry-run] [--resume]",
    help="Roll a pipeline's source images out to its targets, wave by wave, with gates.",
    command=Promote,
    parse=_parse_promote,
    render=_render_promote,
    flags=(IMAGE, DRY_RUN, RESUME),
    repeatable=frozenset({"image"}),
    examples=(
        "/rollout promote web --dry-run",
        "/rollout promote web --image web=registry.example.com/web:2.4.1",
        "/rollout promote web --resume",
    ),
)
PROMOTIONS = VerbSpec(
    verb="promotions",
    usage="/rollout promotions",
    help="List the promotions running and the last ones finished.",
    command=Promotions,
    parse=_parse_promotions,
    render=_render_promotions,
    examples=("/rollout promotions",),
)
