"""The package carries only the product: bot/ and handlers/ hold Python modules alone, the
wheel packs nothing else, and no module of the bot reaches into tests/ (where the development
kit and the playground live), so the wheel and the image run without them."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "handlers")
# The architecture is described next to the code; the wheel packs no data, so not this page.
ARCHITECTURE = Path("bot/ARCHITECTURE.md")


def product_files() -> list[Path]:
    return sorted(
        path
        for root in PRODUCT
        for path in (REPO / root).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def test_the_product_folders_hold_python_modules_only() -> None:
    others = [
        str(p.relative_to(REPO))
        for p in product_files()
        if p.suffix != ".py" and p.relative_to(REPO) != ARCHITECTURE
    ]
    assert others == [], f"not part of the product: move them under tests/ ({others})"


def test_the_wheel_packs_the_product_packages_and_no_data() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-data" not in setuptools
    include = setuptools["packages"]["find"]["include"]
    assert include and all(pattern.split(".")[0] in PRODUCT for pattern in include), include


def test_no_module_of_the_product_imports_the_tests() -> None:
    reaching = []
    for path in product_files():
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(name == "tests" or name.startswith("tests.") for name in names):
                reaching.append(str(path.relative_to(REPO)))
    assert reaching == [], f"the wheel has no tests/: {reaching}"
