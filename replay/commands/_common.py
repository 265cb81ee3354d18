"""Helpers shared by the replay command modules (argument types, log loading)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from replay.cli import CliError

if TYPE_CHECKING:
    from replay.logs import LogArrays

# replay.logs.FORMATS, spelled here so --help does not import pandas (a test keeps them equal)
FORMATS = ("jsonl", "csv", "parquet", "dsjson")


# Partitioned input at least this big runs on the Dask engine when --engine is auto.
AUTO_DASK_BYTES = 256 * 2**20
ENGINES = ("auto", "pandas", "dask")


def add_logs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", metavar="LOGS", help="logged impressions (.jsonl, .csv or .parquet)")
    parser.add_argument("--format", choices=FORMATS, help="log format (default: from the file name)")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="pandas: load the log in memory; dask: per-partition sums on a Dask cluster, for a folder "
                             "or glob of Parquet files (hive folders such as date=2026-11-20/); auto (default): dask "
                             f"for partitioned input of {AUTO_DASK_BYTES >> 20} MB or more, else pandas")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --engine dask: a running Dask scheduler (tcp://host:8786); default: a local "
                             "cluster, one worker per core")


def choose_engine(args: argparse.Namespace) -> tuple[str, list | None, str]:
    """("pandas" or "dask", the partition files or None for one file, the line saying which: the
    command prints it on stderr once it succeeded, so an error stays one line)."""
    from pathlib import Path

    from replay.partitioned import PartitionError, list_partitions

    spec = args.logs
    single = Path(spec).is_file()
    try:
        paths = None if single else list_partitions(spec)
    except PartitionError as exc:
        raise CliError(str(exc)) from None
    size = sum(p.stat().st_size for p in paths) if paths else Path(spec).stat().st_size
    engine = args.engine
    if engine == "auto":
        engine = "dask" if paths and size >= AUTO_DASK_BYTES else "pandas"
    if engine == "dask" and paths is None:
        paths = [Path(spec)]
    files = f"{len(paths)} files, " if paths else ""
    return engine, paths, f"engine: {engine} ({files}{size / 2**20:.0f} MB)"


def load_many(paths: list, args: argparse.Namespace) -> LogArrays:
    """Several log files as one (the pandas engine on partitioned input)."""
    import pandas as pd

    from replay.logs import LogSchemaError, encode_logs, load_logs

    try:
        return encode_logs(pd.concat([load_logs(p, args.format, keep_event_id=False) for p in paths],
                                     ignore_index=True))
    except LogSchemaError as exc:
        raise CliError(str(exc)) from None


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
