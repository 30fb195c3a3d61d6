"""kubectl set image's rule: which containers a CONTAINER=IMAGE list changes, and the patch.

Two verbs start from it: ``set image`` and ``canary`` (whose canary Deployment gets the images
the change would give the source), so it lives beside the other kubectl rules, not in a verb.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from bot.domain.readers import Json, as_map, as_str, go_quote, maps, template_of
from bot.domain.refusals import RolloutRefused


class ImageChange(NamedTuple):
    container: str
    old: str
    new: str


@dataclass(frozen=True)
class SetImagePlan:
    """``patch`` is a strategic-merge body, or None when no image changes (send nothing, and
    kubectl prints nothing). ``errors`` are kubectl's errors for the containers it could not
    find (``error: unable to find container named "x"``): kubectl still changes the ones it
    found, and then exits 1 with these.

    kubectl's computed patch also carries ``$setElementOrder/...`` lists; they only pin the
    existing order, which a merge by container name keeps anyway, so they are left out.
    """

    changes: tuple[ImageChange, ...]
    patch: dict[str, Any] | None
    errors: tuple[str, ...] = ()


def set_image_pairs(images: Sequence[tuple[str, str]]) -> dict[str, str]:
    """kubectl set image's CONTAINER=IMAGE pairs as it reads them: into a map, so a container
    named twice keeps its last image; ``*`` beside any other container is refused."""
    if not images:
        raise RolloutRefused("no_images", "at least one image update is required")
    wanted = dict(images)
    if len(wanted) > 1 and "*" in wanted:
        raise RolloutRefused(
            "wildcard_with_pairs",
            "all containers are already specified by *, but saw more than one "
            "container_name=container_image pairs",
        )
    return wanted


def plan_set_image(deployment: Json, images: Sequence[tuple[str, str]]) -> SetImagePlan:
    """kubectl set image: each (container, image) pair updates matching containers and init
    containers; ``*`` matches all. A container it cannot find is an error beside the changes
    (``errors``), as in kubectl. Raises RolloutRefused for pairs kubectl refuses outright."""
    wanted = set_image_pairs(images)
    pod_spec = as_map(template_of(deployment).get("spec"))
    lists = {key: maps(pod_spec.get(key)) for key in ("containers", "initContainers")}
    names = [as_str(c.get("name")) for key in lists for c in lists[key]]
    errors = []
    for container, image in wanted.items():
        if not container or not image:
            raise RolloutRefused("invalid_image", f"invalid image update: {container}={image}")
        if not names or (container != "*" and container not in names):
            errors.append(f"error: unable to find container named {go_quote(container)}")
    if "*" in wanted:
        wanted = dict.fromkeys(names, wanted["*"])

    changes: list[ImageChange] = []
    pod_patch: dict[str, Any] = {}
    for key, containers in lists.items():
        patched = []
        for c in containers:
            name, old = as_str(c.get("name")), as_str(c.get("image"))
            new = wanted.get(name, old)
            if new != old:
                changes.append(ImageChange(name, old, new))
                patched.append({"name": name, "image": new})
        if patched:
            pod_patch[key] = patched
    patch = {"spec": {"template": {"spec": pod_patch}}} if pod_patch else None
    return SetImagePlan(changes=tuple(changes), patch=patch, errors=tuple(errors))
