"""`rollout-bot playground` runs the checkout's playground, and where there is none (an
installed wheel, the image) says in one line where it lives, with no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bot.__main__ as cli

REPO = Path(__file__).resolve().parents[2]
MESSAGE = (
    "rollout-bot: the playground is not installed with the bot; it runs from a checkout of "
    "the repository, with `make playground`\n"
)


def test_without_the_playground_it_names_make_playground(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "CHECKOUT", tmp_path)  # a directory without tests/playground
    assert cli.main(["playground", "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", MESSAGE)


def test_the_installed_bot_alone_says_so_in_its_own_process(tmp_path: Path) -> None:
    """What the image holds (bot/ and handlers/, nothing of tests/), run as the image runs it."""
    for package in ("bot", "handlers"):
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    done = subprocess.run(
        [sys.executable, "-m", "bot", "playground", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert (done.stdout, done.stderr) == ("", MESSAGE)


def test_in_a_checkout_it_hands_the_arguments_to_the_playground(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts the checkout first
    with pytest.raises(SystemExit) as exited:
        cli.main(["playground", "--help"])
    assert exited.value.code == 0
    assert "usage: rollout-bot playground" in capsys.readouterr().out
