"""``replay abtest`` on logs kept as many Parquet files, from per-(profile, arm) partial tables.

Every number the analysis reports is a function of one small table: per (profile, arm) the
impressions, the clicked impressions, the first timestamp and the first position in the log
(partition, row). Each partition gives its table (``_partial``, after the ``--policy`` and
``--title`` selection); tables merge by adding counts and taking minima (``merge``: associative
and commutative, so a cluster merges them pairwise in any order), and the merged table holds a
row per profile and arm it saw: bounded by the number of profiles, not of impressions.

From it: ``unit_counts`` gives per arm (units, clicks), the warnings and the SRM's profile counts
as ``units_from_impressions`` does on the whole frame (a profile's first arm is the one at its
smallest position, as ``drop_duplicates`` keeps the first row of the concatenated partitions);
``per_profile`` the per-profile arms, click and first timestamp the sequential analysis counts
per day. The per-arm range of logged propensities (the designed split) merges the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from replay.abtest import ABTestInputError, crossover_warning, repeat_warning
from replay.partitioned import Runner, local_runner

POSITION_BITS = 40  # a row's position: partition index << POSITION_BITS | row in the partition
_KEYS = ["profile", "arm"]
_MERGE = {"rows": "sum", "clicks": "sum", "first_ts": "min", "first_pos": "min"}


@dataclass(frozen=True)
class Selected:
    """The merged partial tables of the selected impressions."""

    has_policy: bool  # some partition has a policy column
    rows: int  # impressions of the chosen policy (all impressions without --policy)
    titles: frozenset[str]  # their titles
    table: pd.DataFrame  # profile, arm, rows, clicks, first_ts, first_pos (selected title only)
    propensity: pd.DataFrame  # per arm: min, max of the logged propensity


def _partial(path: Path, index: int, policy: str | None, title: str | None) -> Selected:
    from replay.logs import load_logs

    frame = load_logs(path)
    has_policy = "policy" in frame.columns
    if policy is not None:
        frame = frame[frame["policy"] == policy] if has_policy else frame.iloc[:0]
    titles = frozenset(frame["title"].astype(str).unique().tolist())
    rows = len(frame)
    if title is not None:
        frame = frame[frame["title"] == title]
    arm = frame["artwork"].astype(str).to_numpy(dtype=object)
    table = pd.DataFrame({
        "profile": frame["profile"].astype(str).to_numpy(dtype=object), "arm": arm,
        "rows": np.ones(len(frame), dtype=np.int64),
        "clicks": (frame["reward"].astype(float).to_numpy() > 0).astype(np.int64),
        "first_ts": frame["timestamp"].to_numpy(dtype=float),
        "first_pos": (np.int64(index) << POSITION_BITS) + np.arange(len(frame), dtype=np.int64),
    })
    propensity = pd.DataFrame({"arm": arm, "p": frame["propensity"].to_numpy(dtype=float)}).groupby("arm")["p"].agg(
        ["min", "max"])
    return Selected(has_policy, rows, titles, _grouped(table), propensity)


def _grouped(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby(_KEYS, sort=False).agg(_MERGE).reset_index()


def merge(a: Selected, b: Selected) -> Selected:
    """Two partial tables as one (counts add, first timestamp and position are minima)."""
    propensity = pd.concat([a.propensity, b.propensity]).groupby(level=0).agg({"min": "min", "max": "max"})
    return Selected(a.has_policy or b.has_policy, a.rows + b.rows, a.titles | b.titles,
                    _grouped(pd.concat([a.table, b.table], ignore_index=True)), propensity)


def select_partitioned(paths: Sequence[Path], policy: str | None, title: str | None, *, runner: Runner = local_runner,
                       on_progress: Callable[[str, int, int], None] | None = None) -> Selected:
    """The partitions' merged table; ``on_progress("partitions", done, total)``."""
    index = {str(p): i for i, p in enumerate(paths)}
    done = None if on_progress is None else (lambda d, total: on_progress("partitions", d, total))
    return runner(_partial_at, list(paths), (index, policy, title), done, merge)


def _partial_at(path: Path, index: dict[str, int], policy: str | None, title: str | None) -> Selected:
    return _partial(path, index[str(path)], policy, title)


def per_profile(table: pd.DataFrame) -> pd.DataFrame:
    """Per profile: its arm (the first seen), how many arms, whether it clicked, its first timestamp."""
    ordered = table.sort_values("first_pos", kind="stable")
    return ordered.assign(clicked=ordered["clicks"] > 0).groupby("profile", sort=False).agg(
        arm=("arm", "first"), arms=("arm", "nunique"), clicked=("clicked", "any"), first=("first_ts", "min"))


def unit_counts(table: pd.DataFrame, unit: str) -> tuple[dict[str, tuple[int, int]], tuple[str, ...], dict | None]:
    """({arm: (units, clicks)}, warnings, SRM profile counts or None) as ``units_from_impressions``."""
    if table.empty:
        raise ABTestInputError("impressions", "zero users: the logs hold no impressions")
    per = per_profile(table)
    if unit == "impression":
        sums = table.groupby("arm").agg(rows=("rows", "sum"), clicks=("clicks", "sum"))
        counts = {str(a): (int(r.rows), int(r.clicks)) for a, r in sums.iterrows()}
        first = per["arm"].value_counts()
        return counts, (repeat_warning(int(sums["rows"].sum()) - len(per)),), {str(a): int(c) for a, c in first.items()}
    crossover = per["arms"] > 1
    warns = (crossover_warning(int(crossover.sum()), len(per)),) if crossover.any() else ()
    kept = per[~crossover]
    if kept.empty:
        raise ABTestInputError("impressions", "zero users: every profile was shown more than one arm")
    sums = kept.groupby("arm").agg(n=("clicked", "size"), clicks=("clicked", "sum"))
    return {str(a): (int(r.n), int(r.clicks)) for a, r in sums.iterrows()}, warns, None
