"""The Slack app manifests for impersonate mode (policy `identity.mode: impersonate`): the
base manifests in deploy/slack plus the scopes that mode needs, rendered by
`make slack-manifests` (tests/unit/test_slack_manifests.py keeps them equal to this).

    python -m tests.devkit.slack_manifests     # writes deploy/slack/manifest-*-impersonate.yaml

Only this mode asks Slack who a person is (their email is their Kubernetes user), so the base
manifests do not ask for those scopes.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLACK = REPO / "deploy" / "slack"
TRANSPORTS = ("http", "socket")

#: Scope -> why impersonate mode needs it.
IMPERSONATE_SCOPES: dict[str, str] = {
    "users:read": "users.info: is the person a guest or a bot user, their handle",
    "users:read.email": "users.info's email: the person's Kubernetes user ({email})",
}
_ANCHOR_COMMENT = "#   usergroups:read "
_ANCHOR_SCOPE = "      - usergroups:read\n"


def base_path(transport: str) -> Path:
    return SLACK / f"manifest-{transport}.yaml"


def impersonate_path(transport: str) -> Path:
    return SLACK / f"manifest-{transport}-impersonate.yaml"


def impersonate_variant(base: str, transport: str) -> str:
    """The base manifest with impersonate mode's scopes, each explained in the header."""
    lines = base.splitlines(keepends=True)
    out = [
        f"# Generated from manifest-{transport}.yaml by `make slack-manifests`: do not edit.\n",
        "# For a policy with `identity.mode: impersonate` (each change made as the Slack user\n",
        "# who asked): the same app, with the scopes to ask Slack who that person is.\n",
        "#\n",
    ]
    for line in lines:
        out.append(line)
        if line.startswith(_ANCHOR_COMMENT):
            for scope, why in IMPERSONATE_SCOPES.items():
                out.append(f"#   {scope:<17}  {why}\n")
        elif line == _ANCHOR_SCOPE:
            out.extend(f"      - {scope}\n" for scope in IMPERSONATE_SCOPES)
    return "".join(out)


def main() -> int:
    for transport in TRANSPORTS:
        text = impersonate_variant(base_path(transport).read_text(), transport)
        impersonate_path(transport).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
