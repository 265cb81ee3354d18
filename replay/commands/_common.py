"""Helpers shared by the replay command modules (argument types, log loading)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from replay.cli import CliError

if TYPE_CHECKING:
    from replay.logs import LogArrays

# replay.logs.FORMATS, spelled here so --help does not import pandas (a test keeps them equal)
FORMATS = ("jsonl", "csv", "parquet", "dsjson")


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


def add_sentinel_arguments(parser: argparse.ArgumentParser) -> None:
    """Follow the service's primary through Redis Sentinel, as the service does."""
    import os

    parser.add_argument("--sentinels", default=os.environ.get("REDIS_SENTINELS", ""), metavar="HOST:PORT,...",
                        help="Redis Sentinels naming the primary (default: $REDIS_SENTINELS); --redis then gives only password and database")
    parser.add_argument("--sentinel-master", default=os.environ.get("REDIS_SENTINEL_MASTER", "mymaster"),
                        help="the primary's name at the Sentinels (default: $REDIS_SENTINEL_MASTER or mymaster)")


def redis_client(args: argparse.Namespace, url: str, *, cluster: bool = False):
    """A client for ``url`` (or the primary the Sentinels name), with tool-sized timeouts."""
    from service.config import _host_ports
    from service.redis_conn import open_client

    try:
        sentinels = _host_ports(args.sentinels)
    except ValueError as exc:
        raise CliError(f"--sentinels: {exc}") from None
    return open_client(url, cluster=cluster, sentinels=sentinels, sentinel_master=args.sentinel_master, timeout_s=10.0)
