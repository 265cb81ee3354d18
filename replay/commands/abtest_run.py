"""What `replay abtest` runs (``replay.commands.abtest`` holds its arguments): analysis of logs,
the sample-size planner, the sequential analysis and the demos. Imports pandas and scipy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from replay.abtest import (
    ABTestInputError,
    ABTestResult,
    SampleSizePlan,
    Verdict,
    analyze,
    analyze_counts,
    evaluate_criterion,
    parse_criterion,
    plan_sample_size,
    power_two_proportions,
    units_from_impressions,
)
from replay.cli import CliError
from replay.partitioned_abtest import Selected, per_profile, select_partitioned, unit_counts
from replay.sequential import SequentialInputError, peeking_simulation, sequential_looks

_PROPENSITY_TOLERANCE = 1e-6


def run(args: argparse.Namespace) -> int:
    try:
        if args.plan:
            return _run_plan(args)
        if args.sequential:
            return _run_sequential(args)
        criterion = parse_criterion(args.criterion) if args.criterion else None
        engine_line = None
        if args.demo:
            result = _demo_result(args)
        elif args.logs:
            result, engine_line = _logs_result(args)
        else:
            raise CliError("give LOGS to analyse, --demo, or --plan --baseline B --mde D")
        verdict = evaluate_criterion(result.primary, criterion) if criterion else None
    except (ABTestInputError, SequentialInputError) as exc:
        raise CliError(str(exc)) from None
    if engine_line is not None:
        print(engine_line, file=sys.stderr)
    _report(args, result, verdict)
    return 0


def _run_sequential(args: argparse.Namespace) -> int:
    if args.demo:
        r = peeking_simulation(np.random.default_rng(args.seed), args.experiments, args.days, args.daily_users,
                               alpha=args.alpha, tau=args.tau)
        if args.json:
            print(json.dumps(r.__dict__))
            return 0
        print(f"{r.experiments:,} A/A experiments (both arms CTR {r.ctr:.0%}), {r.users_per_arm_per_day:,} users per arm "
              f"per day, looked at every day for {r.days} days, alpha {r.alpha:g}:")
        for label, rate in (("fixed-horizon z-test, peeked daily", r.fixed_false_positive),
                            ("always-valid p-value (mSPRT), peeked daily", r.sequential_false_positive),
                            ("fixed-horizon z-test, looked at once on the last day", r.fixed_final_day_false_positive)):
            print(f"  {label:<52} false-positive rate {rate:6.1%} +- {r.mc_error(rate):.1%}")
        ok = r.sequential_false_positive <= r.alpha + 2 * r.mc_error(r.alpha)
        print(f"always-valid p-value keeps the false-positive rate <= alpha under daily peeking: {'yes' if ok else 'NO'}; "
              f"the peeked z-test: {'no' if r.fixed_false_positive > r.alpha else 'yes'}")
        return 0
    if not args.logs:
        raise CliError("--sequential needs LOGS, or --demo for the peeking simulation")
    source, engine_line = _select(args)
    looks, treatment, control = _daily_looks(source, args)
    print(engine_line, file=sys.stderr)
    if args.json:
        print(json.dumps({
            "treatment": treatment, "control": control, "alpha": looks.alpha, "tau": looks.tau,
            "stopped_at_day": looks.stopped_at,
            "looks": [{"day": i, "n_t": int(looks.n_t[i]), "n_c": int(looks.n_c[i]), "diff": float(looks.diff[i]),
                       "p_value": float(looks.p_value[i]), "ci": [float(looks.ci_low[i]), float(looks.ci_high[i])],
                       "fixed_p_value": float(looks.fixed_p_value[i])} for i in range(looks.diff.size)],
        }))
        return 0
    print(f"{treatment} vs {control}, one look per day (profiles by the day of their first impression); "
          f"always-valid at alpha {looks.alpha:g}, tau {looks.tau:g}")
    print(f"{'day':>4}{'n ' + treatment:>12}{'n ' + control:>12}{'diff':>10}{'always-valid p':>16}"
          f"   {'confidence sequence':<22}{'z-test p (not valid when peeking)':>35}")
    for i in range(looks.diff.size):
        print(f"{i:>4}{looks.n_t[i]:>12,}{looks.n_c[i]:>12,}{looks.diff[i]:>+10.4f}{looks.p_value[i]:>16.4g}   "
              f"{f'[{looks.ci_low[i]:+.4f}, {looks.ci_high[i]:+.4f}]':<22}{looks.fixed_p_value[i]:>35.4g}")
    stop = looks.stopped_at
    print("significant (always-valid p < alpha) from day " + str(stop) if stop is not None
          else "not significant yet: keep the experiment running (or stop for futility); looking again is safe")
    return 0


def _daily_looks(source, args: argparse.Namespace):
    """Cumulative (clicks, profiles) per day for the primary treatment and the control."""
    if isinstance(source, Selected):
        per = per_profile(source.table)
    else:
        clicked = source["reward"].astype(float) > 0
        per = (source.assign(clicked=clicked).sort_values("timestamp")
               .groupby("profile", sort=False).agg(arm=("artwork", "first"), arms=("artwork", "nunique"),
                                                      clicked=("clicked", "any"), first=("timestamp", "min")))
    per = per[per["arms"] == 1]
    arms = sorted(per["arm"].astype(str).unique())
    if len(arms) < 2:
        raise CliError("--sequential: need two arms with profiles")
    control = args.control or arms[0]
    if control not in arms:
        raise CliError(f"--control: unknown control {control!r}; arms are {', '.join(arms)}")
    treatment = next(a for a in arms if a != control)
    day = ((per["first"] - per["first"].min()) // 86_400).astype(int)
    days = int(day.max()) + 1

    def cumulative(arm: str):
        rows = per["arm"] == arm
        n = np.bincount(day[rows], minlength=days).cumsum()
        x = np.bincount(day[rows], weights=per["clicked"][rows].astype(float), minlength=days).cumsum()
        return x, n

    (x_t, n_t), (x_c, n_c) = cumulative(treatment), cumulative(control)
    first = int(np.flatnonzero((n_t > 0) & (n_c > 0))[0])
    try:
        looks = sequential_looks(x_t[first:], n_t[first:], x_c[first:], n_c[first:], alpha=args.alpha, tau=args.tau)
    except SequentialInputError as exc:
        raise CliError(str(exc)) from None
    return looks, treatment, control


# -- modes ------------------------------------------------------------------------------------


def _run_plan(args: argparse.Namespace) -> int:
    if args.baseline is None or args.mde is None:
        raise CliError("--plan needs --baseline and --mde")
    try:
        plan = plan_sample_size(args.baseline, args.mde, alpha=args.alpha, power=args.power, arms=args.arms, relative=args.relative)
    except ABTestInputError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(_plan_json(plan)))
    else:
        print(
            f"To detect {plan.baseline:.2%} -> {plan.target:.2%} (absolute {plan.mde:+.4f}, relative {plan.mde / plan.baseline:+.1%}) "
            f"with a two-sided z-test at alpha {plan.alpha:g} and power {plan.power:.0%}"
            + (f" per treatment (each of {plan.arms - 1} comparisons at alpha {plan.alpha / (plan.arms - 1):.3g}, "
               "matching the Holm-adjusted analysis):" if plan.arms > 2 else ":")
        )
        print(f"  {plan.n_per_arm:,} units per arm, {plan.total:,} in total over {plan.arms} arms (exact power {plan.achieved_power:.3f})")
    return 0


def _plan_json(plan: SampleSizePlan) -> dict:
    return {
        "baseline": plan.baseline,
        "target": plan.target,
        "mde": plan.mde,
        "alpha": plan.alpha,
        "power": plan.power,
        "arms": plan.arms,
        "n_per_arm": plan.n_per_arm,
        "total": plan.total,
        "achieved_power": plan.achieved_power,
    }


def _parse_pairs(text: str, option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise CliError(f"{option}: expected ARM=NUMBER,..., got {text!r}") from None
    return out


def _demo_result(args: argparse.Namespace) -> ABTestResult:
    from replay.ab_demo import simulate_split_experiment

    ctrs = _parse_pairs(args.ctrs, "--ctrs")
    frame = simulate_split_experiment(args.users, ctrs, np.random.default_rng(args.seed), salt=f"demo-{args.seed}")
    if args.data_out:
        frame.to_csv(args.data_out, index=False)
    if not args.json:
        split = "50/50" if len(ctrs) == 2 else "equally"
        print(f"Simulated {len(frame):,} users split {split} between {', '.join(f'{a} (true CTR {c:.0%})' for a, c in ctrs.items())}, seed {args.seed}")
        print(frame.head(8).to_string(index=False))
        print(f"... {len(frame):,} rows" + (f" (written to {args.data_out})" if args.data_out else ""))
        _print_design_power(ctrs, len(frame), args.alpha)
        print()
    shares = {a: 1.0 / len(ctrs) for a in ctrs}
    return analyze(frame["artwork"], frame["clicked"], control=args.control, alpha=args.alpha, expected_shares=shares, unit="profile")


def _print_design_power(ctrs: dict[str, float], users: int, alpha: float) -> None:
    """What the demo's design can detect: the planned sample against the true effect."""
    (control, p_c), *rest = ctrs.items()
    best, p_t = max(rest, key=lambda kv: kv[1])
    if p_t == p_c or not 0 < p_c < 1 or not 0 < p_t < 1:
        return
    per_arm = users / len(ctrs)
    power = power_two_proportions(p_c, p_t - p_c, per_arm, per_arm, alpha)
    plan = plan_sample_size(p_c, p_t - p_c, alpha=alpha, power=0.8, arms=len(ctrs))
    print(
        f"Design: ~{per_arm:,.0f} users per arm give {power:.0%} power to detect the true {p_c:.0%} -> {p_t:.0%} "
        f"({best} vs {control}); 80% power needs {plan.n_per_arm:,} per arm."
    )


