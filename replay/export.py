"""Join the service's decision and reward records into logged impressions (SPEC's log schema).

Rewards are appended to a title's stream only when they arrive inside the attribution window
(the service rejects later ones), so once a decision's window has closed its reward is final.
Each reward record carries the decision's aggregated reward so far (its title's
``reward_aggregation``: ``earliest`` logs one record, ``sum`` and ``max`` one per change, never
decreasing), so a decision's reward is the largest of its records', else 0. A decision whose
window is still open is left out whether or not a reward already came: keeping the rewarded open
ones and dropping the others would inflate every estimate (and ``sum``/``max`` may still raise
its reward). ``include_open`` exports them too (reward so far, usually 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

COLUMNS = ("event_id", "timestamp", "profile", "title", "artwork", "propensity", "reward", "policy", "candidates", "context", "segment")


@dataclass(frozen=True)
class ExportResult:
    rows: tuple[dict, ...]  # SPEC log records, sorted by (timestamp, event_id)
    decisions: int  # decision records read
    rewarded: int  # exported rows with a reward record
    still_open: int  # decisions whose window is still open (left out unless include_open)
    titles: int  # titles with at least one exported row

    def frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.rows), columns=list(COLUMNS))


def join_records(entries: Iterable[dict[str, str]], *, now: float, window_s: float, include_open: bool = False) -> ExportResult:
    """Rows from decoded stream entries (any order, any titles)."""
    decisions: list[dict] = []
    rewards: dict[str, float] = {}
    for fields in entries:
        kind = fields.get("type")
        if kind == "decision":
            decisions.append(json.loads(fields["record"]))
        elif kind == "reward":
            event_id = fields["event_id"]
            rewards[event_id] = max(rewards.get(event_id, 0.0), float(fields["reward"]))
    rows = []
    still_open = 0
    for rec in decisions:
        if now - float(rec["timestamp"]) < window_s:
            still_open += 1
            if not include_open:
                continue
        rec["reward"] = rewards.get(rec["event_id"], 0.0)
        rows.append({c: rec.get(c) for c in COLUMNS})
    rows.sort(key=lambda r: (float(r["timestamp"]), r["event_id"]))
    return ExportResult(
        rows=tuple(rows),
        decisions=len(decisions),
        rewarded=sum(1 for r in rows if r["event_id"] in rewards),
        still_open=still_open,
        titles=len({r["title"] for r in rows}),
    )


def summary(result: ExportResult, out: str, include_open: bool) -> str:
    """The one stderr line an export ends with: what was written and what was left out."""
    open_part = (
        f"{result.still_open} still inside their attribution window included with their reward so far (open: not final)"
        if include_open
        else f"{result.still_open} left out because their attribution window is still open (--include-open adds them)"
    )
    return (
        f"export: wrote {len(result.rows)} impressions ({result.rewarded} rewarded) for {result.titles} titles to {out}; "
        f"{result.decisions} decisions read, {open_part}"
    )
