"""The import contract: data flows one way, Slack surface → services → domain, with adapters
below the services. Each rule here fails the build when a module reaches the wrong way.

    layer                 may import (of ours)
    bot.domain            bot.domain only; no I/O library at all
    bot.adapters          bot.domain, bot.adapters
    bot.services          bot.domain, bot.adapters, bot.services
    handlers              bot.domain, bot.services, handlers (never an adapter)
    bot.observability     bot.observability only (metrics, logs, health: every layer but the
                          domain may report through it)
    bot.runtime, bot.__main__, bot.check: the composition root and tools around it, which
                          may import anything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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
# Which of our packages each layer may import. Anything not listed is refused.
ALLOWED: dict[str, tuple[str, ...]] = {
    "bot.domain": ("bot.domain",),
    "bot.adapters": ("bot.domain", "bot.adapters", "bot.observability"),
    "bot.services": ("bot.domain", "bot.adapters", "bot.services", "bot.observability"),
    "handlers": ("bot.domain", "bot.services", "handlers", "bot.observability"),
    "bot.observability": ("bot.observability",),
}
OURS = ("bot", "handlers")


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-local imports included), with
    relative imports resolved."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def layer_of(module: str) -> str | None:
    for layer in ALLOWED:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def modules(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (REPO / root).rglob("*.py"))


def is_ours(module: str) -> bool:
    return module.split(".")[0] in OURS


@pytest.mark.parametrize("path", modules("bot", "handlers"), ids=lambda p: str(p.relative_to(REPO)))
def test_each_layer_imports_only_what_it_may(path: Path) -> None:
    layer = layer_of(module_name(path))
    if layer is None:
        return  # the composition root and the tools around it
    allowed = ALLOWED[layer]
    wrong = {
        m
        for m in imports(path)
        if is_ours(m)
        and m not in ("bot", "handlers")
        and not any(m == a or m.startswith(a + ".") for a in allowed)
    }
    assert not wrong, f"{layer} may import only {allowed}; {path.name} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", modules("bot/domain"), ids=lambda p: p.name)
def test_domain_is_pure(path: Path) -> None:
    used = {m.split(".")[0] for m in imports(path)}
    assert not used & IO_MODULES, f"{path.name} does I/O: {sorted(used & IO_MODULES)}"


def test_handlers_never_touch_an_adapter_or_a_client_library_of_ours() -> None:
    for path in modules("handlers"):
        assert not {m for m in imports(path) if m.startswith("bot.adapters")}, path.name
        used = {m.split(".")[0] for m in imports(path)}
        assert not used & {"redis", "kubernetes"}, path.name


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule above can fail: a domain module importing a service is refused."""
    bad = REPO / "bot" / "domain" / "_contract_probe.py"
    bad.write_text("from bot.services.rollouts import Rollouts\n")
    try:
        with pytest.raises(AssertionError):
            test_each_layer_imports_only_what_it_may(bad)
    finally:
        bad.unlink()
