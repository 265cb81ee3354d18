"""Ops command line: ``python -m service COMMAND``.

Talks to Redis directly through ``RedisStore`` (same keys, same ``REDIS_URL``/``KEY_PREFIX``
settings as the web workers). Catalog changes bump the catalog version, so every worker serves
them within a second. Bad input or an unreachable Redis: one ``error:`` line, exit status 1
(2 for a malformed command line), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import NoReturn, TextIO

from service.catalog import POLICIES, Title, load_catalog_file, parse_title
from service.config import ConfigError, Settings, load_settings
from service.errors import ServiceError
from service.keys import Keys
from service.redis_conn import STORE_ERRORS, connect
from service.store import RedisStore

# A command line can wait longer for Redis than a request on the decision path.
MIN_CLI_TIMEOUT_S = 2.0


class CommandError(Exception):
    """A problem the operator can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `python -m service --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m service", description="Ops commands over the service's Redis state.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    stats = sub.add_parser("stats", help="arm statistics per title, as a table")
    stats.add_argument("titles", nargs="*", metavar="TITLE", help="titles to show (default: all)")
    stats.add_argument("--json", action="store_true", help="print the /stats JSON instead of a table")
    reset = sub.add_parser("reset", help="forget a title's arm statistics and traffic history (asks for confirmation)")
    reset.add_argument("title", metavar="TITLE")
    reset.add_argument("--yes", action="store_true", help="do not ask")
    policy = sub.add_parser("set-policy", help="set the policy in force for a title")
    policy.add_argument("title", metavar="TITLE")
    policy.add_argument("policy", metavar="POLICY", help=", ".join(POLICIES))
    pin = sub.add_parser("pin", help="always serve one artwork (policy fixed, artwork made the default)")
    pin.add_argument("title", metavar="TITLE")
    pin.add_argument("artwork", metavar="ARTWORK")
    load = sub.add_parser("load-catalog", help="create or replace the titles of a catalog file")
    load.add_argument("path", metavar="FILE", help='JSON file {"titles": [...]} as data/demo_catalog.json')
    export = sub.add_parser("export-catalog", help="write the stored catalog with its secret A/B salts (for replay's ab:CATALOG)")
    export.add_argument("path", metavar="FILE", help="where to write it (- for standard output)")
    return parser


def open_store(settings: Settings) -> RedisStore:
    settings = dataclasses.replace(settings, redis_timeout_s=max(settings.redis_timeout_s, MIN_CLI_TIMEOUT_S))
    return RedisStore(
        connect(settings),
        Keys(settings.key_prefix),
        attribution_window_s=settings.attribution_window_s,
        log_maxlen=settings.decision_log_maxlen,
    )


def _title(catalog: dict[str, Title], title_id: str) -> Title:
    if title_id not in catalog:
        names = sorted(catalog)
        known = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "") if names else "none: load a catalog first"
        raise CommandError(f"unknown title {title_id!r} (titles in Redis: {known})")
    return catalog[title_id]


def _with(title: Title, **changes: str) -> Title:
    """The title with ``changes`` applied, validated like an admin write."""
    return parse_title(title.id, {**title.to_json(private=True), **changes})


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def format_table(stats: Sequence[dict]) -> str:
    header = ("title", "policy", "artwork", "impressions", "rewards", "ctr", "ci95", "share", "recent")
    rows = [header]
    for t in stats:
        for a in t["artworks"]:
            mark = "*" if a["artwork"] == t["default"] else ""
            lo, hi = a["ci95"]
            rows.append(
                (
                    t["title"],
                    t["policy"],
                    a["artwork"] + mark,
                    str(a["impressions"]),
                    str(a["rewards"]),
                    _pct(a["ctr"]),
                    f"{_pct(lo)}-{_pct(hi)}",
                    _pct(a["share"]),
                    _pct(a["recent_share"]),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    text_cols = {0, 1, 2}
    lines = [
        "  ".join(c.ljust(w) if i in text_cols else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    return "\n".join(lines) + "\n(* default artwork; ci95: posterior 95% interval of the CTR)"


class OpsCommands:
    def __init__(self, store: RedisStore, settings: Settings, out: TextIO, err: TextIO, answers: TextIO):
        self.store = store
        self.settings = settings
        self.out = out
        self.err = err
        self.answers = answers

    def catalog(self) -> dict[str, Title]:
        return self.store.load_catalog()[1]

    def stats(self, title_ids: Sequence[str], as_json: bool) -> None:
        catalog = self.catalog()
        titles = [_title(catalog, t) for t in title_ids] if title_ids else [catalog[t] for t in sorted(catalog)]
        ids = [t.id for t in titles]
        counts = self.store.read_counts(ids)
        recent = self.store.recent_traffic(ids, self.settings.recent_traffic_minutes, time.time())
        # scipy (Thompson's quadrature, the guardrail's test) only for this command, not for --help
        from bandit.thompson import ThompsonSampling
        from service.stats import title_stats

        ts = ThompsonSampling(segment_strength=self.settings.ts_segment_strength, uniform_mix=self.settings.ts_uniform_mix)
        stats = [title_stats(ts, t, counts[t.id], recent[t.id]) for t in titles]
        print(json.dumps({"titles": stats}, indent=1) if as_json else format_table(stats), file=self.out)

    def reset(self, title_id: str, yes: bool) -> None:
        title = _title(self.catalog(), title_id)
        impressions = sum(self.store.read_counts([title.id])[title.id].impressions.values())
        if not yes:
            print(f"Reset the arm statistics of {title.id} ({impressions} impressions)? [y/N] ", end="", file=self.err, flush=True)
            if self.answers.readline().strip().lower() not in ("y", "yes"):
                raise CommandError("not reset (answer y to confirm, or pass --yes)")
        self.store.reset_title_stats(title.id, time.time())
        print(f"reset {title.id}: {impressions} impressions forgotten", file=self.out)

    def set_policy(self, title_id: str, policy: str) -> None:
        if policy not in POLICIES:
            raise CommandError(f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
        title = _with(_title(self.catalog(), title_id), policy=policy)
        self.store.put_title(title)
        print(f"{title.id}: policy {title.policy}", file=self.out)

    def pin(self, title_id: str, artwork: str) -> None:
        title = _title(self.catalog(), title_id)
        if artwork not in title.artwork_ids:
            raise CommandError(f"title {title.id} has no artwork {artwork!r} (artworks: {', '.join(title.artwork_ids)})")
        title = _with(title, policy="fixed", default=artwork)
        self.store.put_title(title)
        print(f"{title.id}: pinned to {artwork} (policy fixed)", file=self.out)

    def load_catalog(self, path: str) -> None:
        titles = load_catalog_file(path)
        created = sum(self.store.put_title(t) for t in titles)
        print(f"loaded {len(titles)} titles from {path} ({created} new, {len(titles) - created} replaced)", file=self.out)

    def export_catalog(self, path: str) -> None:
        """The catalog as stored, salts included: ``replay evaluate ... ab:FILE`` then replays the
        split each profile really got (``GET /catalog`` hides the salts). The file is a secret."""
        catalog = self.catalog()
        text = json.dumps({"titles": [catalog[t].to_json(private=True) for t in sorted(catalog)]}, indent=1) + "\n"
        if path == "-":
            self.out.write(text)
            return
        try:
            with open(path, "w", encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
                f.write(text)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        print(f"wrote {len(catalog)} titles with their A/B salts to {path} (keep it private)", file=self.err)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
         answers: TextIO | None = None) -> int:
    out, err, answers = out or sys.stdout, err or sys.stderr, answers or sys.stdin
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 1
    try:
        cmd = OpsCommands(open_store(settings), settings, out, err, answers)
        if args.command == "stats":
            cmd.stats(args.titles, args.json)
        elif args.command == "reset":
            cmd.reset(args.title, args.yes)
        elif args.command == "set-policy":
            cmd.set_policy(args.title, args.policy)
        elif args.command == "pin":
            cmd.pin(args.title, args.artwork)
        elif args.command == "load-catalog":
            cmd.load_catalog(args.path)
        elif args.command == "export-catalog":
            cmd.export_catalog(args.path)
    except (CommandError, ValueError) as exc:  # ValueError: e.g. a KEY_PREFIX Redis keys cannot use
        print(f"error: {exc}", file=err)
        return 1
    except ServiceError as exc:  # InvalidInput from the catalog parser or an id check
        print(f"error: {exc.message}", file=err)
        return 1
    except STORE_ERRORS as exc:
        print(f"error: Redis at {settings.redis_url} did not answer ({type(exc).__name__}: {exc})", file=err)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=err)
        return 130
    return 0
