"""`python -m replay compare`: A/B test vs Thompson sampling (vs VW) on the same simulated traffic.

Scenarios: ``uniform-ctr`` (default; one true CTR per artwork, ``--ctrs``) and ``personalized``
(groups of profiles preferring different artworks; regret against the per-group oracle).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from replay.cli import CliError
from replay.commands import compare_product
from replay.policy_base import REFRESH

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from replay.simulation.comparison import ComparisonResult

# replay.simulation's SCENARIOS (environments) and SHIP_RULES (comparison), spelled here so --help imports no numpy/scipy (a test keeps them equal)
SCENARIOS = ("uniform-ctr", "personalized")
SHIP_RULES = ("significant", "best")

_LABELS = {"ab": "A/B test, then ship", "thompson": "Thompson sampling", "vw": "VW contextual bandit"}


_DEFAULT_CTRS = "0.24,0.30"
_EPILOG = (
    "scenarios: uniform-ctr (default): one true CTR per artwork for everybody (--ctrs), so there is "
    "nothing to personalize and VW, without features, is a context-free bandit. personalized: "
    "replay.simulation.personalized's five artworks and profiles; comedy fans (--comedy-share of traffic) "
    "click the comedic artwork 30% and the action one 15%, action fans the reverse, the others 10%; "
    "the A/B test ships one artwork for everybody, Thompson sampling converges to the overall best, "
    "VW learns per group from the profile features; regret is measured against the oracle that "
    "shows each profile its group's best artwork. clickbait, drift, sticky: the product features' "
    "simulations (replay.simulation.product): click vs quality-play optimization, decaying counters "
    "after a swap of the best artwork, IPS on sticky logs."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.add_argument("--scenario", choices=(*SCENARIOS, *compare_product.PRODUCT_SCENARIOS), default="uniform-ctr", help="simulated traffic (default uniform-ctr; see below)")
    parser.add_argument("--ctrs", help=f"uniform-ctr: true CTR per artwork; the first is the A/B control (default {_DEFAULT_CTRS})")
    parser.add_argument("--arms", help="uniform-ctr: artwork names, comma-separated (default A,B,...)")
    parser.add_argument("--comedy-share", type=float, default=0.6, help="personalized: share of traffic from comedy fans (default 0.6)")
    parser.add_argument("--profiles", type=int, default=1000, help="personalized: profiles per run (default 1000)")
    parser.add_argument("--horizon", type=int, help="impressions per run (default 10000; clickbait 6000, drift 20000)")
    parser.add_argument("--half-life", type=float, help="drift: half-life of the decaying counters, in impressions (default 1000)")
    parser.add_argument("--seeds", type=int, default=20, help="runs to average over (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (runs use seed, seed+1, ...)")
    parser.add_argument("--alpha", type=float, default=0.05, help="A/B significance level (default 0.05)")
    parser.add_argument("--power", type=float, default=0.8, help="A/B planned power (default 0.8)")
    parser.add_argument("--mde", type=float, help="absolute effect the A/B test is planned for (default: the true gap to the control)")
    parser.add_argument("--ship-rule", choices=SHIP_RULES, default="significant", help="A/B: ship only a significant winner (default) or the best observed")
    parser.add_argument("--ts-refresh", type=int, default=REFRESH, help="Thompson sampling: recompute probabilities every N impressions (default %(default)s)")
    parser.add_argument("--policies", default="ab,thompson,vw", help="which to run (default ab,thompson,vw)")
    parser.add_argument("--plot", metavar="PNG", help="write the cumulative regret plot to this PNG")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    if args.scenario in compare_product.PRODUCT_SCENARIOS:
        return compare_product.run(args)
    args.horizon = args.horizon or 10_000
    from replay.simulation import SimulationError
    from replay.simulation.comparison import compare_policies

    personalized = args.scenario == "personalized"
    if personalized and (args.ctrs is not None or args.arms is not None):
        raise CliError("--ctrs and --arms describe the uniform-ctr scenario; the personalized one has its own catalog")
    ctrs_text = _DEFAULT_CTRS if args.ctrs is None else args.ctrs
    try:
        ctrs = tuple(float(c) for c in ctrs_text.split(","))
    except ValueError:
        raise CliError(f"--ctrs: expected comma-separated numbers, got {ctrs_text!r}") from None
    arms = tuple(a.strip() for a in args.arms.split(",")) if args.arms else ()
    if args.seeds < 1:
        raise CliError(f"--seeds must be >= 1, got {args.seeds}")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        # runs of one seed take about equally long: the mean so far predicts the rest
        left = f", about {_duration(elapsed / done * (total - done))} left" if done < total else ""
        print(f"\rcompare: {done}/{total} runs ({_duration(elapsed)}{left})   ", end="" if done < total else "\n",
              file=sys.stderr, flush=True)

    try:
        env = _environment(args, ctrs, arms)
        result = compare_policies(
            env,
            horizon=args.horizon,
            seeds=tuple(range(args.seed, args.seed + args.seeds)),
            alpha=args.alpha,
            power=args.power,
            mde=args.mde,
            ship_rule=args.ship_rule,
            ts_refresh=args.ts_refresh,
            include=tuple(p.strip() for p in args.policies.split(",") if p.strip()),
            on_progress=progress,
        )
    except (SimulationError, ValueError) as exc:  # plan_sample_size's ABTestInputError is a ValueError
        raise CliError(str(exc)) from None
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result_json(result)))
    else:
        print(summary_table(result))
    if args.plot:
        try:
            regret_figure(result).savefig(args.plot, dpi=110)
        except OSError as exc:
            raise CliError(f"--plot: cannot write {args.plot}: {exc.strerror or exc}") from None
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _environment(args: argparse.Namespace, ctrs: tuple[float, ...], arms: tuple[str, ...]):
    """The ``--scenario``'s environment. A new scenario: its class in
    ``replay.simulation.environments`` (registered in its ``SCENARIOS``), its name in
    ``SCENARIOS`` above, and its line here."""
    from replay.simulation.environments import SCENARIOS as ENVIRONMENTS

    if args.scenario == "personalized":
        return ENVIRONMENTS["personalized"](args.comedy_share, args.profiles)
    return ENVIRONMENTS[args.scenario](ctrs, arms)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.1f} min"


def result_json(result: ComparisonResult) -> dict:
    from replay.simulation.environments import PersonalizedArms

    env = result.env
    out = {
        "arms": {a: c for a, c in zip(env.arms, env.ctrs, strict=True)},
        "best_arm": env.arms[env.best],
        "horizon": result.horizon,
        "seeds": len(result.seeds),
        "ab_n_per_arm": result.ab_n_per_arm,
        "policies": {
            p.name: {
                "clicks": p.clicks,
                "regret": p.regret,
                "regret_se": p.regret_se,
                "best_share": p.best_share,
                "decision_time": p.decision_time,
                "decided_share": p.decided_share,
                "correct_decision_share": p.correct_share(env.best),
                "best_decision_time": p.best_decision_time,
            }
            for p in result.policies
        },
        "notes": list(result.notes),
    }
    if isinstance(env, PersonalizedArms):
        # arms: the CTRs averaged over the group mix; regret and best_share are against the oracle
        out["scenario"] = result.scenario
        out["groups"] = {
            g: {"share": share, "ctrs": dict(zip(env.arms, row.tolist(), strict=True))}
            for g, share, row in zip(env.groups, env.group_shares, env.group_ctrs, strict=True)
        }
        out["oracle_ctr"] = env.oracle_ctr
        for p in result.policies:
            out["policies"][p.name]["ctr"] = p.ctr
    return out


def summary_table(result: ComparisonResult) -> str:
    from replay.simulation.environments import PersonalizedArms

    if isinstance(result.env, PersonalizedArms):
        return _personalized_table(result)
    env = result.env
    truth = ", ".join(f"{a} {c:.1%}" for a, c in zip(env.arms, env.ctrs, strict=True))
    lines = [
        f"{len(result.seeds)} runs of {result.horizon:,} impressions; true CTRs {truth}; best fixed artwork {env.arms[env.best]} "
        f"({env.ctrs[env.best] * result.horizon:,.0f} expected clicks per run)",
        f"A/B test: equal split until {result.ab_n_per_arm:,} per arm ({result.ab_n_per_arm * len(env.ctrs):,} impressions), then ship",
        "",
        f"{'policy':<22}{'clicks':>9}{'regret':>16}{'on best':>9}{'decision at':>13}{'decided':>9}{'right':>7}{'best at':>9}",
    ]
    lines += _policy_rows(result, with_ctr=False)
    lines.append("")
    lines.append(
        "regret: expected clicks lost against always showing the best artwork (± standard error over runs); "
        "decision at: mean impressions before the A/B test ships / Thompson sampling's P(best) of some artwork first "
        "exceeds 95% (VW declares no winner); right: share of runs whose first decision was the best artwork; "
        "best at: mean impressions until the best artwork was chosen (runs that chose it)"
    )
    names = [p.name for p in result.policies]
    if "ab" in names and "thompson" in names:
        ab, ts = result.policy("ab"), result.policy("thompson")
        if ab.regret > 0:
            lines.append(f"Thompson sampling's regret is {ts.regret / ab.regret:.0%} of the A/B test's.")
    return "\n".join(lines)


def _policy_rows(result: ComparisonResult, *, with_ctr: bool) -> list[str]:
    """One table row per policy (the CTR column only where CTRs differ by viewer)."""
    rows = []
    best = result.env.best
    for p in result.policies:
        at = "never" if p.decision_time is None else f"{p.decision_time:,.0f}"
        correct = f"{p.correct_share(best):.0%}" if p.decided_share > 0 else "-"
        best_at = "never" if p.best_decision_time is None else f"{p.best_decision_time:,.0f}"
        ctr = f"{p.ctr:>7.1%}" if with_ctr else ""
        rows.append(
            f"{_LABELS.get(p.name, p.name):<22}{p.clicks:>9,.1f}{ctr}{f'{p.regret:.1f} ± {p.regret_se:.1f}':>16}"
            f"{p.best_share:>9.1%}{at:>13}{p.decided_share:>9.0%}{correct:>7}{best_at:>9}"
        )
    return rows


def _personalized_table(result: ComparisonResult) -> str:
    from replay.simulation.environments import PersonalizedArms

    env = result.env
    assert isinstance(env, PersonalizedArms)
    groups = "; ".join(
        f"{g} fans {share:.0%} of traffic (" + ", ".join(f"{a} {c:.0%}" for a, c in zip(env.arms, row, strict=True)) + ")"
        for g, share, row in zip(env.groups, env.group_shares, env.group_ctrs, strict=True)
    )
    overall = ", ".join(f"{a} {c:.1%}" for a, c in zip(env.arms, env.ctrs, strict=True))
    lines = [
        f"{len(result.seeds)} runs of {result.horizon:,} impressions from {env.n_profiles:,} profiles; true CTRs: {groups}",
        f"best fixed artwork {env.arms[env.best]} (overall CTRs {overall}); oracle: each profile's group's best artwork, "
        f"CTR {env.oracle_ctr:.1%} ({env.oracle_ctr * result.horizon:,.0f} expected clicks per run)",
        f"A/B test: equal split until {result.ab_n_per_arm:,} per arm ({result.ab_n_per_arm * len(env.ctrs):,} impressions), then ship one artwork for everybody",
        "",
        f"{'policy':<22}{'clicks':>9}{'CTR':>7}{'regret':>16}{'on best':>9}{'decision at':>13}{'decided':>9}{'right':>7}{'best at':>9}",
    ]
    lines += _policy_rows(result, with_ctr=True)
    lines.append("")
    lines.append(
        "regret: expected clicks lost against the oracle that shows each profile its group's best artwork "
        "(± standard error over runs); on best: share of impressions showing the viewer's group's best artwork; "
        "decision at / right / best at: as in uniform-ctr, about one artwork for everybody, the best being "
        f"{env.arms[env.best]} (VW declares no winner: it serves each profile its own)"
    )
    names = [p.name for p in result.policies]
    if "vw" in names:
        vw = result.policy("vw")
        for other, label in (("ab", "A/B test"), ("thompson", "Thompson sampling")):
            if other in names and result.policy(other).regret > 0:
                lines.append(f"VW's regret is {vw.regret / result.policy(other).regret:.0%} of {label}'s.")
    return "\n".join(lines)


def regret_figure(result: ComparisonResult) -> Figure:
    import numpy as np
    from matplotlib.figure import Figure

    from replay.simulation.environments import PersonalizedArms

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    t = np.arange(1, result.horizon + 1)
    for p in result.policies:
        curves = np.array([r.cumulative_regret for r in p.runs])
        mean = curves.mean(axis=0)
        line = ax.plot(t, mean, lw=2, label=f"{_LABELS.get(p.name, p.name)} (final {mean[-1]:.1f})")[0]
        if len(p.runs) > 1:
            lo, hi = np.percentile(curves, [10, 90], axis=0)
            ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.15)
    if any(p.name == "ab" for p in result.policies):
        ax.axvline(result.ab_n_per_arm * len(result.env.ctrs), color="grey", ls=":", label="A/B planned sample reached")
    env = result.env
    if isinstance(env, PersonalizedArms):
        groups = " vs ".join(f"{g} fans {share:.0%}" for g, share in zip(env.groups, env.group_shares, strict=True))
        ax.set_title(
            f"Cumulative regret vs the oracle (each profile's group's best artwork, CTR {env.oracle_ctr:.0%})\n"
            f"personalized: {groups}; mean of {len(result.seeds)} runs, band 10-90%"
        )
    else:
        truth = ", ".join(f"{a} {c:.0%}" for a, c in zip(env.arms, env.ctrs, strict=True))
        ax.set_title(f"Cumulative regret vs the best fixed artwork ({truth}; mean of {len(result.seeds)} runs, band 10-90%)")
    ax.set_xlabel("impressions")
    ax.set_ylabel("expected clicks lost")
    ax.legend(loc="upper left")
    return fig
