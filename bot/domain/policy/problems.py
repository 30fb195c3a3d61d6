"""What is wrong with a policy file, said the way its author wrote it: a PolicyProblem per
mistake (file, line, field, message), with YAML's and pydantic's errors turned into messages
about the policy (the line a key is on, "did you mean", "write it in quotes").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import yaml
from pydantic_core import ErrorDetails

from bot.domain.identity import IdentityRule
from bot.domain.policy.change_windows import BreakGlassRule, FreezeRule, WeeklyFreeze
from bot.domain.policy.model import Policy
from bot.domain.policy.pipelines import Pipeline, PipelineTarget
from bot.domain.policy.rules import ApprovalRule, ChannelBinding, PermissionRule


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy file. ``line`` is 1-based; None when there is no line."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class PolicyError(Exception):
    """The policy file cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


_FIELD_NAMES: Final = sorted(
    {
        *Policy.model_fields,
        *ChannelBinding.model_fields,
        *PermissionRule.model_fields,
        *ApprovalRule.model_fields,
        *IdentityRule.model_fields,
        *FreezeRule.model_fields,
        *WeeklyFreeze.model_fields,
        *BreakGlassRule.model_fields,
        *PipelineTarget.model_fields,
        *Pipeline.model_fields,
        "from",
        "to",
    }
    - {"start", "end"}
)


def _parse_yaml(
    text: str,
) -> tuple[yaml.Node | None, list[tuple[tuple[str | int, ...], yaml.Node]], object]:
    """One safe parse: the node tree (for line numbers), duplicate keys, and the data."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [], None
        # Before constructing: construction rewrites merge keys (`<<`) in the node tree.
        duplicates = list(_duplicate_keys(root, ()))
        return root, duplicates, loader.construct_document(root)
    finally:
        loader.dispose()


# Constructs that YAML only notices are unfinished where the next thing starts: the mistake
# is where they were opened, which is the error's context mark.
_UNCLOSED: Final = {
    "while parsing a flow mapping": "`{`",
    "while parsing a flow sequence": "`[`",
    "while scanning a quoted scalar": "quote",
}


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line a YAML syntax error is on, and what it is, as the person who wrote it sees it."""
    problem_line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
    opened = _UNCLOSED.get(exc.context or "")
    if opened is not None and exc.context_mark is not None:
        line = exc.context_mark.line + 1
        if problem_line is None or problem_line == line:
            return line, f"YAML error: {exc.problem or 'not valid YAML'}"
        if opened == "quote":
            return line, "YAML error: the quote opened on this line is never closed"
        closer = "`}`" if opened == "`{`" else "`]`"
        return line, (
            f"YAML error: the {opened} opened on this line is not closed by a {closer} "
            f"(line {problem_line} starts something else)"
        )
    if (exc.problem or "").startswith("expected <block end>"):
        return problem_line, (
            "YAML error: this line is indented differently from the lines above it "
            "(keys of one mapping start in the same column)"
        )
    return problem_line, _yaml_message(exc)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "not valid YAML"
    context = exc.context or ""
    if context.startswith("while"):
        message = f"YAML error {context}: {problem}"
    elif context:
        message = f"YAML error: {context}, {problem}"
    else:
        message = f"YAML error: {problem}"
    if "alias" in message or "'*'" in problem:
        message += '; write a wildcard in quotes, as "*"'
    return message


def _duplicate_keys(
    node: yaml.Node, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen and key.tag != "tag:yaml.org,2002:merge":
                    yield (*loc, key.value), key
                seen.add(key.value)
                yield from _duplicate_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _locate(root: yaml.Node, loc: Sequence[str | int]) -> yaml.Node:
    """The node a pydantic error location points at, or its nearest ancestor that exists."""
    node = root
    key_node: yaml.Node | None = None
    for part in loc:
        if part == "[key]" and key_node is not None:
            node = key_node
            continue
        found: tuple[yaml.Node, yaml.Node | None] | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:  # the last one wins, as in the constructed data
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    found = (value, key)
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            found = (node.value[part], None)
        if found is None:
            return node
        node, key_node = found
    return node


def _field_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _problem_from_error(file: str, root: yaml.Node, error: ErrorDetails) -> PolicyProblem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind: str = error["type"]
    if kind == "extra_forbidden":
        # Point at the unknown key itself, not at its value.
        parent = _locate(root, loc[:-1])
        line = _key_line(parent, str(loc[-1]))
        close = difflib.get_close_matches(str(loc[-1]), _FIELD_NAMES, n=1)
        message = f"unknown key `{loc[-1]}`"
        if close:
            message += f"; did you mean `{close[0]}`?"
    else:
        node = _locate(root, loc)
        line = node.start_mark.line + 1
        if kind == "missing":
            message = f"missing required key `{loc[-1]}`"
        elif kind == "value_error":
            message = str(error["ctx"]["error"])
        else:
            message = _in_policy_terms(error)
    return PolicyProblem(file, line, _field_path(loc), message)


def _without_echoes(errors: Sequence[ErrorDetails]) -> list[ErrorDetails]:
    """A mistyped key is one mistake: its "unknown key, did you mean `x`?" already says that
    `x` is missing, so the "missing required key `x`" beside it goes."""
    suggested = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = tuple(error["loc"])
            close = difflib.get_close_matches(str(loc[-1]), _FIELD_NAMES, n=1)
            if close:
                suggested.add((*loc[:-1], close[0]))
    return [
        error
        for error in errors
        if not (error["type"] == "missing" and tuple(error["loc"]) in suggested)
    ]


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"`{value}`"


def _in_policy_terms(error: ErrorDetails) -> str:
    """pydantic's phrases ("input should be greater than or equal to 1") said about the policy."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = _shown(error.get("input"))
    if kind == "greater_than_equal":
        return f"{given} is too small: use {ctx['ge']} or more"
    if kind == "less_than_equal":
        return f"{given} is too large: use {ctx['le']} or less"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        raw = error.get("input")
        if isinstance(raw, str) and raw.strip().isdigit():
            return f"{given} is quoted: write the number without quotes"
        return f"{given} is not a whole number: write a number such as `1`"
    if kind in {"bool_type", "bool_parsing"}:
        return f"{given} is not `true` or `false`"
    if kind in {"string_type", "string_sub_type"}:
        return f"{given} is not text: write it in quotes"
    if kind in {"list_type", "tuple_type", "set_type"}:
        return f"{given} is not a list: write `[a, b]` or one `- item` per line"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"{given} is not a mapping: write `key: value` pairs"
    if kind == "too_short":
        return "the list is empty: name at least one"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        message = f"{given} is not allowed here: use {expected.replace(chr(39), '`')}"
        raw = error.get("input")
        choices = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(raw, choices, n=1) if isinstance(raw, str) else []
        return message + (f"; did you mean `{close[0]}`?" if close else "")
    text = str(error["msg"])
    return text[:1].lower() + text[1:]


def _key_line(mapping: yaml.Node, key: str) -> int:
    if isinstance(mapping, yaml.MappingNode):
        for key_node, _ in mapping.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return int(key_node.start_mark.line) + 1
    return int(mapping.start_mark.line) + 1
