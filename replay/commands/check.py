"""`python -m replay check LOGS`: are the logged propensities consistent with what was served?

Exit status 0 when nothing is flagged, 1 when some title/policy group is flagged (so it can
gate a pipeline) or on unreadable logs (one error line), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json

from replay.commands._common import add_logs_argument, load, probability


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logs_argument(parser)
    parser.add_argument("--alpha", type=probability, default=0.01,
                        help="flag a title/policy when the chi-square p-value is below this (default 0.01)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from replay.integrity import check_propensities
    from replay.report import integrity_json, integrity_table

    report = check_propensities(load(args, validate_event_ids=True), alpha=args.alpha)
    print(json.dumps(integrity_json(report)) if args.json else integrity_table(report))
    return 1 if report.flagged else 0
