"""`compare --scenario clickbait|drift|sticky`: the product features' simulations with known truth
(``replay.simulation.product``, on the simulation core), printed as one table each."""

from __future__ import annotations

import argparse
import json

from replay.cli import CliError

PRODUCT_SCENARIOS = ("clickbait", "drift", "sticky")  # replay.simulation.environments.PRODUCT_SCENARIOS, spelled here for a light --help
DEFAULT_HORIZON = {"clickbait": 6000, "drift": 20_000}
DEFAULT_HALF_LIFE = 1000.0  # impressions: the documented default for drift-prone titles, scaled to the run


def run(args: argparse.Namespace) -> int:
    from replay.simulation import SimulationError
    from replay.simulation import product as ps
    from replay.simulation.environments import PRODUCT_SCENARIOS as ENVIRONMENTS

    try:
        return _run(args, ps, ENVIRONMENTS["clickbait"](), ENVIRONMENTS["drift"]())
    except SimulationError as exc:
        raise CliError(str(exc)) from None


def _run(args: argparse.Namespace, ps, bait, drift) -> int:

    if args.seeds < (2 if args.scenario == "sticky" else 1):
        raise CliError(f"--seeds must be >= {2 if args.scenario == 'sticky' else 1}, got {args.seeds}")
    horizon = args.horizon or DEFAULT_HORIZON.get(args.scenario, 0)
    if args.scenario != "sticky" and horizon < 100:
        raise CliError(f"--horizon must be >= 100, got {horizon}")
    half_life = DEFAULT_HALF_LIFE if args.half_life is None else args.half_life
    if half_life <= 0:
        raise CliError(f"--half-life must be > 0, got {half_life}")
    if args.scenario == "clickbait":
        rows = [ps.clickbait(obj, args.seeds, args.seed, horizon, env=bait) for obj in ("click", "play")]
        lines = [
            f"clickbait: {args.seeds} seeds x {horizon} impressions; true click rates "
            + ", ".join(f"{a} {c:.2f}" for a, c in zip(bait.arms, bait.click, strict=True))
            + "; play-through "
            + ", ".join(f"{a} {p:.2f}" for a, p in zip(bait.arms, bait.play_through, strict=True)),
            f"{'optimizes':<10} {'picks honest':>12} {'picks clickbait':>15} {'picks plain':>11} {'plays/1000':>10} {'clicks/1000':>11}",
        ]
        lines += [
            f"{r.objective:<10} {r.picks['honest']:>12.0%} {r.picks['clickbait']:>15.0%} {r.picks['plain']:>11.0%} "
            f"{r.plays_per_1000:>10.1f} {r.clicks_per_1000:>11.1f}"
            for r in rows
        ]
        payload = [r.__dict__ for r in rows]
    elif args.scenario == "drift":
        rows = [ps.drift(None, args.seeds, args.seed, horizon, env=drift), ps.drift(half_life, args.seeds, args.seed, horizon, env=drift)]
        lines = [
            f"drift: {args.seeds} seeds x {horizon} impressions; click rates {drift.rates[0]:.2f}/{drift.rates[1]:.2f} swap at {drift.swap(horizon)}; "
            f"recovery = impressions after the swap until {ps.RECOVERY_SHARE:.0%} of a {ps.RECOVERY_WINDOW}-impression window is on the new best",
            f"{'counters':<26} {'recovery':>9} {'never':>6} {'new best share':>14}",
        ]
        for r in rows:
            label = "never forget" if r.half_life is None else f"half-life {r.half_life:g} impressions"
            bound = ">=" if r.censored else "  "
            lines.append(f"{label:<26} {bound}{r.recovery:>7.0f} {r.censored:>6} {r.share_new_best:>14.1%}")
        lines.append(f"decay recovers {rows[0].recovery / rows[1].recovery:.1f}x faster" + (" (at least: some runs without decay never recovered)" if rows[0].censored else ""))
        payload = [r.__dict__ for r in rows]
    else:
        r = ps.sticky(args.seeds, args.seed)
        lines = [
            f"sticky: {args.seeds} logged data sets; IPS of 'always B' (true value {r.truth:.3f} per impression); "
            f"logging P(B) {ps.EARLY_P_B} then {ps.LATE_P_B}; repeats keep the first decision's artwork",
            f"{'estimator':<34} {'mean':>8} {'bias':>8} {'SE':>8} {'bias/SE':>8}   (SE: of one log's estimate; mean +- {r.sticky_mc_se:.4f} Monte Carlo)",
            f"{'naive (each impression its own)':<34} {r.naive_mean:>8.4f} {r.naive_mean - r.truth:>+8.4f} {r.naive_se:>8.4f} {r.naive_bias_in_se:>8.1f}",
            f"{'sticky (first decision, period)':<34} {r.sticky_mean:>8.4f} {r.sticky_mean - r.truth:>+8.4f} {r.sticky_se:>8.4f} {r.sticky_bias_in_se:>8.1f}",
        ]
        payload = {**r.__dict__, "naive_bias_in_se": r.naive_bias_in_se, "sticky_bias_in_se": r.sticky_bias_in_se}
    print(json.dumps({"scenario": args.scenario, "results": payload}) if args.json else "\n".join(lines))
    return 0
