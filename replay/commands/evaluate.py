"""`python -m replay evaluate LOGS --policy NAME ...`: estimate policies' values from logs."""

from __future__ import annotations

import argparse
import json
import sys

from replay.cli import CliError
from replay.commands._common import (
    add_engine_arguments,
    add_logs_argument,
    choose_engine,
    load,
    load_many,
    non_negative_int,
    positive_int,
    probability,
)
from replay.policy_base import PolicyError, PolicyOptions
from replay.policy_registry import POLICIES, make_policy

# replay.estimators' ESTIMATORS names, DEFAULT_ESTIMATORS and INTERVALS, and replay.reward_model's
# DEFAULT_FOLDS, spelled here so --help does not import scipy (a test keeps them equal)
ESTIMATOR_NAMES = ("replay", "ips", "snips", "dm", "dr", "sndr", "switchdr", "dros", "ipsclip")
DEFAULT_ESTIMATORS = ("replay", "ips", "snips", "dm", "dr")
INTERVALS = ("normal", "bootstrap", "el")
DEFAULT_FOLDS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logs_argument(parser)
    add_engine_arguments(parser)
    parser.add_argument("--policy", action="append", required=True, metavar="NAME",
                        help=f"policy to evaluate, repeatable: {', '.join(POLICIES)} or table:PATH")
    parser.add_argument("--estimator", action="append", choices=ESTIMATOR_NAMES,
                        help=f"estimator, repeatable (default: {', '.join(DEFAULT_ESTIMATORS)})")
    parser.add_argument("--interval", choices=INTERVALS, default=None,
                        help="interval method: normal (delta method, default), bootstrap (needs --bootstrap N) or "
                             "el (empirical likelihood, for ips and snips; robust to heavy importance weights)")
    parser.add_argument("--folds", type=positive_int, default=DEFAULT_FOLDS, metavar="K",
                        help="cross-fitting folds of the reward model behind dm/dr (default %(default)s; 1 fits in sample)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=0, metavar="N",
                        help="percentile interval from N Poisson-bootstrap replicates (default: normal approximation)")
    parser.add_argument("--seed", type=int, default=0, help="seed of replay's rejection sampling, TS and bootstrap (default 0)")
    parser.add_argument("--level", type=probability, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--json", action="store_true", help='print {"n", "policies": {NAME: {EST: {"value", "ci"}}}}')
    parser.add_argument("--plot", metavar="PNG", help="write a PNG of the estimates with their intervals")
    parser.add_argument("--by", metavar="COLUMN",
                        help="estimates per group of COLUMN too: title, segment or a numeric context key "
                             "(in --json under \"by\"; default for the table: segment when the logs have one)")
    parser.add_argument("--no-segments", action="store_true", help="skip the default breakdown by segment")
    parser.add_argument("--ts-batch", type=positive_int, default=PolicyOptions.ts_batch, metavar="B",
                        help="thompson refreshes a title's posteriors every B accepted events (default %(default)s)")
    parser.add_argument("--ts-uniform-mix", type=float, default=PolicyOptions.ts_uniform_mix,
                        help="thompson's uniform mix, as the service's TS_UNIFORM_MIX (default %(default)s)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from replay.errors import ReplayError
    from replay.estimators import EstimatorInputError
    from replay.evaluation import evaluate_policies
    from replay.progress import Stages, progress_enabled
    from replay.report import estimates_json, estimates_table, plot_estimates

    options = PolicyOptions(ts_batch=args.ts_batch, ts_uniform_mix=args.ts_uniform_mix)
    try:
        policies = [make_policy(spec, options) for spec in args.policy]
    except (PolicyError, ValueError) as exc:
        raise CliError(str(exc)) from None
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise CliError(f"a policy is named twice: {names}")
    engine, paths, engine_line = choose_engine(args)
    estimators = list(dict.fromkeys(args.estimator or DEFAULT_ESTIMATORS))
    interval = args.interval or ("bootstrap" if args.bootstrap else "normal")
    default_by = args.by is None and not args.no_segments and not args.json
    logs = None
    if engine == "pandas":
        logs = load(args) if paths is None else load_many(paths, args)
    by = args.by
    if default_by and (logs is None or logs.has_segment):
        by = "segment"
    on_progress = Stages(progress_enabled(args.progress))

    try:
        if engine == "dask":
            evaluation = _evaluate_on_dask(args, paths, policies, estimators, interval, by, default_by, on_progress)
        else:
            evaluation = evaluate_policies(
                logs, policies, estimators, np.random.default_rng(args.seed), level=args.level,
                bootstrap=args.bootstrap, interval=interval, folds=args.folds, by=by, on_progress=on_progress,
            )
    except (PolicyError, EstimatorInputError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    finally:
        on_progress.close()
    print(engine_line, file=sys.stderr)
    if args.plot:
        try:
            plot_estimates(evaluation, args.plot)
        except OSError as exc:
            raise CliError(f"cannot write plot {args.plot}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(estimates_json(evaluation)))
        for name, ests in evaluation.estimates.items():
            own = [*evaluation.policy_warnings.get(name, ()), *(w for e in ests for w in e.warnings)]
            for w in dict.fromkeys(own):
                print(f"warning: {name}: {w}", file=sys.stderr)
    else:
        print(estimates_table(evaluation))
    return 0


def _evaluate_on_dask(args, paths, policies, estimators, interval, by, default_by, on_progress):
    from replay import dask_engine
    from replay.partitioned import check_request, evaluate_partitioned

    check_request(policies, estimators, args.bootstrap, interval, args.level)  # before starting a cluster
    with dask_engine.client(args.scheduler) as c:
        return evaluate_partitioned(paths, policies, estimators, args.seed, level=args.level, interval=interval,
                                    folds=args.folds, by=by, bootstrap=args.bootstrap,
                                    runner=dask_engine.runner(c), on_progress=on_progress, by_if_present=default_by)
