"""The canary of a plain Deployment, as Kubernetes' own documentation describes the pattern:
a second Deployment (`web-canary`) running the new image(s), whose pods carry the same labels
as `web`'s plus `rollout-bot/track: canary`, so every Service that selects `web`'s pods also
sends a share of the traffic to the canary's.

Pure rules, no I/O:

    canary_manifest(web, images, replicas, ...)   the canary Deployment to create
    replicas_for_weight(weight, web_replicas)     `--weight 10%` as a replica count
    judge(canary, pods, now, ...)                 healthy, waiting or failed (and why)
    parse_duration("10m")                         seconds, for `--analysis`

Why the canary never disturbs `web`:

* Its selector is `web`'s plus `rollout-bot/track: canary`. `web`'s pods do not carry that
  label, so the canary's controller can never adopt them.
* Its pods do match `web`'s selector (that is what puts them behind `web`'s Services), but
  the Deployment and ReplicaSet controllers only adopt *orphans*: the canary's ReplicaSet has
  `web-canary` as its controller owner, and its pods have that ReplicaSet as theirs, so `web`'s
  controller never counts, adopts or scales them, and `web`'s ReplicaSets, revisions and
  `kubectl rollout history` stay as they were. `web`'s own ReplicaSets select by
  `pod-template-hash` too, which differs for the canary's template (it has one more label).
* `web`'s metadata labels and annotations are not copied: a GitOps tool's tracking label would
  make it treat the canary as its own and prune it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bot.domain.annotations import CHANGE_CAUSE_ANNOTATION
from bot.domain.images import ImageChange, plan_set_image
from bot.domain.pods import pod_summary

Json = dict[str, Any]

SUFFIX: Final = "-canary"
TRACK_LABEL: Final = "rollout-bot/track"
TRACK_CANARY: Final = "canary"
#: The Deployment a canary belongs to, and that Deployment's uid when the canary started.
OWNER_ANNOTATION: Final = "rollout-bot/canary-of"
OWNER_UID_ANNOTATION: Final = "rollout-bot/canary-of-uid"
#: `web`'s pod template fingerprint when the canary started: a different one later means
#: someone changed `web` under the canary.
BASE_ANNOTATION: Final = "rollout-bot/canary-base"
ANALYSIS_ANNOTATION: Final = "rollout-bot/canary-analysis-seconds"
AUTO_PROMOTE_ANNOTATION: Final = "rollout-bot/canary-auto-promote"
REQUESTER_ANNOTATION: Final = "rollout-bot/canary-requested-by"
REQUESTER_NAME_ANNOTATION: Final = "rollout-bot/canary-requested-by-name"
#: "promoting" once Promote has set `web`'s images: `web`'s new template is then expected.
PHASE_ANNOTATION: Final = "rollout-bot/canary-phase"
PROMOTING: Final = "promoting"

DEFAULT_ANALYSIS_SECONDS: Final = 300
MIN_ANALYSIS_SECONDS: Final = 10
MAX_ANALYSIS_SECONDS: Final = 24 * 3600
# A canary's ReplicaSets are thrown away with it; one old one is plenty.
REVISION_HISTORY_LIMIT: Final = 1
# Deployment names are DNS subdomains of at most 253 characters; the pods' names add more.
MAX_NAME_LENGTH: Final = 253 - len(SUFFIX)

STUCK_REASONS: Final = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "Error",
        "OOMKilled",
    }
)

_DURATION: Final = re.compile(r"(?:(\d{1,3})h)?(?:(\d{1,4})m)?(?:(\d{1,6})s)?")


class CanaryRefused(Exception):
    """kubectl-style refusal of a canary: `message` is one sentence for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def canary_name(name: str) -> str:
    return name + SUFFIX


def parse_duration(text: str) -> int | None:
    """`90s`, `10m`, `1h30m` (a bare number is minutes) as seconds; None if unreadable."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text) * 60 if len(text) <= 4 else None
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def describe_duration(seconds: int) -> str:
    """`10m`, `1h30m`, `45s`: the way `--analysis` is written."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


def replicas_for_weight(weight_percent: int, web_replicas: int) -> int:
    """Canary replicas so that they make about `weight_percent` of all the pods behind the
    Service (`web`'s pods stay as they are): c / (c + w) = p, so c = w·p / (100 - p),
    rounded, and at least one."""
    if not 1 <= weight_percent <= 99:
        raise ValueError("the weight is a percentage from 1 to 99")
    share = max(0, web_replicas) * weight_percent / (100 - weight_percent)
    return max(1, round(share))


def selector_of(deployment: Json) -> Json:
    return dict(deployment.get("spec", {}).get("selector") or {})


