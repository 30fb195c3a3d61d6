"""A rollout's progress message (bar, counts, verdict, and Roll back / Pause on a failure), the
call for a person when an automatic rollback failed too, and the notice of a change made
outside the bot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject

from bot.domain import kinds
from bot.domain.mrkdwn import code, escape
from bot.domain.status import RolloutStatus
from bot.domain.targets import Target
from bot.domain.tracking import TrackedRollout
from handlers.views.message import Message, code_block, context_block, cut, fit, section
from handlers.views.text import (
    duration,
    flags,
    image_list,
    in_cluster,
    pausable,
    time_of_day,
    word,
    workload_path,
)

ROLLBACK_ACTION = "progress_rollback"
PAUSE_ACTION = "progress_pause"
BAR_WIDTH = 20


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    if total <= 0:
        return "▓" * width
    filled = max(0, min(width, round(width * done / total)))
    return "▓" * filled + "░" * (width - filled)


def _coarse(seconds: float) -> float:
    """Elapsed time while running, in 5 s steps: the clock alone should not cause an update."""
    return seconds - seconds % 5


def progress_message(
    tracked: TrackedRollout,
    status: RolloutStatus,
    now: float,
    *,
    verdict: str | None = None,
    reasons: Sequence[str] = (),
    warnings: Sequence[str] = (),
    revision: int | None = None,
) -> Message:
    """One rollout's progress: bar, counts, kubectl's sentence, elapsed vs deadline, verdict.
    A failed rollout offers Roll back and Pause, tied to ``revision`` (none when unknown)."""
    desired = status.desired if status.desired is not None else 0
    elapsed = now - tracked.started_at
    kind = tracked.kind
    target = workload_path(tracked.namespace, kind, tracked.deployment)
    # Until the controller has observed the change, the counts are the previous revision's.
    starting = not verdict and status.observed_generation < status.generation
    if verdict == "succeeded":
        head = (
            f":white_check_mark: *{escape(tracked.title)}* — rollout *succeeded* in "
            f"{duration(elapsed)}"
        )
    elif verdict == "failed":
        head = f":x: *{escape(tracked.title)}* — rollout *failed* after {duration(elapsed)}"
    elif verdict:
        head = f":grey_question: *{escape(tracked.title)}* — {verdict}"
    elif status.paused:
        head = f":double_vertical_bar: *{escape(tracked.title)}* — paused"
    elif starting:
        head = f":hourglass_flowing_sand: *{escape(tracked.title)}* — starting"
    else:
        head = f":hourglass_flowing_sand: *{escape(tracked.title)}* — rolling out"
    counts = (
        f"`{progress_bar(status.updated, desired)}` {status.updated}/{desired} updated · "
        f"{status.ready} ready · {status.available} available"
    )
    old = status.total - status.updated
    if old > 0:
        counts += f" · {old} old still running"
    if status.terminating:
        counts += f" · {status.terminating} terminating"
    lines = [head, counts, f"_{escape(status.message)}_"]
    if starting:
        lines = [
            head,
            "_The rollout is starting: the controller has not picked up the change yet._",
        ]
    if not verdict:
        lines.append(
            f"elapsed {duration(_coarse(elapsed))} of the {tracked.deadline_seconds}s "
            + ("progress deadline" if kinds.has_progress_deadline(kind) else "limit the bot waits")
        )
    if reasons:
        lines.append("Pods are waiting on: " + ", ".join(f"`{escape(r)}`" for r in reasons))
    blocks_: list[Block] = [section("\n".join(lines))]
    if warnings:
        blocks_.append(section("*Recent warnings*\n" + code_block(list(warnings))))
    if verdict == "failed" and tracked.automatic:
        # The bot does not undo its own undo: a person decides, Pause is at hand.
        if revision is not None:
            blocks_.append(_pause_actions(tracked, revision))
    elif verdict == "failed" and tracked.on_failure == "rollback":
        # The bot rolls it back by itself: a Roll back button would offer it a second time.
        blocks_.append(
            context_block(
                ":rewind: Rolling back automatically (the approval rule's `on_failure: "
                "rollback`); what it does follows in this thread."
            )
        )
        if pausable(kind) and revision is not None:
            blocks_.append(_pause_actions(tracked, revision))
    elif verdict == "failed" and revision is None:
        pass  # a button not tied to a revision could act on a later one: none is offered
    elif verdict == "failed":
        value = button_value(tracked, revision)
        blocks_.append(
            ActionsBlock(
                block_id=f"failed:{tracked.id}"[:255],
                elements=[
                    ButtonElement(
                        text="Roll back",
                        action_id=ROLLBACK_ACTION,
                        value=value,
                        style="danger",
                        confirm=ConfirmObject(
                            title="Roll back?",
                            text=cut(
                                f"Undo {escape(target)} to its previous revision "
                                "(same policy and approvals as a typed undo).",
                                300,
                            ),
                            confirm="Roll back",
                            deny="Back",
                        ),
                    ),
                    *(
                        [ButtonElement(text="Pause", action_id=PAUSE_ACTION, value=value)]
                        if pausable(kind)
                        else []
                    ),
                ],
            )
        )
    summary = "starting" if starting else status.message
    text = f"{tracked.title}: {verdict or summary}"
    if reasons:
        text += " (" + ", ".join(reasons) + ")"
    return fit(text, blocks_)


def button_value(tracked: TrackedRollout, revision: int | None) -> str:
    """What a Roll back or Pause button carries: the same object (its kind and, with several
    clusters, its context: `CONTEXT|NAMESPACE/KIND/NAME`) and the revision it was posted for
    (`@7`), so a click after a newer deploy does not act on that one."""
    target = workload_path(tracked.namespace, tracked.kind, tracked.deployment)
    value = f"{tracked.context}|{target}" if tracked.context else target
    return f"{value}@{revision}" if revision is not None else value


def _pause_actions(tracked: TrackedRollout, revision: int | None) -> Block:
    value = button_value(tracked, revision)
    return ActionsBlock(
        block_id=f"person:{tracked.id}"[:255],
        elements=[ButtonElement(text="Pause", action_id=PAUSE_ACTION, value=value)],
    )


def needs_person_message(tracked: TrackedRollout, revision: int | None = None) -> Message:
    """The automatic rollback failed too: the bot stops here and asks for a person (Pause is
    offered while the workload is at ``revision``)."""
    target = f"{tracked.namespace}/{tracked.deployment}"
    text = (
        f":sos: The automatic rollback of `{code(target)}` failed too, so the bot stops here and "
        "rolls nothing back again: *a person is needed*. Pause it to keep it from changing "
        "while you look, then fix it with `/rollout set image` or `/rollout undo`."
    )
    actions = [_pause_actions(tracked, revision)] if revision is not None else []
    return fit(
        f"The automatic rollback of {target} failed too: a person is needed",
        [section(text), *actions],
    )


def outside_change_message(
    target: Target,
    revision: int,
    *,
    who: str,
    images_before: Sequence[tuple[str, str]],
    images_after: Sequence[tuple[str, str]],
    previous_revision: int | None,
    changed_at: datetime | None = None,
) -> Message:
    """`who` is what the cluster recorded (a field manager such as `kubectl-set`), never a
    Slack user: the bot cannot know who ran kubectl."""
    at = f" at {time_of_day(changed_at)}" if changed_at is not None else ""
    lines = [
        f":eyes: `{code(target)}`{in_cluster(target.context)} got revision *{revision}* from "
        "outside the bot",
        f"Changed by: field manager `{escape(who)}`{at}",
    ]
    if images_before != images_after:
        lines.append(
            f"Images: {escape(image_list(images_before))} → {escape(image_list(images_after))}"
        )
    if previous_revision is not None:
        lines.append(
            f"See the diff: `/rollout diff {word(target)} {previous_revision} {revision} "
            f"{flags(target)}`"
        )
    return fit(
        f"{target} got revision {revision} from outside the bot", [section("\n".join(lines))]
    )