def _select(args: argparse.Namespace):
    """The logs' impressions of the chosen title and policy, and the line naming the engine: a frame
    (pandas engine), or the partitions' merged per-(profile, arm) table (dask engine, ``Selected``)."""
    from replay.commands._common import choose_engine
    from replay.logs import LogSchemaError, load_logs

    engine, paths, engine_line = choose_engine(args)
    if engine == "dask":
        return _select_on_dask(args, paths), engine_line
    try:
        frames = [load_logs(p) for p in paths] if paths else [load_logs(args.logs)]
    except LogSchemaError as exc:
        raise CliError(str(exc)) from None
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    has_policy = "policy" in frame.columns
    if args.policy is not None and has_policy:
        frame = frame[frame["policy"] == args.policy]
    _check_selection(args, has_policy, len(frame), set(frame["title"].astype(str).unique()))
    if args.title is not None:
        frame = frame[frame["title"] == args.title]
    return frame, engine_line


def _select_on_dask(args: argparse.Namespace, paths) -> Selected:
    from replay import dask_engine
    from replay.progress import Stages, progress_enabled

    on_progress = Stages(progress_enabled(args.progress))
    try:
        with dask_engine.client(args.scheduler) as c:
            selected = select_partitioned(paths, args.policy, args.title, runner=dask_engine.runner(c),
                                          on_progress=on_progress)
    finally:
        on_progress.close()
    _check_selection(args, selected.has_policy, selected.rows, selected.titles)
    return selected


