"""`python -m replay simulate --out FILE ...`: synthetic logs with known true CTRs."""

from __future__ import annotations

import argparse
import json

from replay.cli import CliError
from replay.commands._common import positive_int
from replay.policy_base import PolicyError, PolicyOptions


def _ctrs(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if len(values) != 2 or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected two CTRs in [0, 1], got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="FILE", help="output logs (.jsonl, .csv or .parquet)")
    parser.add_argument("--scenario", choices=("two-artworks", "segments"), default="two-artworks",
                        help="two-artworks: one title, a1/a2 at --ctr; segments: titles whose segments prefer different artworks")
    parser.add_argument("--n", type=positive_int, default=100_000, help="logged impressions (default %(default)s)")
    parser.add_argument("--logging", default="uniform", metavar="POLICY",
                        help="logging policy: uniform, thompson or table:PATH (default uniform)")
    parser.add_argument("--ctr", type=_ctrs, default=(0.24, 0.30), help="two-artworks CTRs (default 0.24,0.30)")
    parser.add_argument("--titles", type=positive_int, default=4, help="segments scenario: titles (default 4)")
    parser.add_argument("--artworks", type=positive_int, default=3, help="segments scenario: artworks per title (default 3)")
    parser.add_argument("--ts-batch", type=positive_int, default=PolicyOptions.ts_batch, metavar="B",
                        help="thompson logging: refresh a title's posteriors every B impressions (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--truth", metavar="JSON", help="also write the true CTRs and policy values as JSON")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from replay.logs import LogSchemaError, write_logs
    from replay.policies import read_policy_table
    from replay.simulation import SimulationError
    from replay.simulation.environments import segmented_titles, two_artworks
    from replay.simulation.simulated_logs import simulate_logs

    rng = np.random.default_rng(args.seed)
    try:
        if args.scenario == "two-artworks":
            env = two_artworks(args.ctr)
        else:
            if args.artworks < 2:
                raise CliError("--artworks must be >= 2")
            env = segmented_titles(rng, n_titles=args.titles, n_artworks=args.artworks)
        name, _, arg = args.logging.partition(":")
        table = read_policy_table(arg) if name == "table" else None
        if name == "table" and not arg:
            raise CliError("--logging table needs a path: table:PATH")
        frame = simulate_logs(env, rng, args.n, name, table=table, options=PolicyOptions(ts_batch=args.ts_batch))
        write_logs(frame, args.out)
    except (SimulationError, PolicyError, LogSchemaError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    k = max(env.n_arms)
    uniform = np.array([[1.0 / len(a) if j < len(a) else 0.0 for j in range(k)] for a in env.artworks])
    truth = {
        "scenario": args.scenario, "n": args.n, "logging": args.logging, "seed": args.seed,
        "ctr": {t: {a: {g: float(env.ctr[i, j, s]) for s, g in enumerate(env.segments)} for j, a in enumerate(arts)}
                for i, (t, arts) in enumerate(zip(env.titles, env.artworks, strict=True))},
        "segment_shares": dict(zip(env.segments, env.segment_weights.tolist(), strict=True)),
        "value_uniform": env.policy_value(uniform),
        "value_best": env.best_value(),
        "logged_mean_reward": float(frame["reward"].mean()),
    }
    if args.truth:
        try:
            with open(args.truth, "w", encoding="utf-8") as fh:
                json.dump(truth, fh, indent=2)
        except OSError as exc:
            raise CliError(f"cannot write {args.truth}: {exc.strerror}") from None
    print(f"wrote {args.n:,} impressions to {args.out} ({args.scenario}, logging {args.logging})")
    print(f"true value: uniform {truth['value_uniform']:.4f}, best per title and segment {truth['value_best']:.4f}; "
          f"logged mean reward {truth['logged_mean_reward']:.4f}")
    return 0