def check_target(web: Json) -> None:
    """Refusals before anything is created: a Deployment that is itself a canary, or whose
    selector already uses the track label (the canary's selector could then overlap it)."""
    meta = web.get("metadata", {})
    name = str(meta.get("name", ""))
    if OWNER_ANNOTATION in (meta.get("annotations") or {}):
        raise CanaryRefused(
            f"`{name}` is itself a canary (of `{meta['annotations'][OWNER_ANNOTATION]}`): "
            "start the canary from that Deployment instead."
        )
    if len(name) > MAX_NAME_LENGTH:
        raise CanaryRefused(
            f"`{name}` is too long a name to add `{SUFFIX}` to (Deployment names have at most "
            "253 characters)."
        )
    selector = selector_of(web)
    keys = set((selector.get("matchLabels") or {}).keys())
    keys |= {str(e.get("key")) for e in selector.get("matchExpressions") or []}
    if TRACK_LABEL in keys:
        raise CanaryRefused(
            f"`{name}`'s selector already uses the `{TRACK_LABEL}` label, so a canary's "
            "selector could not be kept apart from it."
        )
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise CanaryRefused(f"`{name}` has an empty selector; a canary cannot be placed beside it.")


def canary_manifest(
    web: Json,
    images: Sequence[tuple[str, str]],
    replicas: int,
    *,
    base: str,
    analysis_seconds: int,
    auto_promote: bool,
    requester_id: str,
    requester_name: str,
    change_cause: str,
) -> tuple[Json, tuple[ImageChange, ...]]:
    """The canary Deployment: `web`'s live pod template with the new images and the track
    label, a selector of its own, and annotations that name `web` and the canary's settings.
    Raises CanaryRefused, also for a container `web` does not have: unlike kubectl's set
    image, a canary with only some of the images asked for would test something else."""
    check_target(web)
    plan = plan_set_image(web, images)
    if plan.errors:
        raise CanaryRefused(
            "; ".join(error.removeprefix("error: ") for error in plan.errors)
            + ": nothing was created. `/rollout status` lists the containers as NAME=IMAGE."
        )
    if plan.patch is None:
        raise CanaryRefused(
            "the canary would run the images the Deployment already runs: name a new image."
        )
    meta = web.get("metadata", {})
    spec = web.get("spec", {})
    name = str(meta.get("name", ""))
    template = copy.deepcopy(spec.get("template") or {})
    template_meta = template.setdefault("metadata", {})
    labels = dict(template_meta.get("labels") or {})
    labels[TRACK_LABEL] = TRACK_CANARY
    template_meta["labels"] = labels
    new_images = {change.container: change.new for change in plan.changes}
    pod_spec = template.setdefault("spec", {})
    for key in ("containers", "initContainers"):
        for container in pod_spec.get(key) or []:
            if container.get("name") in new_images:
                container["image"] = new_images[container["name"]]
    selector = copy.deepcopy(selector_of(web))
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), TRACK_LABEL: TRACK_CANARY}
    manifest_spec: Json = {
        "replicas": replicas,
        "selector": selector,
        "template": template,
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
    }
    for key in ("minReadySeconds", "progressDeadlineSeconds", "strategy"):
        if key in spec:
            manifest_spec[key] = copy.deepcopy(spec[key])
    manifest: Json = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(name),
            "labels": {TRACK_LABEL: TRACK_CANARY},
            "annotations": {
                OWNER_ANNOTATION: name,
                OWNER_UID_ANNOTATION: str(meta.get("uid", "")),
                BASE_ANNOTATION: base,
                ANALYSIS_ANNOTATION: str(analysis_seconds),
                AUTO_PROMOTE_ANNOTATION: "true" if auto_promote else "false",
                REQUESTER_ANNOTATION: requester_id,
                REQUESTER_NAME_ANNOTATION: requester_name,
                CHANGE_CAUSE_ANNOTATION: change_cause,
            },
        },
        "spec": manifest_spec,
    }
    return manifest, plan.changes


@dataclass(frozen=True)
class Settings:
    """What a canary Deployment's annotations say about it."""

    of: str
    of_uid: str
    base: str
    analysis_seconds: int
    auto_promote: bool
    requester_id: str
    requester_name: str
    promoting: bool


def settings_of(canary: Json) -> Settings | None:
    """The canary's settings, or None when the Deployment is not a canary the bot made."""
    annotations = canary.get("metadata", {}).get("annotations") or {}
    of = annotations.get(OWNER_ANNOTATION)
    if not of:
        return None
    try:
        analysis = int(annotations.get(ANALYSIS_ANNOTATION, DEFAULT_ANALYSIS_SECONDS))
    except ValueError:
        analysis = DEFAULT_ANALYSIS_SECONDS
    return Settings(
        of=str(of),
        of_uid=str(annotations.get(OWNER_UID_ANNOTATION, "")),
        base=str(annotations.get(BASE_ANNOTATION, "")),
        analysis_seconds=min(max(analysis, MIN_ANALYSIS_SECONDS), MAX_ANALYSIS_SECONDS),
        auto_promote=annotations.get(AUTO_PROMOTE_ANNOTATION) == "true",
        requester_id=str(annotations.get(REQUESTER_ANNOTATION, "")),
        requester_name=str(annotations.get(REQUESTER_NAME_ANNOTATION, "")),
        promoting=annotations.get(PHASE_ANNOTATION) == PROMOTING,
    )