def _check_selection(args: argparse.Namespace, has_policy: bool, rows: int, titles: set[str] | frozenset[str]) -> None:
    """``rows`` impressions of the chosen policy (all without --policy), of ``titles``."""
    if args.policy is not None:
        if not has_policy:
            raise CliError("--policy: the logs have no policy column")
        if rows == 0:
            raise CliError(f"--policy: zero users: no impressions were logged by policy {args.policy!r}")
    titles = sorted(titles)
    if args.title is not None:
        if args.title not in titles:
            raise CliError(f"--title: zero users: no impressions of title {args.title!r}; titles are {', '.join(titles[:10])}")
    elif len(titles) > 1:
        raise CliError(f"--title: the logs hold {len(titles)} titles ({', '.join(titles[:5])}{'...' if len(titles) > 5 else ''}); pick one")


def _logs_result(args: argparse.Namespace) -> tuple[ABTestResult, str]:
    source, engine_line = _select(args)
    if isinstance(source, Selected):
        counts, warns, srm_counts = unit_counts(source.table, args.unit)
        per_arm = source.propensity
    else:
        units = units_from_impressions(source, args.unit)
        counts, warns, srm_counts = None, units.warnings, units.srm_counts
        per_arm = source.groupby("artwork")["propensity"].agg(["min", "max"])
    shares = _parse_pairs(args.weights, "--weights") if args.weights else _logged_shares(per_arm)
    notes = list(warns)
    if shares is None:
        notes.append("SRM check against an equal split (the logged propensities are not a fixed split; give --weights)")
    if srm_counts is not None:
        notes.append("the SRM check counts profiles (the split randomizes profiles), not impressions")
    options = {"control": args.control, "alpha": args.alpha, "expected_shares": shares, "unit": args.unit,
               "warnings": notes, "srm_counts": srm_counts}
    if counts is not None:
        return analyze_counts(counts, **options), engine_line
    return analyze(units.arms, units.clicked, **options), engine_line


