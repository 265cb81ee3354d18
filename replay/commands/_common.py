"""Helpers shared by the replay command modules (argument types, log loading)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from replay.cli import CliError

if TYPE_CHECKING:
    from replay.logs import LogArrays

# replay.logs.FORMATS, spelled here so --help does not import pandas (a test keeps them equal)
FORMATS = ("jsonl", "csv", "parquet")


def add_logs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", metavar="LOGS", help="logged impressions (.jsonl, .csv or .parquet)")
    parser.add_argument("--format", choices=FORMATS, help="log format (default: from the file name)")


def load(args: argparse.Namespace, *, validate_event_ids: bool = False) -> LogArrays:
    """The logs as arrays; Parquet event ids are read only when asked (see ``load_logs``)."""
    from replay.logs import LogSchemaError, encode_logs, load_logs

    try:
        return encode_logs(load_logs(args.logs, args.format, keep_event_id=validate_event_ids))
    except LogSchemaError as exc:
        raise CliError(str(exc)) from None


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {value}")
    return value
