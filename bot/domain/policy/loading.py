"""Reading a policy file: its bytes read once, parsed and validated, every problem found
reported at once (PolicyError), and, given the contexts the bot serves, `contexts:` patterns
that would never apply.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from bot.domain.policy.model import Policy
from bot.domain.policy.problems import (
    PolicyError,
    PolicyProblem,
    _field_path,
    _locate,
    _parse_yaml,
    _problem_from_error,
    _without_echoes,
    _yaml_problem,
)


def load_policy(
    path: str | os.PathLike[str], *, served_contexts: Collection[str] | None = None
) -> Policy:
    """Read, parse and validate a policy file; ``PolicyError`` lists everything wrong with it.

    With ``served_contexts`` (the contexts the bot serves, by the names the policy matches),
    a `contexts:` pattern that matches none of them is a problem too: a typo, or `prod` on a
    one-cluster bot, would otherwise make its rule silently never apply."""
    return parse_policy(read_policy_bytes(path), os.fspath(path), served_contexts=served_contexts)


def read_policy_bytes(path: str | os.PathLike[str]) -> bytes:
    """The policy file's bytes, read once; ``PolicyError`` when it cannot be read."""
    file = os.fspath(path)
    try:
        return Path(file).read_bytes()
    except FileNotFoundError:
        raise _problem(file, None, "", "the policy file does not exist") from None
    except OSError as exc:
        why = f"cannot read the policy file: {exc.strerror or exc}"
        raise _problem(file, None, "", why) from None


def _problem(file: str, line: int | None, field: str, message: str) -> PolicyError:
    return PolicyError([PolicyProblem(file, line, field, message)])


def parse_policy(
    raw: bytes, file: str, *, served_contexts: Collection[str] | None = None
) -> Policy:
    """Parse and validate the bytes of a policy file read once (`file` names it in problems),
    so that what is hashed and what is put in force are the same bytes."""

    def problem(line: int | None, field: str, message: str) -> PolicyError:
        return _problem(file, line, field, message)

    try:
        # As Path.read_text would: universal newlines.
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise problem(None, "", f"the policy file is not UTF-8 text ({exc.reason})") from None

    try:
        root, duplicates, data = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        line, message = _yaml_problem(exc)
        raise problem(line, "", message) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise problem(line, "", f"YAML error: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise problem(None, "", f"YAML error: {exc}") from None

    if root is None:
        raise problem(None, "", "the policy file is empty")
    if not isinstance(data, dict):
        raise problem(
            root.start_mark.line + 1,
            "",
            "the policy must be a mapping with `channels`, `permissions` and `approvals`",
        )

    problems = [
        PolicyProblem(
            file,
            node.start_mark.line + 1,
            _field_path(loc),
            f"`{node.value}` appears more than once; YAML would silently keep only the last one",
        )
        for loc, node in duplicates
    ]
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems += [
            _problem_from_error(file, root, error) for error in _without_echoes(exc.errors())
        ]
    else:
        if served_contexts is not None:
            problems += _unserved_context_patterns(file, root, policy, served_contexts)
    if problems:
        raise PolicyError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    return policy


def _unserved_context_patterns(
    file: str, root: yaml.Node, policy: Policy, served: Collection[str]
) -> list[PolicyProblem]:
    """One problem per `contexts:` pattern (of a channel, permission, approval or freeze rule)
    that matches no served context, at its own line."""
    lists: list[tuple[tuple[str | int, ...], Sequence[str] | None]] = [
        (("channels", channel, "contexts"), binding.contexts)
        for channel, binding in policy.channels.items()
    ]
    lists += [
        (("permissions", i, "contexts"), r.contexts) for i, r in enumerate(policy.permissions)
    ]
    lists += [(("approvals", i, "contexts"), r.contexts) for i, r in enumerate(policy.approvals)]
    lists += [(("freezes", i, "contexts"), rule.contexts) for i, rule in enumerate(policy.freezes)]
    known = ", ".join(f"`{name}`" for name in sorted(served)) or "none"
    problems = []
    for loc, patterns in lists:
        for index, pattern in enumerate(patterns or ()):
            if any(fnmatch.fnmatchcase(name, pattern) for name in served):
                continue
            node = _locate(root, (*loc, index))
            problems.append(
                PolicyProblem(
                    file,
                    node.start_mark.line + 1,
                    _field_path((*loc, index)),
                    f"`{pattern}` matches no context the bot serves ({known}), so this rule "
                    "would never apply; name a served context, or serve that cluster "
                    "(ROLLOUT_BOT_CONTEXTS)",
                )
            )
    return problems
