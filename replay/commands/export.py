"""`replay export --redis URL --out FILE`: the service's logged impressions, final rewards only.

By default every decision whose attribution window has closed, with its reward (0 when none
came); ``--include-open`` adds the open ones and the summary line says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from replay.cli import CliError
from replay.commands._common import add_sentinel_arguments, redis_client
from service.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", required=True, help="Redis URL of the service (e.g. redis://127.0.0.1:6379/0)")
    parser.add_argument("--out", required=True, help="output file: .jsonl, .csv or .parquet (.jsonl.gz, .csv.gz compressed); "
                                                     "with --partition-by, a folder")
    parser.add_argument("--partition-by", choices=("date",),
                        help="write partitioned Parquet into the --out folder, one date=YYYY-MM-DD/ folder per UTC day "
                             "(what evaluate --engine dask reads)")
    parser.add_argument("--prefix", default=os.environ.get("KEY_PREFIX", "aw"), help="the service's KEY_PREFIX (default: $KEY_PREFIX or aw)")
    parser.add_argument("--window", type=float, default=float(os.environ.get("ATTRIBUTION_WINDOW_S", Settings.attribution_window_s)),
                        help="attribution window in seconds (default: $ATTRIBUTION_WINDOW_S or 600)")
    parser.add_argument("--title", action="append", help="only this title (repeatable)")
    parser.add_argument("--include-open", action="store_true",
                        help="also export decisions whose window is still open (their reward is not final: usually 0)")
    parser.add_argument("--cluster", action="store_true", help="the URL names a node of a Redis Cluster")
    add_sentinel_arguments(parser)


CATALOG_SUFFIX = ":{catalog}:titles"


def _prefixes(client) -> list[str]:
    """KEY_PREFIXes with a catalog in this Redis (for the hint when the asked one has none)."""
    found = {k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match="*" + CATALOG_SUFFIX.replace("{", "\\{").replace("}", "\\}"), count=1000)}
    return sorted(k[: -len(CATALOG_SUFFIX)] for k in found)


def run(args: argparse.Namespace) -> int:
    import redis

    from replay.export import join_records, summary
    from replay.logs import LogSchemaError, detect_format, write_logs, write_partitioned
    from service.ids import ID_PATTERN
    from service.keys import Keys
    from service.store import RedisStore

    try:
        if not args.partition_by:
            detect_format(args.out)
    except LogSchemaError as exc:
        raise CliError(str(exc), "--out") from None
    if args.window <= 0:
        raise CliError("--window must be positive", "--window")
    for t in args.title or []:
        if not ID_PATTERN.fullmatch(t):
            raise CliError(f"--title {t!r} is not a valid title id", "--title")
    try:
        keys = Keys(args.prefix)
    except ValueError as exc:
        raise CliError(f"--prefix: {exc}", "--prefix") from None
    try:
        client = redis_client(args, args.redis, cluster=args.cluster)
        store = RedisStore(client, keys, attribution_window_s=int(args.window), log_maxlen=1)
        titles = args.title or store.logged_titles()
        entries = []
        for i, title in enumerate(titles, 1):
            start = "-"
            while True:
                page = store.read_log(title, start=start, count=10_000)
                entries += [fields for _id, fields in page]
                if len(page) < 10_000:
                    break
                start = "(" + page[-1][0]
            print(f"\rexport: {i}/{len(titles)} titles, {len(entries)} records", end="", file=sys.stderr, flush=True)
        if titles:
            print(file=sys.stderr)
        result = join_records(entries, now=time.time(), window_s=args.window, include_open=args.include_open)
        if result.decisions == 0:
            others = [p for p in _prefixes(client) if p != args.prefix]
            where = f"titles {', '.join(args.title)} under " if args.title else ""
            hint = (f"prefixes with a catalog in this Redis: {', '.join(others)} (pass --prefix)" if others
                    else "no prefix in this Redis has a catalog")
            raise CliError(f"no decisions logged for {where}prefix {args.prefix!r}; {hint}", "--prefix")
    except (redis.RedisError, OSError) as exc:
        raise CliError(f"cannot read from Redis at {args.redis}: {exc}", "--redis") from None
    except ValueError as exc:
        if isinstance(exc, CliError):
            raise
        raise CliError(f"bad --redis URL: {exc}", "--redis") from None
    try:
        if args.partition_by:
            files = write_partitioned(result.frame(), args.out)
            print(f"export: {len(files)} date folders under {args.out}", file=sys.stderr)
        else:
            write_logs(result.frame(), args.out)
    except LogSchemaError as exc:
        raise CliError(str(exc), "--out") from None
    print(summary(result, args.out, args.include_open), file=sys.stderr)
    return 0
