"""The Slack app manifests ask for exactly the scopes the code needs: the Web API methods are
found by scanning the source (every call of a WebClient API method in bot/ and handlers/), each
method is mapped to the scopes Slack documents for it, and the union (plus `commands` for the
slash command) must equal what each manifest asks for.

What only impersonate mode calls (asking Slack who a person is) is left out of the base
manifests and asked for by their `-impersonate` variants, which `make slack-manifests` renders."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.web.base_client import BaseClient

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = {
    "socket": REPO / "deploy" / "slack" / "manifest-socket.yaml",
    "http": REPO / "deploy" / "slack" / "manifest-http.yaml",
}
# Slack's documented bot scopes per Web API method. A method the code starts calling must be
# added here, with its scope, before this test passes.
SCOPES_OF_METHOD: dict[str, set[str]] = {
    "auth.test": set(),
    # chat:write.public: announcements go to the channel /rollout was typed in, which the bot
    # may not have joined (public channels only; private ones need an invitation).
    "chat.postMessage": {"chat:write", "chat:write.public"},
    "chat.update": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "usergroups.users.list": {"usergroups:read"},
    "usergroups.list": {"usergroups:read"},
    "users.info": {"users:read"},
    "users.list": {"users:read"},
    "conversations.info": {"channels:read", "groups:read"},
}
# The slash command itself; response_url answers need no scope.
ALWAYS = {"commands"}
# Called only in impersonate mode (policy `identity.mode: impersonate`).
IMPERSONATE_ONLY = ("bot/adapters/slack/people.py",)
# The email in users.info's answer needs its own scope.
IMPERSONATE_EXTRA = {"users:read.email"}

_NOT_API = set(dir(BaseClient))


def api_method(attribute: str) -> str | None:
    """`chat_postMessage` -> `chat.postMessage`, if WebClient has such an API method."""
    if attribute.startswith("_") or attribute in _NOT_API or "_" not in attribute:
        return None
    if not callable(getattr(WebClient, attribute, None)):
        return None
    return attribute.replace("_", ".")


def methods_called() -> dict[str, list[str]]:
    """API method -> the files that call it."""
    found: dict[str, list[str]] = {}
    for root in ("bot", "handlers"):
        for path in sorted((REPO / root).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    method = api_method(node.func.attr)
                    if method:
                        found.setdefault(method, []).append(relative)
    return found


def test_the_scan_finds_the_calls_we_know_of() -> None:
    called = methods_called()
    assert {"chat.postMessage", "chat.update", "usergroups.users.list", "auth.test"} <= set(called)


def test_the_scan_would_notice_a_new_method() -> None:
    assert api_method("users_info") == "users.info"
    assert api_method("api_call") is None and api_method("token") is None


@pytest.mark.parametrize("mode", sorted(MANIFESTS))
def test_manifest_scopes_are_exactly_what_the_code_calls(mode: str) -> None:
    called = {
        method: files
        for method, files in methods_called().items()
        if any(not f.startswith(IMPERSONATE_ONLY) for f in files)
    }
    unknown = sorted(set(called) - set(SCOPES_OF_METHOD))
    assert not unknown, f"add the scopes of {unknown} (called in {[called[m] for m in unknown]})"
    needed = set(ALWAYS).union(*(SCOPES_OF_METHOD[m] for m in called))
    manifest = yaml.safe_load(MANIFESTS[mode].read_text())
    asked = set(manifest["oauth_config"]["scopes"]["bot"])
    assert asked == needed, f"missing {needed - asked}, unused {asked - needed}"
    assert "user" not in manifest["oauth_config"]["scopes"], "the bot needs no user scopes"


def test_socket_and_http_manifests_differ_only_in_transport() -> None:
    socket = yaml.safe_load(MANIFESTS["socket"].read_text())
    http = yaml.safe_load(MANIFESTS["http"].read_text())
    assert socket["settings"]["socket_mode_enabled"] is True
    assert http["settings"]["socket_mode_enabled"] is False
    (command,) = http["features"]["slash_commands"]
    assert command["url"].startswith("https://") and command["url"].endswith("/slack/events")
    assert http["settings"]["interactivity"]["request_url"] == command["url"]
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["interactivity"]


@pytest.mark.parametrize("mode", sorted(MANIFESTS))
def test_impersonate_manifests_add_exactly_what_that_mode_calls(mode: str) -> None:
    from tests.devkit.slack_manifests import impersonate_path, impersonate_variant

    called = methods_called()
    unknown = sorted(set(called) - set(SCOPES_OF_METHOD))
    assert not unknown, f"add the scopes of {unknown}"
    needed = set(ALWAYS).union(*(SCOPES_OF_METHOD[m] for m in called)) | IMPERSONATE_EXTRA
    path = impersonate_path(mode)
    assert path.read_text() == impersonate_variant(MANIFESTS[mode].read_text(), mode), (
        f"{path.name} is stale: run `make slack-manifests`"
    )
    asked = set(yaml.safe_load(path.read_text())["oauth_config"]["scopes"]["bot"])
    assert asked == needed, f"missing {needed - asked}, unused {asked - needed}"
    base = set(yaml.safe_load(MANIFESTS[mode].read_text())["oauth_config"]["scopes"]["bot"])
    assert "users:read.email" not in base, "only impersonate mode may ask for emails"
