"""`python -m replay check LOGS`: are the logged propensities consistent with what was served?

Exit status 0 when nothing is flagged, 1 when some title/policy group is flagged (so it can
gate a pipeline) or on unreadable logs (one error line), 2 on a usage error. LOGS may be a folder
or glob of Parquet partitions; ``--engine dask`` checks them group by group on a Dask cluster
(``replay.partitioned_check``) with the numbers the pandas engine gives.
"""

from __future__ import annotations

import argparse
import json
import sys

from replay.commands._common import add_engine_arguments, add_logs_argument, choose_engine, load, load_many, probability


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logs_argument(parser)
    add_engine_arguments(parser)
    parser.add_argument("--alpha", type=probability, default=0.01,
                        help="flag a title/policy when the chi-square p-value is below this (default 0.01)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    from replay.integrity import check_propensities
    from replay.progress import Stages, progress_enabled
    from replay.report import integrity_json, integrity_table

    engine, paths, engine_line = choose_engine(args)
    if engine == "pandas":
        logs = load(args, validate_event_ids=True) if paths is None else load_many(paths, args)
        report = check_propensities(logs, alpha=args.alpha)
    else:
        from replay import dask_engine
        from replay.partitioned_check import check_partitioned

        on_progress = Stages(progress_enabled(args.progress))
        try:
            with dask_engine.client(args.scheduler) as c:
                report = check_partitioned(paths, args.alpha, runner=dask_engine.runner(c), on_progress=on_progress)
        finally:
            on_progress.close()
    print(engine_line, file=sys.stderr)
    print(json.dumps(integrity_json(report)) if args.json else integrity_table(report))
    return 1 if report.flagged else 0
