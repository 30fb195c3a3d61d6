"""``/rollout create DEPLOY --image=IMAGE``: a Deployment that runs one image.

kubectl's rule is ``deployment_manifest``: what ``kubectl create deployment`` would create.
Deployments only; StatefulSets and DaemonSets are created with kubectl.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from bot.domain import kinds
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    IMAGE,
    NAMESPACE,
    REPLICAS,
    Action,
    Args,
    ChangeCommand,
    VerbSpec,
)

# A DNS-1123 label is at most 63 characters (RFC 1123).
_DNS_LABEL_MAX = 63


@dataclass(frozen=True, slots=True, kw_only=True)
class Create(ChangeCommand):
    action: ClassVar[Action] = "create"
    image: str
    # kubectl create deployment's default.
    replicas: int = 1


def _parse(args: Args, max_replicas: int) -> Create:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    if kind != "deployment":
        args.fail(
            f"`create` makes Deployments only; create {kinds.info(kind).display}s with "
            "kubectl, then use the other verbs on them."
        )
    args.no_more_than(1)
    image = args.flag("image")
    if image is None:
        args.fail("`create` needs `--image=IMAGE`.")
    replicas = args.flag("replicas")
    return Create(
        name=name,
        image=values.image(args, image),
        replicas=1 if replicas is None else values.replicas(args, replicas, max_replicas),
        namespace=args.namespace(),
    )


def _render(command: Create) -> list[str]:
    words = ["create", command.name, f"--image={command.image}"]
    if command.replicas != 1:
        words.append(f"--replicas={command.replicas}")
    return words


SPEC = VerbSpec(
    verb="create",
    usage="/rollout create DEPLOY --image=IMAGE [--replicas=N] [-n NS]",
    help="Create a Deployment that runs one image.",
    command=Create,
    parse=_parse,
    render=_render,
    flags=(IMAGE, REPLICAS, NAMESPACE),
    examples=("/rollout create web --image=nginx:1.27-alpine --replicas=2 -n staging",),
    note="Makes a Deployment only; create StatefulSets and DaemonSets with kubectl.",
)


def container_name_for_image(image: str) -> str:
    """kubectl create deployment's container name: the image's last path segment without tag or
    digest, made a valid DNS-1123 label.

    kubectl only rewrites ``_`` and ``.`` and then appends a random suffix; this lowercases and
    rewrites every invalid character instead, and stays deterministic (there is one container).
    """
    name = image.split("/")[-1].split(":")[0].split("@")[0]
    name = re.sub(r"[^a-z0-9-]", "-", name.lower())
    name = name.strip("-")[:_DNS_LABEL_MAX].rstrip("-")
    return name or "app"


def deployment_manifest(
    name: str, image: str, replicas: int = 1, namespace: str | None = None
) -> dict[str, Any]:
    """What ``kubectl create deployment NAME --image=IMAGE --replicas=N`` would create."""
    if replicas < 0:
        raise ValueError("replicas must be zero or more")
    metadata: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if namespace:
        metadata["namespace"] = namespace
    container = {"name": container_name_for_image(image), "image": image, "resources": {}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }
