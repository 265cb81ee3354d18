"""Presenting results: text tables, the SPEC's JSON shape, PNG plots, segment breakdowns."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: evaluate's report must not import check's scipy.stats
    from replay.estimators import Estimate
    from replay.evaluation import Evaluation
    from replay.integrity import IntegrityReport


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if x != x else f"{x:.{digits}f}"


def estimates_json(evaluation: Evaluation) -> dict:
    """The SPEC shape: {"n", "policies": {NAME: {ESTIMATOR: {"value", "ci"}}}} (NaN -> null), plus
    {"by": {COLUMN: {VALUE: {"n", "policies": {...}}}}} when a breakdown was asked for."""

    def num(x: float) -> float | None:
        return None if x != x else float(x)

    def policies(per_policy: dict[str, tuple[Estimate, ...]]) -> dict:
        return {name: {e.estimator: {"value": num(e.value), "ci": [num(e.ci[0]), num(e.ci[1])]} for e in ests}
                for name, ests in per_policy.items()}

    out = {"n": evaluation.n, "policies": policies(evaluation.estimates)}
    if evaluation.by_column is not None:
        out["by"] = {evaluation.by_column: {
            value: {"n": evaluation.by_n[value], "policies": policies(per_policy)}
            for value, per_policy in evaluation.by_group.items()
        }}
    return out


def _rows(estimates: dict[str, tuple[Estimate, ...]], first: str) -> list[list[str]]:
    rows = [[first, "estimator", "value", "95% interval", "ess"]]
    for name, ests in estimates.items():
        for e in ests:
            lvl = f"{e.level:.0%}"
            rows[0][3] = f"{lvl} interval"
            rows.append([name, e.estimator, _fmt(e.value), f"[{_fmt(e.ci[0])}, {_fmt(e.ci[1])}]", f"{e.ess:,.0f}"])
    return rows


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def estimates_table(evaluation: Evaluation) -> str:
    """One line per policy and estimator, then warnings, then the segment breakdown if any."""
    out = [f"{evaluation.n:,} logged impressions", "", _table(_rows(evaluation.estimates, "policy"))]
    notes = []
    for name, ests in evaluation.estimates.items():
        seen: dict[str, list[str]] = {}
        for e in ests:
            for w in e.warnings:
                seen.setdefault(w, []).append(e.estimator)
        for w in evaluation.policy_warnings.get(name, ()):
            seen.setdefault(w, [])
        notes += [f"  {name} ({', '.join(who)}): {w}" if who else f"  {name}: {w}" for w, who in seen.items()]
    if notes:
        out += ["", "warnings:", *notes]
    if evaluation.by_group:
        out += ["", f"by {evaluation.by_column}:", group_table(evaluation)]
    return "\n".join(out)


def group_table(evaluation: Evaluation) -> str:
    """One row per (group, policy), one column per estimator: value and the interval's half-width."""
    names: list[str] = []
    for per_policy in evaluation.by_group.values():
        for ests in per_policy.values():
            names += [e.estimator for e in ests if e.estimator not in names]
    rows = [[evaluation.by_column or "group", "rows", "policy", *names]]
    for value, per_policy in evaluation.by_group.items():
        for name, ests in per_policy.items():
            by = {e.estimator: e for e in ests}
            rows.append([value, f"{evaluation.by_n.get(value, 0):,}", name, *(f"{_fmt(by[x].value)} ±{_fmt((by[x].ci[1] - by[x].ci[0]) / 2, 3)}"
                                      if x in by else "" for x in names)])
    return _table(rows)


def plot_estimates(evaluation: Evaluation, path: str | Path) -> None:
    """PNG: each policy's estimates as points with interval bars (one colour per estimator)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(evaluation.estimates)
    names = sorted({e.estimator for ests in evaluation.estimates.values() for e in ests},
                   key=["replay", "ips", "snips", "dm", "dr"].index)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(policies) * max(len(names), 1) / 3), 4), dpi=110)
    width = 0.8 / max(len(names), 1)
    for j, est in enumerate(names):
        xs, ys, lo, hi = [], [], [], []
        for i, p in enumerate(policies):
            for e in evaluation.estimates[p]:
                if e.estimator == est and e.value == e.value:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(e.value)
                    lo.append(e.value - e.ci[0])
                    hi.append(e.ci[1] - e.value)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=est)
    ax.set_xticks(range(len(policies)), policies, rotation=15)
    ax.set_ylabel("estimated value (reward per impression)")
    ax.set_title(f"Off-policy estimates, n={evaluation.n:,}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def integrity_json(report: IntegrityReport) -> dict:
    return {
        "flagged": report.flagged,
        "alpha": report.alpha,
        "groups": [
            {
                "title": g.title, "policy": g.policy, "n": g.n,
                "artworks": {a: {"served": o, "expected": round(e, 3), "implied_rows": round(s, 3)}
                             for a, o, e, s in zip(g.artworks, g.observed, g.expected, g.implied, strict=True)},
                "chi2": g.statistic, "dof": g.dof, "p_value": g.p_value, "p_adjusted": g.p_adjusted,
                "method": g.method, "unit": g.unit,
                "min_propensity": g.min_propensity, "ess": g.ess, "flags": list(g.flags), "warnings": list(g.warnings),
            }
            for g in report.groups
        ],
    }


def integrity_table(report: IntegrityReport) -> str:
    rows = [["title", "policy", "units", "test", "chi2", "dof", "p", "p (Holm)", "min prop", "ess", "status"]]
    for g in report.groups:
        rows.append([g.title, g.policy, f"{g.n:,} {g.unit}s", g.method, f"{g.statistic:.2f}", f"{g.dof:.1f}",
                     f"{g.p_value:.3g}", f"{g.p_adjusted:.3g}", f"{g.min_propensity:.3g}", f"{g.ess:,.0f}",
                     "FLAGGED" if g.flags else ("warning" if g.warnings else "ok")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = []
    for g in report.groups:
        if g.flags or g.warnings:
            details.append(f"{g.title} / {g.policy}:")
            details += [f"  - {f}" for f in g.flags]
            details += [f"  - warning: {w}" for w in g.warnings]
        if g.flags:
            details += [f"    {a}: served {o}, expected {e:.1f}" for a, o, e in zip(g.artworks, g.observed, g.expected, strict=True)]
    verdict = ("FLAGGED: do not trust off-policy estimates from these logs until this is explained"
               if report.flagged else "ok: logged propensities are consistent with what was served")
    verdict += f" (alpha {report.alpha:g}, Holm-adjusted over {len(report.groups)} title/policy groups)"
    return "\n".join([*lines, "", *details, verdict] if details else [*lines, "", verdict])
