"""Small numeric helpers for the bench report."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from tests.support.processes import process_tree


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float], qs: Sequence[float] = (50, 99)) -> dict[str, float | int]:
    """{"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"} for latencies given in seconds."""
    out: dict[str, float | int] = {"n": len(seconds)}
    for q in qs:
        value = percentile(seconds, q)
        out[f"p{q:g}_ms"] = round(value * 1000, 2) if value is not None else float("nan")
    out["mean_ms"] = round(sum(seconds) / len(seconds) * 1000, 2) if seconds else float("nan")
    out["max_ms"] = round(max(seconds) * 1000, 2) if seconds else float("nan")
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the comm field: state is fields[0], so utime (14th overall) is fields[11].
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory of a live process (VmHWM from /proc/<pid>/status), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each process of the tree, by pid (subtract two readings per pid)."""
    out: dict[int, float] = {}
    for each in process_tree(pid):
        try:
            out[each] = cpu_seconds(each)
        except OSError:
            continue
    return out


def tree_peak_rss_mib(pid: int) -> float | None:
    """The sum of the tree's processes' peaks (an upper bound of the tree's peak)."""
    peaks = [peak_rss_mib(each) for each in process_tree(pid)]
    known = [peak for peak in peaks if peak is not None]
    return round(sum(known), 1) if known else None


def tree_pss_mib(pid: int) -> float | None:
    """Proportional set size of the tree now (Pss from /proc/<pid>/smaps_rollup): shared pages
    (the workers share the forkserver's preloaded modules) counted once overall."""
    total, seen = 0, False
    for each in process_tree(pid):
        try:
            with open(f"/proc/{each}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        seen = True
                        break
        except OSError:
            continue
    return round(total / 1024, 1) if seen else None
