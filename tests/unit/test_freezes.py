"""Change windows: the window arithmetic on fixed clocks (daylight saving included), what a
refused user reads, and the policy's `freezes` and `break_glass` with file:line errors."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from bot.domain.freezes import (
    ActiveFreeze,
    FixedWindow,
    WeeklyWindow,
    describe_duration,
    describe_until,
    parse_duration,
    parse_weekly_point,
    refusal_message,
)
from bot.domain.policy import PolicyError, load_policy

pytestmark = pytest.mark.timeout(60)

# Fri 18:00 to Mon 08:00 in Berlin.
WEEKEND = WeeklyWindow(4, time(18, 0), 0, time(8, 0), "Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("1m", 60), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("2H", 7200)],
)
def test_durations_as_the_issue_writes_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "2x", "h", "-1h", "1.5h", "2 h"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None


def test_weekly_points_take_short_and_long_day_names() -> None:
    assert parse_weekly_point("Fri 18:00") == (4, time(18, 0))
    assert parse_weekly_point("monday 8:05") == (0, time(8, 5))
    for bad in ("Fry 18:00", "Fri 24:00", "Fri 18", "18:00"):
        with pytest.raises(ValueError):
            parse_weekly_point(bad)


# --- weekly windows ---------------------------------------------------------------------------


def test_a_weekend_window_covers_friday_evening_to_monday_morning_berlin_time() -> None:
    # Friday 2026-06-05 18:00 CEST is 16:00 UTC; Monday 08:00 CEST is 06:00 UTC.
    assert WEEKEND.covering(utc(2026, 6, 5, 15, 59)) is None
    assert WEEKEND.covering(utc(2026, 6, 5, 16, 0)) == (utc(2026, 6, 5, 16), utc(2026, 6, 8, 6))
    assert WEEKEND.covering(utc(2026, 6, 7, 12, 0)) == (utc(2026, 6, 5, 16), utc(2026, 6, 8, 6))
    assert WEEKEND.covering(utc(2026, 6, 8, 6, 0)) is None
    assert WEEKEND.covering(utc(2026, 6, 10, 12, 0)) is None


def test_a_weekend_across_the_spring_change_ends_at_eight_local_which_is_an_hour_earlier_utc() -> (
    None
):
    # Berlin moves from CET (+1) to CEST (+2) on Sunday 2026-03-29.
    span = WEEKEND.covering(utc(2026, 3, 28, 12, 0))
    assert span == (utc(2026, 3, 27, 17, 0), utc(2026, 3, 30, 6, 0))
    assert WEEKEND.covering(utc(2026, 3, 30, 6, 30)) is None  # 08:30 CEST: over
    assert WEEKEND.covering(utc(2026, 3, 30, 5, 30)) is not None  # 07:30 CEST: still frozen


def test_a_weekend_across_the_autumn_change_ends_at_eight_local_which_is_an_hour_later_utc() -> (
    None
):
    # Berlin moves from CEST (+2) to CET (+1) on Sunday 2026-10-25.
    span = WEEKEND.covering(utc(2026, 10, 24, 12, 0))
    assert span == (utc(2026, 10, 23, 16, 0), utc(2026, 10, 26, 7, 0))
    assert WEEKEND.covering(utc(2026, 10, 26, 6, 30)) is not None  # 07:30 CET: still frozen
    # Its length is the wall-clock 62 hours plus the hour given back.
    assert span[1] - span[0] == timedelta(hours=63)


def test_a_window_starting_in_the_hour_that_is_skipped_starts_when_the_clock_jumps() -> None:
    # Sunday 02:30 does not exist in Berlin on 2026-03-29 (02:00 -> 03:00).
    window = WeeklyWindow(6, time(2, 30), 6, time(4, 0), "Europe/Berlin")
    start, end = window.next_after(utc(2026, 3, 28, 0, 0))
    assert start == utc(2026, 3, 29, 1, 30)  # read as 02:30 CET, i.e. 03:30 CEST
    assert end == utc(2026, 3, 29, 2, 0)  # 04:00 CEST


def test_the_next_window_is_the_following_week_while_one_is_in_force() -> None:
    now = utc(2026, 6, 6, 12, 0)
    assert WEEKEND.next_after(now) == (utc(2026, 6, 12, 16, 0), utc(2026, 6, 15, 6, 0))
    assert WEEKEND.next_after(utc(2026, 6, 3, 12, 0)) == (
        utc(2026, 6, 5, 16, 0),
        utc(2026, 6, 8, 6, 0),
    )


def test_a_window_within_one_day_and_one_wrapping_the_whole_week() -> None:
    nights = WeeklyWindow(2, time(22, 0), 2, time(23, 0), "UTC")
    assert nights.covering(utc(2026, 6, 3, 22, 30)) == (utc(2026, 6, 3, 22), utc(2026, 6, 3, 23))
    assert nights.covering(utc(2026, 6, 3, 23, 0)) is None
    # Same day, end before start: Wednesday 23:00 to the next Wednesday 22:00.
    almost_always = WeeklyWindow(2, time(23, 0), 2, time(22, 0), "UTC")
    assert almost_always.covering(utc(2026, 6, 8, 12, 0)) == (
        utc(2026, 6, 3, 23),
        utc(2026, 6, 10, 22),
    )


def test_a_fixed_window_is_in_force_between_its_timestamps_only() -> None:
    window = FixedWindow(utc(2026, 11, 26), utc(2026, 11, 30))
    assert window.covering(utc(2026, 11, 25, 23, 59)) is None
    assert window.covering(utc(2026, 11, 26)) == (utc(2026, 11, 26), utc(2026, 11, 30))
    assert window.covering(utc(2026, 11, 30)) is None
    assert window.next_after(utc(2026, 11, 1)) == (utc(2026, 11, 26), utc(2026, 11, 30))
    assert window.next_after(utc(2026, 12, 1)) is None


# --- what a refused user reads ----------------------------------------------------------------


def test_the_end_is_told_in_the_freezes_zone_and_as_a_distance() -> None:
    now = utc(2026, 6, 5, 19, 0)  # Friday 21:00 in Berlin
    end = utc(2026, 6, 8, 6, 0)  # Monday 08:00 in Berlin
    assert describe_until(end, "Europe/Berlin", now) == "until Mon 08:00 Europe/Berlin, in 2 days"
    assert describe_duration(timedelta(minutes=90)) == "2 hours"
    assert describe_duration(timedelta(minutes=45)) == "45 minutes"
    assert describe_duration(timedelta(seconds=30)) == "30 seconds"
    assert describe_duration(timedelta(days=1)) == "1 day"
    far = describe_until(utc(2026, 11, 30), "UTC", utc(2026, 11, 1))
    assert far == "until Mon 30 Nov 2026 00:00 UTC, in 29 days"


def test_a_refusal_names_the_freeze_its_reason_end_what_still_works_and_break_glass() -> None:
    freeze = ActiveFreeze(
        name="weekend",
        source="policy",
        scope="prod",
        starts_at=utc(2026, 6, 5, 16),
        ends_at=utc(2026, 6, 8, 6),
        timezone="Europe/Berlin",
        allow=("undo", "pause"),
        reason="no changes over the weekend",
    )
    text = refusal_message(freeze, "set-image", "prod", utc(2026, 6, 5, 19))
    assert "`prod` is frozen by *weekend* (no changes over the weekend)" in text
    assert "until Mon 08:00 Europe/Berlin, in 2 days" in text
    assert "*set-image* was refused and nothing was changed" in text
    assert "`undo`, `pause` and reads still work" in text
    assert '--break-glass "why it cannot wait"' in text
    unbreakable = refusal_message(freeze, "scale", "prod", utc(2026, 6, 5, 19), break_glass=False)
    assert "--break-glass" not in unbreakable
    assert "cannot be broken from Slack: wait for its end" in unbreakable


# --- the policy -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_issues_example_loads(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            freezes:
              - name: weekend
                namespaces: ["prod"]
                weekly: {from: "Fri 18:00", to: "Mon 08:00", timezone: "Europe/Berlin"}
              - name: black-friday
                namespaces: ["*"]
                from: "2026-11-26T00:00:00Z"
                to: 2026-11-30T00:00:00Z
                allow: [undo, pause]
            break_glass:
              approvers: ["S0ONCALL"]
              approvals: 1
            """,
        )
    )
    weekend, black_friday = policy.freezes
    assert weekend.window() == WEEKEND
    assert weekend.allow == ["undo", "pause"]
    assert black_friday.window() == FixedWindow(utc(2026, 11, 26), utc(2026, 11, 30))
    assert black_friday.covers("anything") and not weekend.covers("staging")
    assert policy.break_glass is not None and policy.break_glass.approvers == ["S0ONCALL"]
    assert "S0ONCALL" in policy.referenced_groups()