def images_of(deployment: Json) -> tuple[tuple[str, str], ...]:
    spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return tuple(
        (str(c.get("name", "")), str(c.get("image", "")))
        for key in ("containers", "initContainers")
        for c in spec.get(key) or []
    )


def routes_to(service: Json, pod_labels: Mapping[str, str]) -> bool:
    """Whether a Service sends traffic to pods with these labels (a selector-less Service
    routes to hand-made Endpoints only)."""
    selector = service.get("spec", {}).get("selector") or {}
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


def pod_labels(deployment: Json) -> dict[str, str]:
    return dict(
        deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    )


# -- health ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodHealth:
    name: str
    ready: bool
    #: kubectl's STATUS column (Running, ImagePullBackOff, CrashLoopBackOff, …).
    status: str
    restarts: int
    age_seconds: int | None


@dataclass(frozen=True)
class Health:
    """`failed` carries the reason the canary must be aborted; `all_ready` that every desired
    pod is Ready (the analysis runs while it stays so)."""

    pods: tuple[PodHealth, ...]
    desired: int
    ready: int
    all_ready: bool
    failed: str | None


def pod_health(pods: Sequence[Json], now: datetime) -> tuple[PodHealth, ...]:
    rows = []
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue  # on its way out: a scale-down or the canary's own deletion
        summary = pod_summary(pod, now)
        ready_count, _, total = summary.ready.partition("/")
        ready = ready_count == total and total not in ("", "0")
        rows.append(
            PodHealth(
                summary.name, ready, summary.phase_or_reason, summary.restarts, summary.age_seconds
            )
        )
    return tuple(sorted(rows, key=lambda p: p.name))


def judge(
    canary: Json,
    pods: Sequence[Json],
    now: datetime,
    *,
    seen_ready: frozenset[str] = frozenset(),
) -> Health:
    """The canary's health from its pods. Failed when a pod restarted, is stuck (image pull,
    crash loop, bad config), lost its readiness after having had it (`seen_ready`), or the
    pods are not all Ready within the progress deadline from the canary's creation."""
    rows = pod_health(pods, now)
    spec = canary.get("spec", {})
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    ready = sum(1 for p in rows if p.ready)
    failed: str | None = None
    for pod in rows:
        if pod.restarts > 0:
            failed = f"pod `{pod.name}` restarted ({pod.restarts} times, now {pod.status})"
        elif pod.status in STUCK_REASONS:
            failed = f"pod `{pod.name}` is stuck in `{pod.status}`"
        elif pod.name in seen_ready and not pod.ready:
            failed = f"pod `{pod.name}` failed its readiness probe after being Ready"
        if failed:
            break
    all_ready = ready >= desired and desired > 0
    if failed is None and not all_ready:
        deadline = int(spec.get("progressDeadlineSeconds", 600) or 600)
        created = _time(canary.get("metadata", {}).get("creationTimestamp"))
        if created is not None and (now - created).total_seconds() > deadline:
            failed = f"only {ready} of {desired} canary pods were Ready within {deadline}s"
    return Health(rows, desired, ready, all_ready, failed)


# -- where a canary is reported ---------------------------------------------------------------


@dataclass(frozen=True)
class CanaryRecord:
    """Where a running canary's message is and what the bot saw of it (kept in Redis, so a
    restarted bot resumes the message)."""

    #: The canary Deployment's uid (a new one under the same name is another canary).
    id: str
    context: str
    namespace: str
    #: The Deployment the canary is of (`web`); the canary is `web-canary`.
    deployment: str
    channel: str
    thread_ts: str
    message_ts: str = ""
    started_at: float = 0.0
    #: When every canary pod was last seen Ready without a break (the analysis runs from it).
    ready_since: float | None = None
    #: Pods seen Ready: one of them losing readiness aborts the canary.
    seen_ready: tuple[str, ...] = field(default_factory=tuple)
    #: The verdict once it ended: "promoted", "aborted", "gone".
    verdict: str = ""
    why: str = ""
    #: True once --auto-promote (or Promote) has been handed on, so it happens once.
    promote_requested: bool = False
    finished: bool = False


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


__all__ = [
    "ANALYSIS_ANNOTATION",
    "DEFAULT_ANALYSIS_SECONDS",
    "OWNER_ANNOTATION",
    "PHASE_ANNOTATION",
    "SUFFIX",
    "TRACK_CANARY",
    "TRACK_LABEL",
    "CanaryRecord",
    "CanaryRefused",
    "Health",
    "PodHealth",
    "Settings",
    "canary_manifest",
    "canary_name",
    "check_target",
    "describe_duration",
    "images_of",
    "judge",
    "parse_duration",
    "replicas_for_weight",
    "routes_to",
    "settings_of",
]
