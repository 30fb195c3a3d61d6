"""Roll back / Pause button values are read through the grammar: what the bot wrote comes back
as the same command; anything else is refused like mistyped text."""

from __future__ import annotations

import pytest

from bot.domain import verbs as cmd
from handlers.progress_buttons import rollback_or_pause


def test_a_deployment_button_is_an_undo_with_the_buttons_reason() -> None:
    assert rollback_or_pause("prod/web@7", rollback=True) == (
        cmd.Undo(name="web", namespace="prod", reason="rollout failed (Roll back button)"),
        7,
    )


def test_a_statefulset_button_in_a_named_cluster_keeps_kind_and_context() -> None:
    command = rollback_or_pause("west|prod/statefulset/db@12", rollback=False)
    assert command == (
        cmd.Pause(name="db", kind="statefulset", namespace="prod", context="west"),
        12,
    )


def test_a_button_of_an_older_version_names_no_revision() -> None:
    assert rollback_or_pause("prod/web", rollback=False)[1] is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "prod/",
        "/web",
        "prod/Web Server",
        "prod/web;rm",
        "prod/kind/web",
        "x" * 300,
        "prod/web@",
        "prod/web@0",
        "prod/web@7\n",
        "prod/web@-1",
        "prod/web@7@8",
    ],
)
def test_a_forged_value_is_refused(value: str) -> None:
    with pytest.raises(cmd.CommandError):
        rollback_or_pause(value, rollback=True)
