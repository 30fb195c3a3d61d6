"""Pod templates compared and diffed the way the API server and kubectl see them.

Two templates are the same when they differ only in the pod-template-hash label, nulls and empty
maps or lists (apimachinery's semantic equality). ``template_diff`` shows what an undo or a
``set image`` would change, as a unified diff of sorted YAML.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from bot.domain.annotations import CHANGE_CAUSE_ANNOTATION, POD_TEMPLATE_HASH_LABEL
from bot.domain.readers import (
    Json,
    as_map,
)


def prune(value: Any) -> Any:
    """Drop nulls and empty maps/lists, recursively.

    apimachinery's semantic DeepEqual treats a nil and an empty map or slice as equal, and Go's
    JSON omits both, so ``labels: {}`` and no labels are the same template. One approximation:
    a pointer to an empty struct (e.g. ``securityContext: {}``) also counts as absent here.
    """
    if isinstance(value, Mapping):
        pruned = {str(k): prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list | tuple):
        return [prune(item) for item in value]
    return value


def without_hash(template: Json) -> dict[str, Any]:
    result = copy.deepcopy(dict(template))
    labels = as_map(result.get("metadata")).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return result


def templates_equal_ignoring_hash(a: Json, b: Json) -> bool:
    """EqualIgnoreHash: pod templates equal once the pod-template-hash label is removed.

    Both sides come back from the API server defaulted and with canonical quantities, so a deep
    comparison of the dicts matches the server's semantic comparison.
    """
    return bool(prune(without_hash(a)) == prune(without_hash(b)))


@dataclass(frozen=True)
class TemplateDiff:
    text: str
    lines_omitted: int
    changed: bool


def _display_template(template: Json, ignore_change_cause: bool) -> Any:
    shown = without_hash(template)
    annotations = as_map(shown.get("metadata")).get("annotations")
    if ignore_change_cause and isinstance(annotations, dict):
        annotations.pop(CHANGE_CAUSE_ANNOTATION, None)
    return prune(shown)


def _yaml_lines(value: Any) -> list[str]:
    # A wide line limit keeps long strings (args, env values) on one line, so the diff shows
    # the changed value rather than a reflowed paragraph.
    text = yaml.safe_dump(
        value, default_flow_style=False, sort_keys=True, allow_unicode=True, width=4096
    )
    return text.splitlines()


def template_diff(
    old_template: Json,
    new_template: Json,
    old_label: str,
    new_label: str,
    max_lines: int = 60,
    *,
    ignore_change_cause: bool = True,
) -> TemplateDiff:
    """A unified diff of two pod templates as sorted YAML, without the pod-template-hash label,
    nulls, empty maps and lists (and by default the change-cause annotation). Longer than
    ``max_lines`` lines, it is cut and ``lines_omitted`` says how many lines were left out."""
    if max_lines < 0:
        raise ValueError("max_lines must be zero or more")
    lines = list(
        difflib.unified_diff(
            _yaml_lines(_display_template(old_template, ignore_change_cause)),
            _yaml_lines(_display_template(new_template, ignore_change_cause)),
            fromfile=old_label,
            tofile=new_label,
            lineterm="",
        )
    )
    omitted = max(0, len(lines) - max_lines)
    return TemplateDiff(
        text="\n".join(lines[:max_lines]), lines_omitted=omitted, changed=bool(lines)
    )
