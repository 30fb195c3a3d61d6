"""The annotation and label names kubectl and the controllers use, and the change-cause patch.

``kubernetes.io/change-cause`` is how kubectl labels a revision with what made it; the bot writes
who asked and why there, in the same request as the template change.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.domain.readers import Json

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"

# kubectl's annotationsToSkip (rollback.go): kept from the Deployment on undo, never taken from
# the target ReplicaSet. The controller skips the same keys when copying Deployment → RS.
ROLLBACK_KEPT_ANNOTATIONS: tuple[str, ...] = (
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
)

_INT64_MIN = -(2**63)


def with_change_cause(patch: Json, text: str) -> dict[str, Any]:
    """A copy of a strategic-merge patch that also sets the Deployment's change-cause.

    Setting it in the same patch as the template change matters: the controller copies the
    Deployment's annotations to the new RS, so a stale cause would label the wrong revision.
    """
    result = copy.deepcopy(dict(patch))
    metadata = result.setdefault("metadata", {})
    annotations = metadata.setdefault("annotations", {})
    annotations[CHANGE_CAUSE_ANNOTATION] = text
    return result
