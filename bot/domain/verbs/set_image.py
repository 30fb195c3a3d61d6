"""``/rollout set image DEPLOY CONTAINER=IMAGE ...``: change container images, start a rollout.

kubectl's rule is ``bot.domain.images.plan_set_image``, the same for all three kinds (and for
the canary, which starts from the same change): each pair updates the matching containers and
init containers; ``*`` matches them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from bot.domain import kinds
from bot.domain.images import ImageChange, SetImagePlan, plan_set_image, set_image_pairs
from bot.domain.kinds import Kind
from bot.domain.mrkdwn import code
from bot.domain.readers import Json
from bot.domain.refusals import RolloutRefused
from bot.domain.templates import template_diff
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    NAMESPACE,
    REASON,
    Action,
    Args,
    PatchPlan,
    PatchRule,
    VerbSpec,
    WorkloadChange,
    no_refusal,
)
from bot.domain.verbs.previews import code_block, with_images


@dataclass(frozen=True, slots=True, kw_only=True)
class SetImage(WorkloadChange):
    action: ClassVar[Action] = "set-image"
    # (container, image) in the order given; container "*" means every container.
    images: tuple[tuple[str, str], ...]
    reason: str | None = None


def _parse(args: Args, max_replicas: int) -> SetImage:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    args.positional(1, "at least one `CONTAINER=IMAGE`")
    pairs = [values.set_image_pair(args, token) for token in args.positionals[1:]]
    # kubectl reads the pairs into a map: a container named twice keeps its last image, and
    # `*` beside another container is its error, word for word.
    named = {container for container, _ in pairs}
    if "*" in named and len(named) > 1:
        args.fail(
            "all containers are already specified by *, but saw more than one "
            "container_name=container_image pairs"
        )
    return SetImage(
        name=name,
        kind=kind,
        images=tuple(pairs),
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _render(command: SetImage) -> list[str]:
    pairs = (f"{container}={image}" for container, image in command.images)
    return ["set image", kinds.info(command.kind).word(command.name), *pairs]


def _plan(command: SetImage, kind: Kind, obj: Json, now: datetime) -> PatchPlan:
    plan = checked_set_image_plan(obj, command.images)
    if plan.patch is None:
        # kubectl prints nothing at all for an image that is already set.
        return PatchPlan(None, "", details=("image already set: no change, no new revision",))
    return PatchPlan(
        plan.patch,
        "image updated",
        details=tuple(f"{c.container}: {c.old} → {c.new}" for c in plan.changes),
        warnings=plan.errors,
        cause="set image " + " ".join(f"{c}={i}" for c, i in command.images),
    )


def _preview(command: SetImage, obj: Json) -> str:
    current = obj.get("spec", {}).get("template", {})
    plan = checked_set_image_plan(obj, command.images)
    if plan.patch is None:
        return "no image changes: the images are already set"
    lines = [f"• `{code(c.container)}`: `{code(c.old)}` → `{code(c.new)}`" for c in plan.changes]
    # kubectl's errors for the containers it cannot find; it changes the others.
    lines += [f"`{code(error)}`" for error in plan.errors]
    new_spec = with_images(current, {c.container: c.new for c in plan.changes})
    diff = template_diff(current, new_spec, "current", "requested")
    return "\n".join(lines) + "\n" + code_block(diff)


SPEC = VerbSpec(
    verb="set image",
    usage=(
        "/rollout set image DEPLOY CONTAINER=IMAGE [CONTAINER=IMAGE ...] [-n NS] [--reason=TEXT]"
    ),
    help="Change container images and start a rollout; `*=IMAGE` sets every container.",
    command=SetImage,
    parse=_parse,
    render=_render,
    flags=(NAMESPACE, REASON),
    examples=(
        '/rollout set image web nginx=nginx:1.27-alpine -n prod --reason="CVE-2026-1234"',
        "/rollout set image web *=registry.example.com/web:2.4.1 -n staging",
    ),
    note=(
        "`CONTAINER` is the container's name in the pod template, not the image: "
        "`/rollout status DEPLOY` lists the images as `NAME=IMAGE`, and "
        "`kubectl get deploy DEPLOY -o jsonpath='{.spec.template.spec.containers[*].name}'` "
        "prints the names. `*=IMAGE` sets every container."
    ),
    hints=("image", "set-image", "deploy"),
    patch=PatchRule(plan=_plan, check=no_refusal, preview=_preview, field_manager="kubectl-set"),
)

__all__ = [
    "SPEC",
    "ImageChange",
    "SetImage",
    "SetImagePlan",
    "checked_set_image_plan",
    "plan_set_image",
    "set_image_pairs",
]


def checked_set_image_plan(obj: Json, images: Sequence[tuple[str, str]]) -> SetImagePlan:
    """kubectl set image's plan, refused where kubectl changes nothing and fails: pairs it
    rejects, or only containers it cannot find (its errors, then the containers there are
    on a line of their own)."""
    plan = plan_set_image(obj, images)
    if plan.patch is None and plan.errors:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        names = [
            c.get("name", "")
            for key in ("containers", "initContainers")
            for c in spec.get(key) or []
        ]
        message = "\n".join([*plan.errors, "containers: " + ", ".join(names)])
        raise RolloutRefused("container_not_found", message)
    return plan
