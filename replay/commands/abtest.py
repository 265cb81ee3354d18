"""`python -m replay abtest`: fixed-split A/B analysis of logs, a sample-size planner, and a demo.

Modes:
- ``abtest LOGS``: analyse logged impressions (JSON Lines, CSV or Parquet).
- ``abtest LOGS --sequential``: the same comparison day by day, with always-valid p-values and a
  confidence sequence (mixture SPRT), so it may be looked at every day.
- ``abtest --sequential --demo``: A/A experiments peeked at daily: false-positive rate of the
  fixed-horizon z-test against the always-valid p-value.
- ``abtest --plan --baseline 0.24 --mde 0.06 [--power 0.8]``: units needed per arm.
- ``abtest --demo [--seed S]``: the classic notebook: 1,000 simulated users split 50/50 between
  artwork A (true CTR 24%) and B (30%), analysed exactly like real logs.
"""

from __future__ import annotations

import argparse

from replay.commands._common import add_engine_arguments

# replay.sequential's DEFAULT_TAU, spelled here so --help does not import scipy (a test keeps them equal)
DEFAULT_TAU = 0.02


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="?", metavar="LOGS",
                        help="logged impressions (.jsonl, .csv or .parquet; or a folder or glob of Parquet partitions)")
    add_engine_arguments(parser)
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    parser.add_argument("--control", metavar="ARTWORK", help="the control arm (default: first artwork in sort order)")
    parser.add_argument("--unit", choices=("profile", "impression"), default="profile", help="unit of analysis (default: profile, the randomization unit)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level; intervals are at 1 - alpha (default 0.05)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--plot", metavar="PNG", help="write the four-panel dashboard to this PNG")
    parser.add_argument("--criterion", metavar="TEXT", help="success criterion, e.g. 'lift_rel>=10%% and significant'")
    parser.add_argument("--title", help="analyse this title only (required when the logs hold several)")
    parser.add_argument("--policy", help="analyse only impressions logged by this policy (e.g. ab)")
    parser.add_argument("--weights", metavar="ARM=W,...", help="designed split for the SRM check (default: the logged propensities when constant per arm, else equal)")
    plan = parser.add_argument_group("sample-size planner")
    plan.add_argument("--plan", action="store_true", help="print the sample size per arm and exit")
    plan.add_argument("--baseline", type=float, help="control CTR, e.g. 0.24")
    plan.add_argument("--mde", type=float, help="minimum detectable effect, absolute (0.06 for 24%% -> 30%%)")
    plan.add_argument("--relative", action="store_true", help="read --mde as relative to the baseline (0.25 for 24%% -> 30%%)")
    plan.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    plan.add_argument("--arms", type=int, default=2,
                      help="number of arms in the plan (default 2); each treatment is planned at alpha/(arms-1), "
                           "as the analysis Holm-adjusts")
    demo = parser.add_argument_group("demo (the classic notebook)")
    demo.add_argument("--demo", action="store_true", help="simulate users instead of reading LOGS")
    demo.add_argument("--seed", type=int, default=42, help="random seed of the demo (default 42)")
    demo.add_argument("--users", type=int, default=1000, help="simulated users (default 1000)")
    demo.add_argument("--ctrs", default="A=0.24,B=0.30", metavar="ARM=CTR,...", help="true CTRs (default A=0.24,B=0.30)")
    demo.add_argument("--data-out", metavar="CSV", help="write the simulated user_id,artwork,clicked table")
    seq = parser.add_argument_group("sequential analysis (look every day)")
    seq.add_argument("--sequential", action="store_true",
                     help="always-valid p-values and confidence sequences per day (mixture SPRT); with --demo, "
                          "the daily-peeking simulation")
    seq.add_argument("--tau", type=float, default=DEFAULT_TAU,
                     help="effect scale the mixture is tuned to, absolute CTR difference (default %(default)s)")
    seq.add_argument("--experiments", type=int, default=2000, help="--sequential --demo: A/A experiments (default 2000)")
    seq.add_argument("--days", type=int, default=30, help="--sequential --demo: days, one look each (default 30)")
    seq.add_argument("--daily-users", type=int, default=200, help="--sequential --demo: users per arm per day (default 200)")


def run(args: argparse.Namespace) -> int:
    from replay.commands.abtest_run import run as run_abtest  # pandas and scipy: only once it runs

    return run_abtest(args)