def _logged_shares(per_arm) -> dict[str, float] | None:
    """The designed split, read off the logs' per-arm (min, max) propensity: an `ab` policy logs
    each arm's weight as its propensity."""
    constant = (per_arm["max"] - per_arm["min"]).abs().max() <= _PROPENSITY_TOLERANCE
    if not constant or abs(per_arm["min"].sum() - 1.0) > 1e-3:
        return None
    return {str(a): float(w) for a, w in per_arm["min"].items()}


# -- output -----------------------------------------------------------------------------------


def result_json(result: ABTestResult, verdict: Verdict | None = None) -> dict:
    """The SPEC's shape; ``comparisons`` only with more than two arms, ``verdict`` only with a criterion."""
    comp = result.primary
    out: dict = {
        "arms": {a.arm: {"n": a.n, "clicks": a.clicks, "ctr": a.ctr} for a in result.arms},
        "z": comp.z,
        "p_value": comp.p_value,
        "ci": list(comp.ci),
        "lift_abs": comp.lift_abs,
        "lift_rel": comp.lift_rel,
        "srm_p_value": result.srm.p_value,
        "power": comp.power,
    }
    if len(result.comparisons) > 1:
        out["comparisons"] = {
            c.treatment: {
                "control": c.control,
                "z": c.z,
                "p_value": c.p_value,
                "p_value_holm": c.p_value_adjusted,
                "ci": list(c.ci),
                "lift_abs": c.lift_abs,
                "lift_rel": c.lift_rel,
                "power": c.power,
            }
            for c in result.comparisons
        }
    if verdict is not None:
        out["verdict"] = {
            "criterion": verdict.criterion.text,
            "treatment": verdict.treatment,
            "met": verdict.met,
            "checks": [{"clause": c.clause, "passed": c.passed, "observed": c.observed} for c in verdict.checks],
        }
    return out


def metrics_table(result: ABTestResult) -> str:
    lines = [f"{'arm':<16}{'n':>10}{'clicks':>10}{'CTR':>9}   {1 - result.alpha:.0%} interval"]
    for a in result.arms:
        lo, hi = a.interval(result.alpha)
        tag = "  (control)" if a.arm == result.control else ""
        lines.append(f"{a.arm:<16}{a.n:>10,}{a.clicks:>10,}{a.ctr:>9.2%}   [{lo:.2%}, {hi:.2%}]{tag}")
    lines.append("")
    lines.append(f"{'comparison':<16}{'lift':>9}{'rel':>9}{'z':>8}{'p':>10}   {'interval of difference':<24}{'power':>7}  significant")
    for c in result.comparisons:
        rel = "n/a" if c.lift_rel is None else f"{c.lift_rel:+.1%}"
        p = c.p_value_adjusted
        lines.append(
            f"{c.treatment + ' vs ' + c.control:<16}{c.lift_abs:>+9.4f}{rel:>9}{c.z:>8.3f}{p:>10.4g}   "
            f"{f'[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]':<24}{c.power:>7.1%}  {'yes' if c.significant else 'no'}"
        )
    srm = result.srm
    observed = ", ".join(f"{a} {s:.2%}" for a, s in zip(srm.arms, srm.observed_shares, strict=True))
    expected = ", ".join(f"{s:.2%}" for s in srm.expected_shares)
    lines.append("")
    lines.append(f"SRM: observed {observed} vs expected {expected}: chi2 = {srm.chi2:.3f}, p = {srm.p_value:.4g} ({srm.label})")
    return "\n".join(lines)


def _report(args: argparse.Namespace, result: ABTestResult, verdict: Verdict | None) -> None:
    from replay.ab_dashboard import interpretation

    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result_json(result, verdict)))
    else:
        print(metrics_table(result))
        if verdict is not None:
            print()
            print(f"Success criterion ({verdict.criterion.text}) for {verdict.treatment}: {'MET' if verdict.met else 'NOT met'}")
            for check in verdict.checks:
                print(f"  [{'x' if check.passed else ' '}] {check.clause}: {check.observed}")
        print()
        print(interpretation(result, verdict))
    if args.plot:
        _save_plot(args, result, verdict)


def _save_plot(args: argparse.Namespace, result: ABTestResult, verdict: Verdict | None) -> None:
    from replay.ab_dashboard import dashboard_figure

    title = f"A/B demo (seed {args.seed})" if args.demo else f"A/B test: {Path(args.logs).name}"
    try:
        dashboard_figure(result, verdict, title=title).savefig(args.plot, dpi=110)
    except OSError as exc:
        raise CliError(f"--plot: cannot write {args.plot}: {exc.strerror or exc}") from None
    print(f"wrote {args.plot}", file=sys.stderr)
