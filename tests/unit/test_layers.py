"""Data flows one way: Slack surface → use cases → ports → adapters. These checks keep it so."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The composition root wires handlers to the app; nothing else in bot/ may know about them.
COMPOSITION_ROOT = {"bot/app.py", "bot/__main__.py"}
IO_MODULES = {
    "redis",
    "kubernetes",
    "slack_sdk",
    "slack_bolt",
    "requests",
    "urllib3",
    "socket",
    "subprocess",
    "waitress",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("bot"), ids=lambda p: str(p.relative_to(REPO)))
def test_bot_does_not_import_the_slack_surface(path: Path) -> None:
    if str(path.relative_to(REPO)) in COMPOSITION_ROOT:
        return
    assert not {m for m in imports(path) if m == "handlers" or m.startswith("handlers.")}


@pytest.mark.parametrize("path", modules("bot/domain"), ids=lambda p: str(p.relative_to(REPO)))
def test_domain_is_pure(path: Path) -> None:
    used = {m.split(".")[0] for m in imports(path)}
    assert not used & IO_MODULES
    assert not {m for m in imports(path) if m.startswith(("bot.k8s", "bot.store"))}
