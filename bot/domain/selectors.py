"""A workload's label selector as the string the Kubernetes API takes (`app=web,tier in (a)`).

Pure: the services list a workload's pods and ReplicaSets by it through the `Cluster` port,
so it belongs with the domain rather than inside the cluster adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def selector_string(deployment: Mapping[str, Any]) -> str:
    """The Deployment's matchLabels as a label selector (matchExpressions are rare for apps)."""
    selector = deployment.get("spec", {}).get("selector", {})
    parts = [f"{k}={v}" for k, v in sorted(selector.get("matchLabels", {}).items())]
    for expr in selector.get("matchExpressions", []) or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


__all__ = ["selector_string"]
