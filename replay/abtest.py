"""Fixed-split A/B analysis: per-arm CTR, two-proportion z-test, interval, SRM, power, planning.

Units of analysis
-----------------
``profile`` (default) is the randomization unit: the split hashes profiles, so profiles are the
independent trials. Each profile counts once, in the arm it was shown, and it *clicked* if any of
its impressions in that arm has ``reward > 0``. A profile logged in more than one arm (a
crossover: it breaks the fixed split) is excluded and counted in the result's warnings.

``impression`` treats every logged impression as a trial, clicked if ``reward > 0``. Repeated
impressions of one profile are correlated, so the z-test's standard error is too small and the
p-value too optimistic; the result carries a warning saying so.

Statistics (treatment t against control c, p = clicks / n)
-----------------------------------------------------------
- z-test: z = (p_t - p_c) / sqrt(p(1-p)(1/n_t + 1/n_c)) with the pooled p; two-sided p-value.
  When both arms are all-0 or all-1 the pooled SE is 0; we then report z = 0, p = 1 (no evidence).
- interval of p_t - p_c at level 1 - alpha: the unpooled (Wald) interval, clipped to [-1, 1],
  when every arm has at least ``SMALL_COUNT`` clicks and non-clicks; otherwise Newcombe's hybrid
  score interval (from the two Wilson intervals), which keeps its coverage at small counts and
  never has zero width (the Wald interval has zero width at 0 clicks in both arms).
- lift: absolute p_t - p_c; relative (p_t - p_c) / p_c (None when p_c = 0).
- achieved power: the power this test had, at these sample sizes, against the observed
  difference (pooled SE under the null, unpooled under the alternative).
- SRM: chi-square goodness of fit of the randomization units (profiles) per arm against the
  expected shares, whatever the unit of analysis; alarm below ``SRM_THRESHOLD`` (0.001, the
  usual choice: an SRM is a bug, not a borderline effect), and the label says so.
- more than two arms: each treatment against the control; significance uses Holm-adjusted
  p-values so the family-wise error stays at alpha (intervals are left per comparison).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from replay.errors import ReplayError

SRM_THRESHOLD = 0.001
UNITS = ("profile", "impression")
SMALL_COUNT = 10


class ABTestInputError(ReplayError):
    """Bad input to the analysis; ``argument`` names the offending argument."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    n: int
    clicks: int

    @property
    def ctr(self) -> float:
        return self.clicks / self.n

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Wald interval of this arm's CTR (for display)."""
        half = stats.norm.isf(alpha / 2) * math.sqrt(self.ctr * (1 - self.ctr) / self.n)
        return self.ctr - half, self.ctr + half


@dataclass(frozen=True)
class ArmComparison:
    """One treatment against the control."""

    treatment: str
    control: str
    z: float
    p_value: float
    p_value_adjusted: float
    ci: tuple[float, float]
    lift_abs: float
    lift_rel: float | None
    power: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value_adjusted < self.alpha

    @property
    def z_critical(self) -> float:
        return float(stats.norm.isf(self.alpha / 2))


@dataclass(frozen=True)
class SRMCheck:
    arms: tuple[str, ...]
    counts: tuple[int, ...]
    expected_shares: tuple[float, ...]
    chi2: float
    p_value: float
    threshold: float = SRM_THRESHOLD

    @property
    def alarm(self) -> bool:
        return self.p_value < self.threshold

    @property
    def label(self) -> str:
        """The verdict with its threshold, so "ok" next to p = 0.02 is not read as a pass at 0.05."""
        return f"ALARM: p < {self.threshold:g}" if self.alarm else f"ok: alarm only below {self.threshold:g}"

    @property
    def observed_shares(self) -> tuple[float, ...]:
        total = sum(self.counts)
        return tuple(c / total for c in self.counts)


@dataclass(frozen=True)
class ABTestResult:
    arms: tuple[ArmSummary, ...]
    control: str
    unit: str
    alpha: float
    comparisons: tuple[ArmComparison, ...]
    srm: SRMCheck
    warnings: tuple[str, ...] = ()

    def arm(self, name: str) -> ArmSummary:
        return next(a for a in self.arms if a.arm == name)

    @property
    def primary(self) -> ArmComparison:
        """The headline comparison: the only one with two arms, else the best-CTR treatment."""
        return max(self.comparisons, key=lambda c: (self.arm(c.treatment).ctr, -c.p_value))


