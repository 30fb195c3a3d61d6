"""The import contracts in pyproject.toml (`[tool.importlinter]`) hold on this tree, and they
can fail: a copy of the tree with one deliberate violation breaks the contract it names.

`make lint` runs the same contracts; these tests keep them honest (a contract that names a
module which no longer exists, or a layer that lets everything through, would pass silently)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts against the `bot` and `handlers` packages found in `tree`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_tree(destination: Path) -> Path:
    for package in ("bot", "handlers"):
        shutil.copytree(
            REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


# Each violation: the module that gains the import, the import, and the contract it breaks.
VIOLATIONS = [
    ("handlers/views/__init__.py", "import bot.services.approvals", "Views only draw"),
    ("handlers/app.py", "import bot.adapters.redis.audit", "The Slack surface reaches"),
    ("bot/services/audit_trail.py", "import redis", "Services depend on ports"),
    ("bot/domain/errors.py", "import kubernetes", "The domain is pure"),
    ("bot/domain/errors.py", "import subprocess", "The domain is pure"),
    ("bot/domain/errors.py", "import bot.services.approvals", "Layers"),
    ("bot/services/audit_trail.py", "import handlers.app", "Layers"),
    ("bot/observability/metrics.py", "import bot.domain.errors", "Observability reports"),
    ("bot/runtime.py", "import tests.devkit.loopback", "The product never imports"),
]


@pytest.mark.parametrize(
    ("module", "statement", "contract"), VIOLATIONS, ids=[f"{v[0]}: {v[1]}" for v in VIOLATIONS]
)
def test_a_deliberate_violation_breaks_its_contract(
    tmp_path: Path, module: str, statement: str, contract: str
) -> None:
    tree = copy_of_the_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{statement}  # a deliberate violation\n")

    result = lint_imports(tree)

    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