def test_freeze_and_break_glass_mistakes_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        freezes:
          - name: weekend
            namespaces: [prod]
            weekly: {from: "Fry 18:00", to: "Mon 08:00", timezone: "Europe/Berlim"}
          - name: sale
            namespaces: ["*"]
            from: 2026-11-26T00:00:00
            to: "2026-11-20T00:00:00Z"
            allow: [status]
          - name: sale
            namespaces: [prod]
          - name: both
            namespaces: [prod]
            weekly: {from: "Fri 18:00", to: "Mon 08:00", timezone: UTC}
            from: "2026-11-26T00:00:00Z"
            to: "2026-11-30T00:00:00Z"
          - name: typo
            namespaces: [prod]
            weekly: {from: "Fri 18:00", to: "Mon 08:00", timezone: UTC}
            until: tomorrow
        break_glass:
          approvers: [U0BOB]
          approvals: 2
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    found = [(p.line, p.field, p.message) for p in caught.value.problems]
    text = "\n".join(str(p) for p in caught.value.problems)
    assert all(p.file == str(path) for p in caught.value.problems)
    assert (4, "freezes[0].weekly.from") in [(line, field) for line, field, _ in found]
    assert f"{path}:4: freezes[0].weekly.timezone: `Europe/Berlim` is not an IANA time zone" in text
    assert f"{path}:7: freezes[1].from: `2026-11-26 00:00:00` has no time zone" in text
    assert f"{path}:9: freezes[1].allow[0]: `status` is not a change a freeze could stop" in text
    assert f"{path}:10: freezes[2]: needs a window" in text
    assert f"{path}:12: freezes[3]: give either `weekly` or `from` and `to`, not both" in text
    assert f"{path}:20: freezes[4].until: unknown key `until`" in text
    assert f"{path}:22: break_glass: `approvals` is 2 but only 1 approver is listed" in text


def test_freeze_names_must_differ_and_a_fixed_window_must_end_after_it_starts(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """\
        freezes:
          - name: sale
            namespaces: ["*"]
            from: "2026-11-26T00:00:00Z"
            to: "2026-11-20T00:00:00Z"
          - name: sale
            namespaces: [prod]
            weekly: {from: "Fri 18:00", to: "Fri 18:00", timezone: UTC}
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert f"{path}:2: freezes[0]: `from` must be before `to`" in text
    assert f"{path}:8: freezes[1].weekly: `from` and `to` are the same moment" in text
    twice = write(
        tmp_path,
        """\
        freezes:
          - {name: sale, namespaces: ["*"], from: "2026-11-26T00:00:00Z", to: "2026-11-27T00:00Z"}
          - {name: sale, namespaces: [prod], from: "2026-11-28T00:00:00Z", to: "2026-11-29T00:00Z"}
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(twice)
    assert str(caught.value) == (
        f"{twice}:2: freezes: freeze names must differ; `sale` is used more than once"
    )
