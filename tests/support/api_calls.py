"""What the bot asks of the Kubernetes API, read from its cluster adapter's source, so RBAC
tests compare grants with the calls the code really makes (not with a list kept by hand)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADAPTER = REPO / "bot" / "adapters" / "k8s" / "cluster.py"
# API groups of the resources the adapter names (core resources have none).
GROUPS = {
    "deployments": "apps",
    "replicasets": "apps",
    "statefulsets": "apps",
    "daemonsets": "apps",
    "controllerrevisions": "apps",
    "horizontalpodautoscalers": "autoscaling",
}


def api_calls_in_cluster_adapter() -> set[tuple[str, str]]:
    """(verb, resource) of every call the cluster adapter makes, from its source: the verb and
    resource arguments of `self._call`/`self._call_raw` and the `self._paged` resource (a list).
    A resource that is not a literal comes from `_kind()`, which serves every workload kind, so
    it stands for each resource `_kind()` names."""
    calls: set[tuple[str, str]] = set()
    for path in [ADAPTER]:
        tree = ast.parse(path.read_text())
        workload_resources = {
            node.value
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef) and function.name == "_kind"
            for node in ast.walk(function)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.endswith("s")
            and node.value.isalpha()
        }
        assert workload_resources, "no resource names found in _kind()"

        def resources(arg: ast.expr, workloads: frozenset[str]) -> set[str]:
            if isinstance(arg, ast.Constant):
                return {str(arg.value)}
            return set(workloads)

        kinds = frozenset(workload_resources)

        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            args = node.args
            if node.func.attr in ("_call", "_call_raw") and len(args) >= 2:
                if isinstance(args[0], ast.Constant):
                    calls.update((str(args[0].value), r) for r in resources(args[1], kinds))
            elif node.func.attr == "_paged" and args:
                calls.update(("list", r) for r in resources(args[0], kinds))
            elif node.func.attr == "read_namespace":
                calls.add(("get", "namespaces"))
    return calls


def api_calls_with_groups() -> set[tuple[str, str]]:
    """The same calls with resources as `kubectl auth can-i --list` names them
    (`deployments.apps`, `pods`)."""
    return {
        (verb, f"{resource}.{GROUPS[resource]}" if resource in GROUPS else resource)
        for verb, resource in api_calls_in_cluster_adapter()
    }
