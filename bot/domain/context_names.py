"""A kubeconfig context's name as a part of an id or a store key.

Rollout ids carry their context (`east.<uid>-<generation>`) and so do the store's per-cluster
keys; both need the same safe spelling, so it is defined once here, with no store in mind.
"""

from __future__ import annotations

import hashlib
import re

_SAFE_PART = re.compile(r"[A-Za-z0-9._-]{1,128}")


def context_part(context: str) -> str:
    """A context name as a key part: itself when it is one (`east`, `kind-dev`), else its
    safe characters and a digest (`arn:aws:eks:…/prod` has `:` and `/`)."""
    if _SAFE_PART.fullmatch(context) and len(context) <= 64:
        return context
    digest = hashlib.sha256(context.encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9._-]", "_", context)[:48] + "-" + digest


__all__ = ["context_part"]
