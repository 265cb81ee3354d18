"""Write logged impressions (SPEC's log schema) as JSON Lines, CSV or Parquet, by file suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ("event_id", "timestamp", "profile", "title", "artwork", "propensity", "reward", "policy", "candidates", "context", "segment")


class LogWriteError(ValueError):
    pass


def format_of(path: str | Path) -> str:
    name = str(path).lower()
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise LogWriteError(f"cannot tell the format of {path}: use a .jsonl, .csv or .parquet file name")


def write_logs(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` (one row per decision) in the format its suffix names."""
    fmt = format_of(path)
    columns = [c for c in COLUMNS if c in frame.columns]
    frame = frame[columns]
    if fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "csv":
        out = frame.copy()
        for col in ("candidates", "context"):  # lists and objects travel as JSON in CSV (SPEC)
            if col in out.columns:
                out[col] = out[col].map(lambda v: json.dumps(v, separators=(",", ":")) if v is not None else "")
        out.to_csv(path, index=False)
    else:
        out = frame.copy()
        if "context" in out.columns:  # Parquet needs one struct type; free-form objects travel as JSON text
            out["context"] = out["context"].map(lambda v: json.dumps(v, separators=(",", ":")) if v is not None else None)
        out.to_parquet(path, index=False)