@dataclass(frozen=True)
class SampleSizePlan:
    baseline: float
    target: float
    alpha: float
    power: float
    arms: int
    n_per_arm: int
    achieved_power: float

    @property
    def mde(self) -> float:
        return self.target - self.baseline

    @property
    def total(self) -> int:
        return self.n_per_arm * self.arms


@dataclass(frozen=True)
class UnitTable:
    """One row per unit of analysis: its arm and whether it clicked."""

    arms: np.ndarray
    clicked: np.ndarray
    unit: str
    warnings: tuple[str, ...] = ()
    srm_counts: dict[str, int] | None = None  # profiles per arm when the unit is not the profile


# --------------------------------------------------------------------------------------------
# Test statistics over plain counts


def two_proportion_ztest(clicks_t: float, n_t: float, clicks_c: float, n_c: float) -> tuple[float, float]:
    """Pooled two-proportion z statistic of p_t - p_c and its two-sided p-value."""
    p_t, p_c = clicks_t / n_t, clicks_c / n_c
    pooled = (clicks_t + clicks_c) / (n_t + n_c)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    if se == 0:
        return 0.0, 1.0
    z = (p_t - p_c) / se
    return float(z), float(2 * stats.norm.sf(abs(z)))


def wald_interval(
    clicks_t: float, n_t: float, clicks_c: float, n_c: float, alpha: float = 0.05
) -> tuple[float, float]:
    """Wald interval of p_t - p_c (unpooled SE) at level 1 - alpha, clipped to [-1, 1]."""
    p_t, p_c = clicks_t / n_t, clicks_c / n_c
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    half = float(stats.norm.isf(alpha / 2)) * se
    return max(-1.0, p_t - p_c - half), min(1.0, p_t - p_c + half)


def wilson_interval(clicks: float, n: float, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of one proportion."""
    z = float(stats.norm.isf(alpha / 2))
    p = clicks / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


def newcombe_interval(
    clicks_t: float, n_t: float, clicks_c: float, n_c: float, alpha: float = 0.05
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p_t - p_c (method 10 of Newcombe 1998)."""
    p_t, p_c = clicks_t / n_t, clicks_c / n_c
    l_t, u_t = wilson_interval(clicks_t, n_t, alpha)
    l_c, u_c = wilson_interval(clicks_c, n_c, alpha)
    d = p_t - p_c
    return (d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2),
            d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2))


def difference_interval(
    clicks_t: float, n_t: float, clicks_c: float, n_c: float, alpha: float = 0.05
) -> tuple[float, float]:
    """Interval of p_t - p_c: Wald when every count is large, Newcombe at small counts."""
    small = min(clicks_t, n_t - clicks_t, clicks_c, n_c - clicks_c) < SMALL_COUNT
    return (newcombe_interval if small else wald_interval)(clicks_t, n_t, clicks_c, n_c, alpha)


