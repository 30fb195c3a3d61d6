"""Who else changes a workload: a GitOps tool that will put it back, an autoscaler that will
override its replica count. Pure, over API dicts.

- ``gitops_owner``     Argo CD (label ``app.kubernetes.io/instance`` with the annotation
                       ``argocd.argoproj.io/tracking-id``, or the label
                       ``argocd.argoproj.io/instance``) or Flux (labels
                       ``kustomize.toolkit.fluxcd.io/name`` + ``…/namespace``, or
                       ``helm.toolkit.fluxcd.io/name`` [+ ``…/namespace``])
- ``autoscaler_for``   the HorizontalPodAutoscaler whose scaleTargetRef is the workload
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from bot.domain.mrkdwn import code

__all__ = [
    "Autoscaler",
    "GitOpsOwner",
    "autoscaler_for",
    "autoscaler_notice",
    "gitops_notice",
    "gitops_owner",
]

Json = Mapping[str, Any]

ARGO_TRACKING_ID: Final = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE_LABEL: Final = "argocd.argoproj.io/instance"
APP_INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
FLUX_KUSTOMIZE_NAME: Final = "kustomize.toolkit.fluxcd.io/name"
FLUX_KUSTOMIZE_NAMESPACE: Final = "kustomize.toolkit.fluxcd.io/namespace"
FLUX_HELM_NAME: Final = "helm.toolkit.fluxcd.io/name"
FLUX_HELM_NAMESPACE: Final = "helm.toolkit.fluxcd.io/namespace"

_KINDS: Final = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}


@dataclass(frozen=True)
class GitOpsOwner:
    tool: str  # "Argo CD" | "Flux"
    kind: str  # "Application" | "Kustomization" | "HelmRelease"
    name: str  # the application, as the tool names it (Flux: namespace/name when known)

    def describe(self) -> str:
        """In mrkdwn: the name comes from an annotation anyone who can edit the object sets."""
        return f"{self.tool} ({self.kind} `{code(self.name)}`)"


@dataclass(frozen=True)
class Autoscaler:
    name: str
    min_replicas: int
    max_replicas: int


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def gitops_owner(obj: Json) -> GitOpsOwner | None:
    """The GitOps tool and application that manage ``obj``, or None."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    labels = _str_map(metadata.get("labels"))
    annotations = _str_map(metadata.get("annotations"))
    tracking = annotations.get(ARGO_TRACKING_ID, "")
    if tracking and labels.get(APP_INSTANCE_LABEL):
        return GitOpsOwner("Argo CD", "Application", labels[APP_INSTANCE_LABEL])
    if labels.get(ARGO_INSTANCE_LABEL):
        return GitOpsOwner("Argo CD", "Application", labels[ARGO_INSTANCE_LABEL])
    if tracking:
        # `app:group/kind:namespace/name`: the application is what precedes the first colon.
        return GitOpsOwner("Argo CD", "Application", tracking.split(":", 1)[0])
    name, namespace = labels.get(FLUX_KUSTOMIZE_NAME), labels.get(FLUX_KUSTOMIZE_NAMESPACE)
    if name and namespace:
        return GitOpsOwner("Flux", "Kustomization", f"{namespace}/{name}")
    name, namespace = labels.get(FLUX_HELM_NAME), labels.get(FLUX_HELM_NAMESPACE)
    if name:
        return GitOpsOwner("Flux", "HelmRelease", f"{namespace}/{name}" if namespace else name)
    return None


def gitops_notice(owner: GitOpsOwner) -> str:
    return (
        f":warning: Managed by {owner.describe()}: it may revert this change at its next "
        "sync unless Git is changed too."
    )


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def autoscaler_for(kind: str, name: str, autoscalers: Iterable[Json]) -> Autoscaler | None:
    """The HPA whose scaleTargetRef names this workload (kind and name; apps group), or None."""
    wanted = _KINDS.get(kind)
    for hpa in autoscalers:
        spec = hpa.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        ref = spec.get("scaleTargetRef")
        ref = ref if isinstance(ref, Mapping) else {}
        api_version = str(ref.get("apiVersion") or "apps/v1")
        if (
            ref.get("kind") == wanted
            and ref.get("name") == name
            and api_version.split("/")[0] in ("apps", "extensions")
        ):
            metadata = hpa.get("metadata")
            hpa_name = metadata.get("name", "") if isinstance(metadata, Mapping) else ""
            return Autoscaler(
                name=str(hpa_name),
                # minReplicas defaults to 1 (autoscaling/v2).
                min_replicas=_int(spec.get("minReplicas"), 1),
                max_replicas=_int(spec.get("maxReplicas"), 0),
            )
    return None


def autoscaler_notice(hpa: Autoscaler) -> str:
    return (
        f":warning: HorizontalPodAutoscaler `{code(hpa.name)}` (min {hpa.min_replicas}, max "
        f"{hpa.max_replicas}) scales this workload and will override this replica count."
    )
