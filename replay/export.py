"""Join the service's decision and reward records into logged impressions (SPEC's log schema).

Rewards are appended to a title's stream only when they arrive inside the attribution window
(the service rejects later ones). Each reward record carries the decision's aggregated reward
so far (its title's ``reward_aggregation``: ``earliest`` logs one record, ``sum`` and ``max``
one per change, never decreasing), so a decision's reward is the largest of its records', else
0. Decisions whose window is still open have no final reward yet (none, or one that ``sum`` or
``max`` may still raise): they are left out (and counted), never exported with a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class ExportResult:
    frame: pd.DataFrame
    decisions: int
    rewarded: int
    still_open: int


def join_records(entries: Iterable[dict[str, str]], *, now: float, window_s: float, include_open: bool = False) -> ExportResult:
    """Rows from decoded stream entries (any order, any titles)."""
    decisions: list[dict] = []
    rewards: dict[str, float] = {}
    final: set[str] = set()  # rewarded under ``earliest``: no later record can change it
    for fields in entries:
        kind = fields.get("type")
        if kind == "decision":
            decisions.append(json.loads(fields["record"]))
        elif kind == "reward":
            event_id = fields["event_id"]
            rewards[event_id] = max(rewards.get(event_id, 0.0), float(fields["reward"]))
            if fields.get("aggregation", "earliest") == "earliest":
                final.add(event_id)
    rows = []
    still_open = 0
    for rec in decisions:
        if rec["event_id"] not in final and now - float(rec["timestamp"]) < window_s:
            still_open += 1
            if not include_open:
                continue
        rec["reward"] = rewards.get(rec["event_id"], 0.0)
        rows.append(rec)
    frame = pd.DataFrame(rows, columns=["event_id", "timestamp", "profile", "title", "artwork", "propensity", "reward", "policy", "candidates", "context", "segment"])
    frame = frame.sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)
    return ExportResult(frame=frame, decisions=len(decisions), rewarded=sum(1 for r in rows if r["event_id"] in rewards), still_open=still_open)
