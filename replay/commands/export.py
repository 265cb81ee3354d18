"""`python -m replay export --redis URL --out FILE`: the service's logged impressions."""

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
    parser.add_argument("--out", required=True, help="output file: .jsonl, .csv or .parquet")
    parser.add_argument("--prefix", default=os.environ.get("KEY_PREFIX", "aw"), help="the service's KEY_PREFIX (default: $KEY_PREFIX or aw)")
    parser.add_argument("--window", type=float, default=float(os.environ.get("ATTRIBUTION_WINDOW_S", Settings.attribution_window_s)),
                        help="attribution window in seconds (default: $ATTRIBUTION_WINDOW_S or 600)")
    parser.add_argument("--title", action="append", help="only this title (repeatable)")
    parser.add_argument("--include-open", action="store_true", help="also export decisions whose window is still open (reward 0 so far)")
    parser.add_argument("--cluster", action="store_true", help="the URL names a node of a Redis Cluster")
    add_sentinel_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import redis

    from replay.export import join_records
    from replay.log_writer import LogWriteError, format_of, write_logs
    from service.ids import ID_PATTERN
    from service.keys import Keys
    from service.store import RedisStore

    try:
        format_of(args.out)
    except LogWriteError as exc:
        raise CliError(str(exc)) from None
    if args.window <= 0:
        raise CliError("--window must be positive")
    for t in args.title or []:
        if not ID_PATTERN.fullmatch(t):
            raise CliError(f"--title {t!r} is not a valid title id")
    try:
        keys = Keys(args.prefix)
    except ValueError as exc:
        raise CliError(str(exc)) from None
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
        print(file=sys.stderr)
    except (redis.RedisError, OSError) as exc:
        raise CliError(f"cannot read from Redis at {args.redis}: {exc}") from None
    except ValueError as exc:
        raise CliError(f"bad --redis URL: {exc}") from None
    result = join_records(entries, now=time.time(), window_s=args.window, include_open=args.include_open)
    try:
        write_logs(result.frame, args.out)
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    print(
        f"export: wrote {len(result.frame)} impressions ({result.rewarded} rewarded) to {args.out}; "
        f"{result.still_open} decisions still inside their attribution window "
        + ("included with reward 0" if args.include_open else "left out (use --include-open to include)"),
        file=sys.stderr,
    )
    return 0
