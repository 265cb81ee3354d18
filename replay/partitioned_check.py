"""``replay check`` on logs kept as many Parquet files: ``check_propensities``'s report, group by group.

The check is per (title, logging policy) group and needs the group's rows in time order: the
imputed null takes another artwork's propensity from the nearest row in time that served it,
which is no sum over rows. Two passes, one task per item:

1. per partition (``_scan``): the vocabulary ``replay.partitioned`` builds (each title's artworks
   in the in-memory engine's order, segments) and the partition's groups;
2. per group (``_check_one``): a worker reads the group's rows out of each partition in turn
   (``_group_logs``: a Parquet read filtered on title and policy, of the columns the check
   needs), puts them in time order (ties: partition order, then file order, as the in-memory
   engine's stable sort of the concatenated partitions) and runs ``check_group`` on them.

A worker thus holds a partition in the first pass and one group's rows in the second, never the
whole log; the second pass reads every partition once per group (the filter keeps it to the
group's rows). Monte-Carlo draws come from the group's key (``integrity.group_rng``), so a group
draws the same numbers on whichever worker it runs; Holm's adjustment needs only the p-values.
Event ids are not validated across partitions (nor by the pandas engine on partitioned input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from replay.integrity import IntegrityReport, check_alpha, check_group, finish_report, mc_base, mc_draws
from replay.logs import UNNAMED_POLICY
from replay.partitioned import Runner, Vocabulary, _load, _scan, local_runner, vocabulary


def _scan_groups(path: Path) -> dict:
    logs = _load(path)
    pairs = np.unique(logs.title.astype(np.int64) * len(logs.logging_policies) + logs.logging_policy)
    groups = {divmod(int(g), len(logs.logging_policies)) for g in pairs}
    return {**_scan(path), "groups": {(logs.titles[t], logs.logging_policies[p]) for t, p in groups}}


def _group_logs(path: Path, title: str, policy: str):
    """One partition's rows of the group, encoded; None when it has none. From Parquet only the
    check's columns and the group's rows are read (the scan pass validated the whole partition)."""
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from replay.logs import REQUIRED, detect_format, encode_logs, load_logs, validate_logs

    if detect_format(path) == "parquet":
        names = pq.read_schema(path).names
        columns = [c for c in (*REQUIRED, "policy", "segment") if c in names and c != "event_id"]
        keep = pc.field("title") == title
        if "policy" in names:  # a missing policy reads as UNNAMED_POLICY (encode_logs)
            same = pc.field("policy") == policy
            keep &= (same | pc.field("policy").is_null()) if policy == UNNAMED_POLICY else same
        elif policy != UNNAMED_POLICY:
            return None
        frame = pq.read_table(path, columns=columns, filters=keep).to_pandas()
        if len(frame) == 0:
            return None
        frame = validate_logs(frame, source=str(path), event_id_skipped=True)
    else:  # one JSON Lines or CSV file given to --engine dask
        frame = load_logs(path, keep_event_id=False)
        named = frame["policy"].astype(object).fillna(UNNAMED_POLICY) if "policy" in frame else UNNAMED_POLICY
        frame = frame[(frame["title"] == title).to_numpy() & (pd.Series(named, index=frame.index) == policy).to_numpy()]
        if len(frame) == 0:
            return None
    return encode_logs(frame)


def _check_one(group: tuple[str, str], paths: Sequence[Path], vocab: Vocabulary, base: int, draws: int):
    title, policy = group
    arms = vocab.arms[vocab.titles.index(title)]
    parts = []
    for path in paths:
        logs = _group_logs(path, title, policy)
        if logs is None:
            continue
        slot = np.array([arms.index(a) for a in logs.arms[0]], dtype=np.int64)
        seg = np.array([vocab.segments.index(s) for s in logs.segments], dtype=np.int64)
        parts.append((logs.row_key.view(np.float64), slot[logs.action], logs.propensity, seg[logs.segment],
                      np.asarray(logs.profiles, dtype=object)[logs.profile]))
    ts, action, mu, segment, profile = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    order = np.argsort(ts, kind="stable")
    return check_group(title, arms, policy, action[order], mu[order], segment[order] if vocab.has_segment else None,
                       profile[order], base, draws)


def check_partitioned(paths: Sequence[Path], alpha: float = 0.01, seed: int | None = None, *,
                      runner: Runner = local_runner,
                      on_progress: Callable[[str, int, int], None] | None = None) -> IntegrityReport:
    """``check_propensities`` of the partitions' rows together (``rng=default_rng(seed)``, seed 0 by
    default), without loading them together."""
    check_alpha(alpha)

    def progress(stage: str):
        return None if on_progress is None else (lambda done, total: on_progress(stage, done, total))

    scans = runner(_scan_groups, paths, (), progress("scan"))
    vocab = vocabulary(scans)
    groups = sorted(set().union(*(s["groups"] for s in scans)))  # the in-memory engine's (title, policy) order
    base = mc_base(np.random.default_rng(0 if seed is None else seed))
    checks = runner(_check_one, groups, (list(paths), vocab, base, mc_draws(len(groups), alpha)), progress("groups"))
    return finish_report(list(checks), alpha)
