"""What a listener hands on after the ack, read without Slack or a cluster."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.domain import verbs as cmd
from bot.domain.targets import Actor
from handlers.handoff import Decide, Reply, RunCommand, interrupted_message

ALICE = Actor("U0ALICE", "alice", "C0DEPLOYS")
REPLY = Reply("https://hooks.slack.com/commands/T/1/x", "C0DEPLOYS", None)


def test_the_author_of_an_interrupted_change_sees_it_exactly_and_what_to_check() -> None:
    work = RunCommand(cmd.parse_command("restart web -n prod"), ALICE, REPLY)
    assert interrupted_message(work).text == (
        "The bot was interrupted while running `/rollout restart web -n prod`: it may or may not "
        "have taken effect. Check with `/rollout status` or `/rollout history` before trying "
        "again."
    )


def test_an_interrupted_click_is_named_as_a_noun() -> None:
    for verb, noun in (
        ("approve", "approval"),
        ("reject", "rejection"),
        ("cancel", "cancellation"),
    ):
        text = interrupted_message(Decide(verb, "a1b2", ALICE, "", REPLY)).text
        assert f"your {noun} of request `a1b2`" in text
        assert "`/rollout approvals`" in text


LISTENERS = {
    "handlers.slash_command",
    "handlers.approval_buttons",
    "handlers.progress_buttons",
    "handlers.canary_buttons",
    "handlers.promotion_buttons",
    "handlers.app",
}
WORKER_SIDE = ("handoff", "perform", "answers", "decisions")


def test_the_worker_side_imports_no_listener() -> None:
    """Listeners hand work to `handlers.perform`; what it performs never calls back into them
    (no import circle, and a worker process loads no listener)."""
    handlers = Path(__file__).resolve().parents[2] / "handlers"
    for name in WORKER_SIDE:
        tree = ast.parse((handlers / f"{name}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        imported |= {
            f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "handlers"
            for alias in node.names
        }
        assert not imported & LISTENERS, (name, imported & LISTENERS)