def power_two_proportions(p_c: float, diff: float, n_t: float, n_c: float, alpha: float = 0.05) -> float:
    """Power of the two-sided pooled z-test when the true CTRs are p_c and p_c + diff."""
    p_t = p_c + diff
    ratio = n_c / n_t
    pooled = (p_t + p_c * ratio) / (1 + ratio)
    # standard deviations per sqrt(n_t), as in statsmodels' power_proportions_2indep
    std_null = math.sqrt(pooled * (1 - pooled) * (1 + 1 / ratio))
    std_alt = math.sqrt(p_t * (1 - p_t) + p_c * (1 - p_c) / ratio)
    crit = float(stats.norm.isf(alpha / 2))
    shift = diff * math.sqrt(n_t)
    if std_alt == 0:  # the statistic is deterministic: it either always or never rejects
        return float(std_null > 0 and abs(shift) > crit * std_null)
    upper = stats.norm.sf((crit * std_null - shift) / std_alt)
    lower = stats.norm.cdf((-crit * std_null - shift) / std_alt)
    return float(upper + lower)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def srm_check(
    arms: Sequence[str], counts: Sequence[int], expected_shares: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SRMCheck:
    """Chi-square goodness of fit of units per arm against the expected split."""
    obs = np.asarray(counts, dtype=float)
    w = np.asarray(expected_shares, dtype=float)
    if obs.shape != w.shape or obs.size == 0:
        raise ABTestInputError("expected_shares", "need one expected share per arm")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ABTestInputError("expected_shares", f"shares must be non-negative with a positive sum, got {w.tolist()}")
    w = w / w.sum()
    total = obs.sum()
    if total <= 0:
        raise ABTestInputError("counts", "zero users: nothing to check")
    expected = w * total
    if np.any((expected == 0) & (obs > 0)):
        chi2, p = math.inf, 0.0  # units in an arm that should get none: certainly a mismatch
    else:
        live = expected > 0
        if live.sum() < 2:
            chi2, p = 0.0, 1.0
        else:
            chi2 = float(((obs[live] - expected[live]) ** 2 / expected[live]).sum())
            p = float(stats.chi2.sf(chi2, live.sum() - 1))
    return SRMCheck(
        arms=tuple(arms),
        counts=tuple(int(c) for c in obs),
        expected_shares=tuple(float(x) for x in w),
        chi2=chi2,
        p_value=p,
        threshold=threshold,
    )


# --------------------------------------------------------------------------------------------
# The analysis


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ABTestInputError("alpha", f"must be in (0, 1), got {alpha!r}")


def analyze_counts(
    counts: Mapping[str, tuple[int, int]],
    control: str | None = None,
    alpha: float = 0.05,
    expected_shares: Mapping[str, float] | None = None,
    unit: str = "profile",
    warnings: Sequence[str] = (),
    srm_counts: Mapping[str, int] | None = None,
) -> ABTestResult:
    """Analyse ``{arm: (units, clicks)}``; the control defaults to the first arm in sort order.

    ``srm_counts``: randomization units per arm for the SRM check when the unit of analysis is
    not the randomization unit (impressions of profile-hashed arms); default the units analysed.
    """
    _check_alpha(alpha)
    if unit not in UNITS:
        raise ABTestInputError("unit", f"must be one of {', '.join(UNITS)}, got {unit!r}")
    if not counts or sum(n for n, _ in counts.values()) == 0:
        raise ABTestInputError("counts", "zero users: there is nothing to analyse")
    summaries = []
    for arm in sorted(counts):
        n, clicks = counts[arm]
        if not arm:
            raise ABTestInputError("arms", "an arm has an empty name")
        if n <= 0:
            raise ABTestInputError("arms", f"arm {arm!r} is empty (0 users)")
        if not 0 <= clicks <= n:
            raise ABTestInputError("counts", f"arm {arm!r} has {clicks} clicks for {n} users")
        summaries.append(ArmSummary(arm, int(n), int(clicks)))
    names = [s.arm for s in summaries]
    if expected_shares is not None:
        missing = [a for a in expected_shares if a not in counts]
        if missing:
            raise ABTestInputError("arms", f"arm {missing[0]!r} is empty (0 users) but has an expected share")
    if len(summaries) < 2:
        raise ABTestInputError("arms", f"need at least two arms with users, got only {names[0]!r} (the other arm is empty)")
    if control is None:
        control = names[0]
    elif control not in counts:
        raise ABTestInputError("control", f"unknown control {control!r}; arms are {', '.join(names)}")

    c = next(s for s in summaries if s.arm == control)
    raw = []
    for t in summaries:
        if t.arm == control:
            continue
        z, p = two_proportion_ztest(t.clicks, t.n, c.clicks, c.n)
        ci = difference_interval(t.clicks, t.n, c.clicks, c.n, alpha)
        diff = t.ctr - c.ctr
        rel = diff / c.ctr if c.ctr > 0 else None
        power = power_two_proportions(c.ctr, diff, t.n, c.n, alpha)
        raw.append((t.arm, z, p, ci, diff, rel, power))
    adjusted = holm_adjust([r[2] for r in raw])
    comparisons = tuple(
        ArmComparison(arm, control, z, p, p_adj, ci, diff, rel, power, alpha)
        for (arm, z, p, ci, diff, rel, power), p_adj in zip(raw, adjusted, strict=True)
    )
    shares = [expected_shares.get(a, 0.0) for a in names] if expected_shares else [1.0] * len(names)
    srm_n = [s.n for s in summaries] if srm_counts is None else [int(srm_counts.get(a, 0)) for a in names]
    srm = srm_check(names, srm_n, shares)
    return ABTestResult(tuple(summaries), control, unit, alpha, comparisons, srm, tuple(warnings))


def analyze(
    arms: Sequence[str] | np.ndarray,
    clicked: Sequence[bool] | np.ndarray,
    control: str | None = None,
    alpha: float = 0.05,
    expected_shares: Mapping[str, float] | None = None,
    unit: str = "profile",
    warnings: Sequence[str] = (),
    srm_counts: Mapping[str, int] | None = None,
) -> ABTestResult:
    """Analyse one row per unit: the unit's arm and whether it clicked."""
    arm_arr = np.asarray(arms, dtype=object)
    clicked_arr = np.asarray(clicked)
    if arm_arr.shape != clicked_arr.shape or arm_arr.ndim != 1:
        raise ABTestInputError("clicked", "must have one entry per unit, like arms")
    if arm_arr.size == 0:
        raise ABTestInputError("arms", "zero users: there is nothing to analyse")
    frame = pd.DataFrame({"arm": arm_arr.astype(str), "clicked": clicked_arr.astype(bool)})
    grouped = frame.groupby("arm", sort=True)["clicked"].agg(["size", "sum"])
    counts = {str(a): (int(row["size"]), int(row["sum"])) for a, row in grouped.iterrows()}
    return analyze_counts(counts, control, alpha, expected_shares, unit, warnings, srm_counts)


def units_from_impressions(impressions: pd.DataFrame, unit: str = "profile") -> UnitTable:
    """Collapse logged impressions (columns profile, artwork, reward) to units of analysis."""
    if unit not in UNITS:
        raise ABTestInputError("unit", f"must be one of {', '.join(UNITS)}, got {unit!r}")
    missing = [c for c in ("profile", "artwork", "reward") if c not in impressions.columns]
    if missing:
        raise ABTestInputError("impressions", f"missing column(s) {', '.join(missing)}")
    if len(impressions) == 0:
        raise ABTestInputError("impressions", "zero users: the logs hold no impressions")
    clicked = impressions["reward"].astype(float).to_numpy() > 0
    if unit == "impression":
        repeats = len(impressions) - impressions["profile"].nunique()
        warns = (repeat_warning(repeats),)
        # The split randomizes profiles: the SRM check counts each profile once, in its first arm.
        first = impressions.drop_duplicates("profile")["artwork"].astype(str).value_counts()
        return UnitTable(impressions["artwork"].astype(str).to_numpy(), clicked, unit, warns,
                         {str(a): int(c) for a, c in first.items()})
    frame = pd.DataFrame({"profile": impressions["profile"].astype(str), "arm": impressions["artwork"].astype(str), "clicked": clicked})
    per_profile = frame.groupby("profile", sort=False).agg(arms=("arm", "nunique"), arm=("arm", "first"), clicked=("clicked", "any"))
    crossover = per_profile["arms"] > 1
    warns: tuple[str, ...] = ()
    if crossover.any():
        warns = (crossover_warning(int(crossover.sum()), len(per_profile)),)
    kept = per_profile[~crossover]
    if kept.empty:
        raise ABTestInputError("impressions", "zero users: every profile was shown more than one arm")
    return UnitTable(kept["arm"].to_numpy(dtype=object), kept["clicked"].to_numpy(dtype=bool), unit, warns)


def repeat_warning(repeats: int) -> str:
    return (f"unit=impression: {repeats} impressions repeat a profile; repeated impressions are "
            "correlated, so the standard error is understated and the p-value optimistic")


def crossover_warning(crossed: int, profiles: int) -> str:
    return f"{crossed} of {profiles} profiles were shown more than one arm; they break the fixed split and are excluded"


# --------------------------------------------------------------------------------------------
# Planning


def plan_sample_size(
    baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8, arms: int = 2, relative: bool = False
) -> SampleSizePlan:
    """Smallest equal sample per arm giving the pooled z-test ``power`` against ``mde``.

    ``mde`` is absolute (0.24 -> 0.30 is 0.06) unless ``relative`` (0.25 for the same). With more
    than two arms, each of the ``arms - 1`` treatments is compared with the control and the
    analysis adjusts the p-values (Holm), so each comparison is planned at alpha / (arms - 1)
    (Bonferroni, Holm's strictest step): every treatment then has at least ``power``.
    """
    _check_alpha(alpha)
    if not 0 < baseline < 1:
        raise ABTestInputError("baseline", f"must be in (0, 1), got {baseline!r}")
    diff = mde * baseline if relative else mde
    target = baseline + diff
    if diff == 0 or not 0 < target < 1:
        raise ABTestInputError("mde", f"baseline + mde must be in (0, 1) and differ from the baseline, got {target!r}")
    if not alpha < power < 1:
        raise ABTestInputError("power", f"must be in (alpha, 1), got {power!r}")
    if arms < 2:
        raise ABTestInputError("arms", f"need at least two arms, got {arms}")
    per_test = alpha / (arms - 1)
    pooled = (baseline + target) / 2
    std_null = math.sqrt(2 * pooled * (1 - pooled))
    std_alt = math.sqrt(baseline * (1 - baseline) + target * (1 - target))
    z_a, z_b = stats.norm.isf(per_test / 2), stats.norm.isf(1 - power)
    n = max(2, math.ceil(((z_a * std_null + z_b * std_alt) / abs(diff)) ** 2))
    # the closed form ignores the far rejection tail; step down while the exact power still holds
    while n > 2 and power_two_proportions(baseline, diff, n - 1, n - 1, per_test) >= power:
        n -= 1
    return SampleSizePlan(baseline, target, alpha, power, arms, n,
                          power_two_proportions(baseline, diff, n, n, per_test))


# --------------------------------------------------------------------------------------------
# Success criterion


@dataclass(frozen=True)
class SuccessCriterion:
    """All clauses must hold for the primary comparison."""

    text: str
    min_lift_rel: float | None = None
    min_lift_abs: float | None = None
    max_p_value: float | None = None
    require_significant: bool = False


@dataclass(frozen=True)
class CriterionCheck:
    clause: str
    passed: bool
    observed: str


@dataclass(frozen=True)
class Verdict:
    criterion: SuccessCriterion
    treatment: str
    checks: tuple[CriterionCheck, ...]

    @property
    def met(self) -> bool:
        return all(c.passed for c in self.checks)


_CLAUSE = re.compile(r"^(lift_rel|lift_abs|p|p_value)\s*(>=|<=|<|>)\s*([0-9.]+)\s*(%?)$")


def parse_criterion(text: str) -> SuccessCriterion:
    """Parse clauses joined by ``and``/``,``: ``significant``, ``lift_rel>=10%``, ``lift_abs>=0.02``, ``p<0.01``."""
    clauses = [c.strip().lower() for c in re.split(r"\band\b|,", text) if c.strip()]
    if not clauses:
        raise ABTestInputError("criterion", "is empty")
    values: dict[str, float | bool] = {}
    for clause in clauses:
        if clause == "significant":
            values["require_significant"] = True
            continue
        m = _CLAUSE.match(clause)
        if not m:
            raise ABTestInputError(
                "criterion", f"cannot read {clause!r}; use e.g. 'lift_rel>=10% and significant', 'lift_abs>=0.02', 'p<0.01'"
            )
        name, op, number, pct = m.groups()
        value = float(number) / (100 if pct else 1)
        if name.startswith("lift") and op not in (">=", ">"):
            raise ABTestInputError("criterion", f"{name} takes a lower bound (>=), got {clause!r}")
        if name.startswith("p") and op not in ("<", "<="):
            raise ABTestInputError("criterion", f"p takes an upper bound (<), got {clause!r}")
        key = {"lift_rel": "min_lift_rel", "lift_abs": "min_lift_abs"}.get(name, "max_p_value")
        values[key] = value
    return SuccessCriterion(text=text, **values)  # type: ignore[arg-type]


def evaluate_criterion(comparison: ArmComparison, criterion: SuccessCriterion) -> Verdict:
    checks = []
    if criterion.min_lift_rel is not None:
        rel = comparison.lift_rel
        checks.append(
            CriterionCheck(
                f"relative lift >= {criterion.min_lift_rel:.1%}",
                rel is not None and rel >= criterion.min_lift_rel,
                "undefined (control CTR is 0)" if rel is None else f"{rel:+.1%}",
            )
        )
    if criterion.min_lift_abs is not None:
        checks.append(
            CriterionCheck(
                f"absolute lift >= {criterion.min_lift_abs:.4g}",
                comparison.lift_abs >= criterion.min_lift_abs,
                f"{comparison.lift_abs:+.4f}",
            )
        )
    if criterion.max_p_value is not None:
        checks.append(
            CriterionCheck(
                f"p < {criterion.max_p_value:g}",
                comparison.p_value_adjusted < criterion.max_p_value,
                f"p = {comparison.p_value_adjusted:.4g}",
            )
        )
    if criterion.require_significant:
        checks.append(
            CriterionCheck(
                f"significant at alpha = {comparison.alpha:g}",
                comparison.significant,
                f"p = {comparison.p_value_adjusted:.4g}",
            )
        )
    return Verdict(criterion, comparison.treatment, tuple(checks))
