"""The A/B result for people: a four-panel dashboard and a plain-English reading.

Panels: CTR by arm with intervals; the null z distribution with the rejection regions and the
observed z; the interval of each difference against 0; a significance scorecard.
Figures are built on ``matplotlib.figure.Figure`` (Agg canvas), never through pyplot's global
state, so callers decide whether and where to save them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from replay.abtest import ABTestResult, ArmComparison, Verdict, plan_sample_size

_GOOD, _BAD, _NEUTRAL = "#2e7d32", "#c62828", "#546e7a"


def _fmt_rel(rel: float | None) -> str:
    return "n/a" if rel is None else f"{rel:+.1%}"


def dashboard_figure(result: ABTestResult, verdict: Verdict | None = None, title: str | None = None) -> Figure:
    fig = Figure(figsize=(13, 9), layout="constrained")
    fig.suptitle(title or f"A/B test: {', '.join(a.arm for a in result.arms)} (control {result.control})", fontsize=14)
    ax_ctr, ax_z, ax_ci, ax_card = fig.subplots(2, 2).ravel()
    _ctr_panel(ax_ctr, result)
    _z_panel(ax_z, result.primary)
    _ci_panel(ax_ci, result, verdict)
    _scorecard_panel(ax_card, result, verdict)
    return fig


def _ctr_panel(ax, result: ABTestResult) -> None:
    level = 1 - result.alpha
    names = [a.arm for a in result.arms]
    ctrs = np.array([a.ctr for a in result.arms])
    intervals = np.array([a.interval(result.alpha) for a in result.arms])
    colors = [_NEUTRAL if a == result.control else "#1565c0" for a in names]
    x = np.arange(len(names))
    ax.bar(x, ctrs, color=colors, alpha=0.85)
    ax.errorbar(x, ctrs, yerr=[ctrs - intervals[:, 0], intervals[:, 1] - ctrs], fmt="none", ecolor="black", capsize=8)
    for xi, arm in zip(x, result.arms, strict=True):
        ax.annotate(f"{arm.ctr:.1%}\n{arm.clicks}/{arm.n}", (xi, arm.ctr), textcoords="offset points", xytext=(18, 4), fontsize=9)
    ax.set_xticks(x, [f"{n}\n(control)" if n == result.control else n for n in names])
    ax.set_ylabel(f"CTR per {result.unit}")
    ax.set_ylim(0, max(1e-3, float(intervals[:, 1].max())) * 1.25)
    ax.set_title(f"CTR by arm ({level:.0%} intervals)")


def _z_panel(ax, comparison: ArmComparison) -> None:
    crit = comparison.z_critical
    span = max(4.0, abs(comparison.z) + 1.0)
    x = np.linspace(-span, span, 801)
    pdf = stats.norm.pdf(x)
    ax.plot(x, pdf, color="black", lw=1.5, label="z under H0 (no difference)")
    ax.fill_between(x, pdf, where=x <= -crit, color=_BAD, alpha=0.3, label=f"rejection region (|z| > {crit:.2f})")
    ax.fill_between(x, pdf, where=x >= crit, color=_BAD, alpha=0.3)
    color = _GOOD if comparison.significant else _NEUTRAL
    ax.axvline(comparison.z, color=color, lw=2.5, label=f"observed z = {comparison.z:.2f} (p = {comparison.p_value:.3g})")
    ax.set_xlabel("z")
    ax.set_ylabel("density")
    ax.set_title(f"z-test: {comparison.treatment} vs {comparison.control}")
    ax.legend(loc="upper left", fontsize=8)


def _ci_panel(ax, result: ABTestResult, verdict: Verdict | None) -> None:
    comps = result.comparisons
    y = np.arange(len(comps))
    for yi, comp in zip(y, comps, strict=True):
        lo, hi = comp.ci
        color = _GOOD if lo > 0 else _BAD if hi < 0 else _NEUTRAL
        ax.errorbar(comp.lift_abs, yi, xerr=[[comp.lift_abs - lo], [hi - comp.lift_abs]], fmt="o", color=color, capsize=8, lw=2)
        ax.annotate(f"{comp.lift_abs:+.3f}  [{lo:+.3f}, {hi:+.3f}]", (comp.lift_abs, yi), textcoords="offset points", xytext=(0, 10), ha="center", fontsize=9)
    ax.axvline(0, color="black", ls="--", lw=1, label="no difference")
    if verdict is not None and verdict.criterion.min_lift_abs is not None:
        ax.axvline(verdict.criterion.min_lift_abs, color=_GOOD, ls=":", lw=1.5, label="success bar (absolute lift)")
    ax.set_yticks(y, [f"{c.treatment} - {c.control}" for c in comps])
    ax.set_ylim(-0.8, len(comps) - 0.2)
    ax.set_xlabel("difference in CTR (treatment - control)")
    ax.set_title(f"{1 - result.alpha:.0%} interval of the difference vs 0")
    ax.legend(loc="lower right", fontsize=8)


def _scorecard_panel(ax, result: ABTestResult, verdict: Verdict | None) -> None:
    comp = result.primary
    mark = {True: "PASS", False: "FAIL"}
    rows = [
        ("comparison", f"{comp.treatment} vs {comp.control}"),
        ("unit of analysis", result.unit),
        ("absolute lift", f"{comp.lift_abs:+.4f}"),
        ("relative lift", _fmt_rel(comp.lift_rel)),
        ("z", f"{comp.z:.3f}"),
        ("p-value" + (" (Holm)" if len(result.comparisons) > 1 else ""), f"{comp.p_value_adjusted:.4g}"),
        (f"{1 - result.alpha:.0%} CI of difference", f"[{comp.ci[0]:+.4f}, {comp.ci[1]:+.4f}]"),
        (f"significant (alpha {result.alpha:g})", "YES" if comp.significant else "NO"),
        ("achieved power", f"{comp.power:.1%}"),
        ("sample ratio (SRM p)", f"{result.srm.p_value:.3g} " + ("ALARM" if result.srm.alarm else "ok")),
        ("SRM alarm threshold", f"p < {result.srm.threshold:g}"),
    ]
    if verdict is not None:
        rows += [(f"criterion: {c.clause}", f"{mark[c.passed]} ({c.observed})") for c in verdict.checks]
        rows.append(("verdict", "criterion MET" if verdict.met else "criterion NOT met"))
    ax.axis("off")
    table = ax.table(cellText=[list(r) for r in rows], colLabels=["check", "value"], loc="center", cellLoc="left", colWidths=[0.55, 0.45])
    table.auto_set_font_size(False)
    table.set_fontsize(9.5)
    table.scale(1, 1.3)
    for (row, col), cell in table.get_celld().items():
        text = cell.get_text().get_text()
        if row == 0:
            cell.set_text_props(weight="bold")
        elif col == 1 and (text.startswith(("PASS", "YES", "criterion MET")) or text.endswith("ok")):
            cell.set_text_props(color=_GOOD, weight="bold")
        elif col == 1 and (text.startswith(("FAIL", "NO", "criterion NOT")) or text.endswith("ALARM")):
            cell.set_text_props(color=_BAD, weight="bold")
    ax.set_title("Significance scorecard", pad=14)


def interpretation(result: ABTestResult, verdict: Verdict | None = None) -> str:
    """What the numbers say, and what to do, in plain English."""
    comp = result.primary
    t, c = result.arm(comp.treatment), result.arm(comp.control)
    level = 1 - result.alpha
    lines = [
        f"Artwork {t.arm} was clicked by {t.ctr:.1%} of {t.n:,} {result.unit}s and the control {c.arm} "
        f"by {c.ctr:.1%} of {c.n:,}: a difference of {comp.lift_abs * 100:+.1f} percentage points "
        f"({_fmt_rel(comp.lift_rel)} relative).",
    ]
    lo, hi = comp.ci
    if comp.significant:
        direction = "better" if comp.lift_abs > 0 else "worse"
        lines.append(
            f"The difference is statistically significant (z = {comp.z:.2f}, p = {comp.p_value_adjusted:.3g} < {result.alpha:g}): "
            f"if the artworks performed the same, a gap this large would be rare. {t.arm} is {direction} than {c.arm}; "
            f"the true difference is plausibly between {lo * 100:+.1f} and {hi * 100:+.1f} points ({level:.0%} interval)."
        )
    else:
        lines.append(
            f"The difference is not statistically significant (z = {comp.z:.2f}, p = {comp.p_value_adjusted:.3g} >= {result.alpha:g}); "
            f"the {level:.0%} interval [{lo * 100:+.1f}, {hi * 100:+.1f}] points includes no difference at all."
        )
    lines.append(f"With these sample sizes the test had {comp.power:.0%} power to detect a difference as large as the one observed.")
    if len(result.comparisons) > 1:
        lines.append(f"{len(result.comparisons)} treatments were each compared with {c.arm}; p-values are Holm-adjusted.")
    lines.append(
        f"Sample ratio check: p = {result.srm.p_value:.3g} ({result.srm.label}) "
        + ("-- the split does NOT match the design." if result.srm.alarm else "-- the split matches the design.")
    )
    lines.extend(result.warnings)
    lines.append("Recommendation: " + _recommendation(result, verdict))
    return "\n".join(lines)


def _recommendation(result: ABTestResult, verdict: Verdict | None) -> str:
    comp = result.primary
    if result.srm.alarm:
        return (
            "do not act on this result. The arms did not receive the traffic the design says they should "
            "(sample ratio mismatch), so assignment or logging is broken and every number above is suspect; fix that first."
        )
    if verdict is not None:
        failed = [ch for ch in verdict.checks if not ch.passed]
        if not failed:
            return f"ship artwork {comp.treatment}: it meets the success criterion ({verdict.criterion.text})."
        reasons = "; ".join(f"{ch.clause} (observed {ch.observed})" for ch in failed)
        if comp.significant and comp.lift_abs > 0:
            return f"{comp.treatment} is significantly better but misses the success criterion: {reasons}. Keep {comp.control} unless the smaller gain is worth shipping."
        return f"keep {comp.control}: the success criterion is not met: {reasons}." + _more_data_hint(result)
    if comp.significant and comp.lift_abs > 0:
        return f"ship artwork {comp.treatment}."
    if comp.significant:
        return f"keep artwork {comp.control}; {comp.treatment} performs worse."
    return f"keep artwork {comp.control} for now; the test is inconclusive." + _more_data_hint(result)


def _more_data_hint(result: ABTestResult) -> str:
    comp = result.primary
    c = result.arm(comp.control)
    if comp.lift_abs == 0 or not 0 < c.ctr < 1 or not 0 < c.ctr + comp.lift_abs < 1:
        return ""
    plan = plan_sample_size(c.ctr, comp.lift_abs, alpha=result.alpha, power=0.8)
    return f" To detect a gap of {comp.lift_abs * 100:+.1f} points with 80% power, plan about {plan.n_per_arm:,} {result.unit}s per arm."
