"""``/rollout canary deploy/NAME --image ...`` and ``canary status | promote | abort DEPLOY``.

A canary of a Deployment runs ``NAME-canary`` beside it with the new images behind the same
Services (the rules are ``bot.domain.canary``). It needs what ``set image`` on the Deployment
needs: the same permission, approvals and GitOps rules; aborting waits for no one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from bot.domain import canary as canary_rules
from bot.domain import kinds
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    IMAGE,
    NAMESPACE,
    REPLICAS,
    Action,
    Args,
    ChangeCommand,
    CommandBase,
    Flag,
    VerbSpec,
)
from bot.domain.verbs.text import show

WEIGHT: Final = Flag("weight", ("--weight",), "--weight 10%")
ANALYSIS: Final = Flag("analysis", ("--analysis",), "--analysis 10m")
AUTO_PROMOTE: Final = Flag("auto-promote", ("--auto-promote",), "--auto-promote", switch=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Canary(ChangeCommand):
    """A canary of a Deployment: `web-canary` with the new images beside `web`. It needs what
    `set image` on `web` needs (the same permission, approvals and GitOps rules)."""

    action: ClassVar[Action] = "set-image"
    images: tuple[tuple[str, str], ...]
    #: At most one of `replicas` and `weight` (a percentage); neither means one replica.
    replicas: int | None = None
    weight: int | None = None
    analysis_seconds: int = canary_rules.DEFAULT_ANALYSIS_SECONDS
    auto_promote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryStatus(CommandBase):
    action: ClassVar[Action] = "status"
    name: str
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryPromote(ChangeCommand):
    """`set image` on the Deployment with its canary's images: the same permission and
    approvals (four-eyes where the policy asks for it)."""

    action: ClassVar[Action] = "set-image"


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryAbort(ChangeCommand):
    """Removes what the canary added; its `break_glass` is accepted like every change's, but
    an abort waits for no freeze anyway."""

    action: ClassVar[Action] = "set-image"
    needs_approval: ClassVar[bool] = False


def _canary_target(args: Args, token: str) -> str:
    kind, name = values.target(args, token)
    if kind != "deployment":
        display = kinds.info(kind).display
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
        args.fail(f"`{show(name)}` is too long a name to add `{canary_rules.SUFFIX}` to.")
    return name


def _parse_canary(args: Args, max_replicas: int) -> Canary:
    name = _canary_target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    value = args.flag("image")
    if value is None:
        args.fail("`canary` needs `--image CONTAINER=IMAGE`, as in `--image app=nginx:1.27`.")
    pairs = [values.set_image_pair(args, token) for token in value.split(",")]
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
        replicas = values.number(replicas_text, 1, max(1, max_replicas))
        if replicas is None:
            args.fail(
                f"`--replicas` must be a whole number from 1 to {max(1, max_replicas)}, "
                f"got `{show(replicas_text)}`."
            )
    weight = None
    if weight_text is not None:
        weight = values.number(weight_text.removesuffix("%"), 1, 99)
        if weight is None:
            args.fail(
                f"`--weight` is a share of the pods from 1% to 99%, got `{show(weight_text)}`."
            )
    analysis = canary_rules.DEFAULT_ANALYSIS_SECONDS
    analysis_text = args.flag("analysis")
    if analysis_text is not None:
        seconds = canary_rules.parse_duration(analysis_text)
        low, high = canary_rules.MIN_ANALYSIS_SECONDS, canary_rules.MAX_ANALYSIS_SECONDS
        if seconds is None or not low <= seconds <= high:
            args.fail(
                f"`--analysis` is how long the canary must stay healthy, from {low}s to "
                f"{high // 3600}h (`90s`, `10m`, `1h`), got `{show(analysis_text)}`."
            )
        analysis = seconds
    return Canary(
        name=name,
        images=tuple(pairs),
        replicas=replicas,
        weight=weight,
        analysis_seconds=analysis,
        auto_promote=args.flag("auto-promote") is not None,
        namespace=args.namespace(),
    )


def _parse_status(args: Args, max_replicas: int) -> CanaryStatus:
    name = _canary_target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    return CanaryStatus(name=name, namespace=args.namespace())


def _parse_promote(args: Args, max_replicas: int) -> CanaryPromote:
    name = _canary_target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    return CanaryPromote(name=name, namespace=args.namespace())


def _parse_abort(args: Args, max_replicas: int) -> CanaryAbort:
    name = _canary_target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    return CanaryAbort(name=name, namespace=args.namespace())


def _render_canary(command: Canary) -> list[str]:
    words = ["canary", f"deploy/{command.name}"]
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


def _render_status(command: CanaryStatus) -> list[str]:
    return ["canary status", command.name]


def _render_promote(command: CanaryPromote) -> list[str]:
    return ["canary promote", command.name]


def _render_abort(command: CanaryAbort) -> list[str]:
    return ["canary abort", command.name]


CANARY = VerbSpec(
    verb="canary",
    usage=(
        "/rollout canary deploy/NAME --image CONTAINER=IMAGE [--replicas N | --weight P%] "
        "[--analysis 10m] [--auto-promote] [-n NS]"
    ),
    help="Run new images in a few pods beside a Deployment first; then Promote or Abort.",
    command=Canary,
    parse=_parse_canary,
    render=_render_canary,
    flags=(IMAGE, REPLICAS, WEIGHT, ANALYSIS, AUTO_PROMOTE, NAMESPACE),
    repeatable=frozenset({"image"}),
    examples=(
        "/rollout canary deploy/web --image nginx=nginx:1.27 --weight 10% --analysis 10m -n prod",
    ),
    note=(
        "Runs `DEPLOY-canary` beside the Deployment with the new images behind the same "
        "Services; Promote sets them on the Deployment, Abort deletes the canary."
    ),
)
STATUS = VerbSpec(
    verb="canary status",
    usage="/rollout canary status DEPLOY [-n NS]",
    help="Show a Deployment's canary: its pods, the Services routing to it, its state.",
    command=CanaryStatus,
    parse=_parse_status,
    render=_render_status,
    flags=(NAMESPACE,),
    examples=("/rollout canary status web -n prod",),
)
PROMOTE = VerbSpec(
    verb="canary promote",
    usage="/rollout canary promote DEPLOY [-n NS]",
    help="Set the Deployment's images to its canary's, then remove the canary.",
    command=CanaryPromote,
    parse=_parse_promote,
    render=_render_promote,
    flags=(NAMESPACE,),
    examples=("/rollout canary promote web -n prod",),
)
ABORT = VerbSpec(
    verb="canary abort",
    usage="/rollout canary abort DEPLOY [-n NS]",
    help="Remove a Deployment's canary; the Deployment stays as it is.",
    command=CanaryAbort,
    parse=_parse_abort,
    render=_render_abort,
    flags=(NAMESPACE,),
    examples=("/rollout canary abort web -n prod",),
)
