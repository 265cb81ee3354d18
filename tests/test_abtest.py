"""A/B analysis: statistics against statsmodels, SRM, planning, units, criterion, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    power_proportions_2indep,
    proportions_ztest,
    samplesize_proportions_2indep_onetail,
)

from replay.ab_dashboard import dashboard_figure, interpretation
from replay.ab_demo import CLASSIC_CTRS, simulate_split_experiment
from replay.abtest import (
    ABTestInputError,
    analyze,
    analyze_counts,
    difference_interval,
    evaluate_criterion,
    holm_adjust,
    newcombe_interval,
    parse_criterion,
    plan_sample_size,
    power_two_proportions,
    srm_check,
    two_proportion_ztest,
    units_from_impressions,
    wald_interval,
)
from replay.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC_KEYS = {"arms", "z", "p_value", "ci", "lift_abs", "lift_rel", "srm_p_value", "power"}


@st.composite
def two_arms(draw):
    n_t = draw(st.integers(1, 1_000_000))
    n_c = draw(st.integers(1, 1_000_000))
    return draw(st.integers(0, n_t)), n_t, draw(st.integers(0, n_c)), n_c


# -- statistics against statsmodels ------------------------------------------------------------


@given(two_arms())
def test_z_and_p_equal_statsmodels(arms):
    x_t, n_t, x_c, n_c = arms
    assume(0 < x_t + x_c < n_t + n_c)  # statsmodels is undefined (0/0) when the pooled CTR is 0 or 1
    z, p = two_proportion_ztest(x_t, n_t, x_c, n_c)
    z_ref, p_ref = proportions_ztest([x_t, x_c], [n_t, n_c])
    assert z == pytest.approx(z_ref, rel=1e-9, abs=1e-9)
    assert p == pytest.approx(p_ref, rel=1e-9, abs=1e-9)


@given(two_arms(), st.sampled_from([0.01, 0.05, 0.1, 0.2]))
def test_wald_interval_equals_statsmodels_clipped(arms, alpha):
    x_t, n_t, x_c, n_c = arms
    lo, hi = wald_interval(x_t, n_t, x_c, n_c, alpha)
    lo_ref, hi_ref = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff", alpha=alpha)
    assert lo == pytest.approx(max(lo_ref, -1.0), abs=1e-9)
    assert hi == pytest.approx(min(hi_ref, 1.0), abs=1e-9)
    assert -1.0 <= lo <= hi <= 1.0


@given(two_arms(), st.sampled_from([0.01, 0.05, 0.1, 0.2]))
def test_newcombe_interval_equals_statsmodels(arms, alpha):
    x_t, n_t, x_c, n_c = arms
    lo, hi = newcombe_interval(x_t, n_t, x_c, n_c, alpha)
    lo_ref, hi_ref = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff", alpha=alpha)
    assert lo == pytest.approx(lo_ref, abs=1e-9)
    assert hi == pytest.approx(hi_ref, abs=1e-9)


def test_small_counts_use_newcombe_and_never_zero_width():
    lo, hi = difference_interval(0, 40, 0, 40)
    assert hi - lo > 0.1  # Wald: [0, 0]
    assert (lo, hi) == newcombe_interval(0, 40, 0, 40)
    assert difference_interval(300, 1000, 240, 1000) == wald_interval(300, 1000, 240, 1000)


def test_small_count_interval_covers():
    # 2,000 simulated experiments with 30 users per arm at CTRs 5% and 10%: Wald covers ~88%.
    rng = np.random.default_rng(0)
    x_t, x_c = rng.binomial(30, 0.10, 2000), rng.binomial(30, 0.05, 2000)
    cover = [lo <= 0.05 <= hi for lo, hi in (difference_interval(a, 30, b, 30) for a, b in zip(x_t, x_c, strict=True))]
    assert np.mean(cover) >= 0.93


@pytest.mark.parametrize("clicks", [0, 1])
def test_degenerate_arms_give_no_evidence(clicks):
    n = 50
    assert two_proportion_ztest(clicks * n, n, clicks * n, n) == (0.0, 1.0)


@given(
    st.floats(0.01, 0.9),
    st.floats(-0.3, 0.3),
    st.integers(10, 200_000),
    st.floats(0.2, 5.0),
    st.sampled_from([0.01, 0.05, 0.1]),
)
def test_power_equals_statsmodels(p_c, diff, n_t, ratio, alpha):
    assume(0.001 < p_c + diff < 0.999)
    ours = power_two_proportions(p_c, diff, n_t, n_t * ratio, alpha)
    ref = power_proportions_2indep(diff, p_c, n_t, ratio=ratio, alpha=alpha, return_results=False)
    assert ours == pytest.approx(float(ref), abs=1e-9)


@pytest.mark.parametrize(
    ("baseline", "mde", "alpha", "power"),
    [(0.24, 0.06, 0.05, 0.8), (0.05, 0.01, 0.05, 0.9), (0.5, -0.05, 0.01, 0.8), (0.9, 0.02, 0.1, 0.95)],
)
def test_plan_is_the_smallest_sample_with_the_power(baseline, mde, alpha, power):
    plan = plan_sample_size(baseline, mde, alpha=alpha, power=power)
    at_n = power_proportions_2indep(mde, baseline, plan.n_per_arm, alpha=alpha, return_results=False)
    below = power_proportions_2indep(mde, baseline, plan.n_per_arm - 1, alpha=alpha, return_results=False)
    assert at_n >= power > below
    closed_form = samplesize_proportions_2indep_onetail(mde, baseline, power, alpha=alpha)
    assert abs(plan.n_per_arm - np.ceil(closed_form)) <= 1
    assert plan.total == 2 * plan.n_per_arm


@pytest.mark.parametrize("arms", [3, 5])
def test_plan_for_k_arms_gives_each_treatment_the_power_after_holm(arms):
    plan = plan_sample_size(0.24, 0.06, alpha=0.05, power=0.8, arms=arms)
    per_test = 0.05 / (arms - 1)
    at_n = power_proportions_2indep(0.06, 0.24, plan.n_per_arm, alpha=per_test, return_results=False)
    below = power_proportions_2indep(0.06, 0.24, plan.n_per_arm - 1, alpha=per_test, return_results=False)
    assert at_n >= 0.8 > below
    # Simulated: the Holm-adjusted analysis finds one true treatment (others null) >= 80% of the time.
    rng = np.random.default_rng(arms)
    n = plan.n_per_arm
    hits = 0
    for _ in range(400):
        counts = {"a0": (n, int(rng.binomial(n, 0.24))), "a1": (n, int(rng.binomial(n, 0.30)))}
        counts.update({f"a{j}": (n, int(rng.binomial(n, 0.24))) for j in range(2, arms)})
        result = analyze_counts(counts, control="a0")
        hits += next(c for c in result.comparisons if c.treatment == "a1").significant
    assert hits / 400 >= 0.8 - 2 * np.sqrt(0.8 * 0.2 / 400)


def test_relative_mde_is_the_same_plan_as_absolute():
    absolute = plan_sample_size(0.24, 0.06)
    relative = plan_sample_size(0.24, 0.25, relative=True)
    assert relative.n_per_arm == absolute.n_per_arm
    assert relative.target == pytest.approx(0.30)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"baseline": 0.0, "mde": 0.05}, "baseline"),
        ({"baseline": 0.24, "mde": 0.0}, "mde"),
        ({"baseline": 0.24, "mde": 0.9}, "mde"),
        ({"baseline": 0.24, "mde": 0.06, "power": 1.0}, "power"),
        ({"baseline": 0.24, "mde": 0.06, "alpha": 0.0}, "alpha"),
    ],
)
def test_plan_rejects_bad_input_naming_the_argument(kwargs, argument):
    with pytest.raises(ABTestInputError) as err:
        plan_sample_size(**kwargs)
    assert err.value.argument == argument


# -- sample ratio mismatch ---------------------------------------------------------------------


def test_hashed_fifty_fifty_over_100k_profiles_does_not_alarm():
    frame = simulate_split_experiment(100_000, CLASSIC_CTRS, np.random.default_rng(0), salt="srm-check")
    counts = frame["artwork"].value_counts()
    assert abs(counts["A"] / 100_000 - 0.5) < 0.01 and abs(counts["B"] / 100_000 - 0.5) < 0.01
    srm = srm_check(["A", "B"], [counts["A"], counts["B"]], [0.5, 0.5])
    assert not srm.alarm


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_broken_52_48_split_over_100k_is_flagged(seed):
    to_a = np.random.default_rng(seed).random(100_000) < 0.52
    srm = srm_check(["A", "B"], [int(to_a.sum()), int((~to_a).sum())], [0.5, 0.5])
    assert srm.alarm
    assert srm.p_value < 1e-10


def test_srm_uses_the_designed_weights():
    counts = [70_120, 29_880]
    assert not srm_check(["A", "B"], counts, [0.7, 0.3]).alarm
    assert srm_check(["A", "B"], counts, [0.5, 0.5]).alarm


def test_units_in_an_arm_designed_to_get_none_alarm():
    assert srm_check(["A", "B", "C"], [500, 500, 3], [0.5, 0.5, 0.0]).alarm


# -- the analysis ------------------------------------------------------------------------------


def test_two_arm_analysis_matches_its_parts():
    result = analyze_counts({"A": (519, 131), "B": (481, 142)})
    comp = result.primary
    assert result.control == "A" and comp.treatment == "B"
    assert (comp.z, comp.p_value) == two_proportion_ztest(142, 481, 131, 519)
    assert comp.ci == difference_interval(142, 481, 131, 519)
    assert comp.lift_abs == pytest.approx(142 / 481 - 131 / 519)
    assert comp.lift_rel == pytest.approx((142 / 481) / (131 / 519) - 1)
    assert comp.power == pytest.approx(power_two_proportions(131 / 519, comp.lift_abs, 481, 519))


def test_more_than_two_arms_each_against_control_with_holm():
    counts = {"ctl": (4000, 960), "b": (4000, 1100), "c": (4000, 990), "d": (4000, 1000)}
    result = analyze_counts(counts, control="ctl")
    assert {c.treatment for c in result.comparisons} == {"b", "c", "d"}
    assert all(c.control == "ctl" for c in result.comparisons)
    raw = [c.p_value for c in result.comparisons]
    assert [c.p_value_adjusted for c in result.comparisons] == pytest.approx(holm_adjust(raw))
    assert all(c.p_value_adjusted >= c.p_value for c in result.comparisons)
    assert result.primary.treatment == "b"


@given(st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=8))
def test_holm_is_monotone_and_bounded(p):
    adjusted = np.array(holm_adjust(p))
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= -1e-15)
    assert np.all(adjusted <= 1.0) and np.all(adjusted >= np.array(p) - 1e-15)


@pytest.mark.parametrize(
    ("counts", "control", "argument", "words"),
    [
        ({"A": (100, 10), "B": (0, 0)}, None, "arms", "empty"),
        ({"A": (100, 10)}, None, "arms", "empty"),
        ({}, None, "counts", "zero users"),
        ({"A": (0, 0), "B": (0, 0)}, None, "counts", "zero users"),
        ({"A": (100, 10), "B": (100, 12)}, "Z", "control", "unknown control"),
        ({"A": (100, 10), "B": (100, 120)}, None, "counts", "clicks"),
    ],
)
def test_bad_counts_raise_typed_errors_naming_the_argument(counts, control, argument, words):
    with pytest.raises(ABTestInputError) as err:
        analyze_counts(counts, control=control)
    assert err.value.argument == argument
    assert words in str(err.value)


def test_analyze_over_arrays_counts_units():
    arms = np.array(["A"] * 10 + ["B"] * 5)
    clicked = np.array([1, 0] * 5 + [1] * 5, dtype=bool)
    result = analyze(arms, clicked)
    assert (result.arm("A").n, result.arm("A").clicks) == (10, 5)
    assert (result.arm("B").n, result.arm("B").clicks) == (5, 5)


def _impressions(rows):
    return pd.DataFrame(rows, columns=["profile", "artwork", "reward"])


def test_profile_unit_counts_a_profile_once_and_clicked_if_any_reward():
    frame = _impressions([("p1", "A", 0), ("p1", "A", 1), ("p1", "A", 0), ("p2", "A", 0), ("p3", "B", 0.5), ("p4", "B", 0)])
    units = units_from_impressions(frame, "profile")
    per_arm = pd.DataFrame({"arm": units.arms.astype(str), "clicked": units.clicked}).groupby("arm")["clicked"].agg(["size", "sum"])
    assert per_arm.loc["A"].tolist() == [2, 1]  # p1 clicked once in three impressions; p2 never
    assert per_arm.loc["B"].tolist() == [2, 1]  # a fractional reward counts as a click
    assert not units.warnings


def test_profile_unit_excludes_crossovers_with_a_warning():
    frame = _impressions([("p1", "A", 1), ("p1", "B", 0), ("p2", "A", 0), ("p3", "B", 1)])
    units = units_from_impressions(frame, "profile")
    assert len(units.arms) == 2
    assert "more than one arm" in units.warnings[0]


def test_impression_unit_warns_about_repeats():
    frame = _impressions([("p1", "A", 1), ("p1", "A", 0), ("p2", "B", 0)])
    units = units_from_impressions(frame, "impression")
    assert len(units.arms) == 3
    assert "repeat" in units.warnings[0]


# -- success criterion -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("lift_rel>=10% and significant", "min_lift_rel", 0.10),
        ("lift_rel >= 0.1", "min_lift_rel", 0.1),
        ("lift_abs>=0.02, significant", "min_lift_abs", 0.02),
        ("p<0.01", "max_p_value", 0.01),
    ],
)
def test_parse_criterion(text, field, value):
    criterion = parse_criterion(text)
    assert getattr(criterion, field) == pytest.approx(value)
    assert criterion.require_significant == ("significant" in text)


@pytest.mark.parametrize("text", ["", "lift_rel<=10%", "p>0.05", "big win"])
def test_bad_criterion_is_rejected(text):
    with pytest.raises(ABTestInputError) as err:
        parse_criterion(text)
    assert err.value.argument == "criterion"


@pytest.mark.parametrize(
    ("counts", "met"),
    [
        ({"A": (5000, 1200), "B": (5000, 1500)}, True),  # +25%, significant
        ({"A": (5000, 1200), "B": (5000, 1290)}, False),  # +7.5%: significant but below the bar
        ({"A": (200, 48), "B": (200, 60)}, False),  # +25% but not significant
    ],
)
def test_criterion_verdict(counts, met):
    result = analyze_counts(counts)
    verdict = evaluate_criterion(result.primary, parse_criterion("lift_rel>=10% and significant"))
    assert verdict.met is met
    assert len(verdict.checks) == 2


# -- dashboard and interpretation --------------------------------------------------------------


def test_dashboard_has_four_panels_and_saves(tmp_path):
    result = analyze_counts({"A": (519, 131), "B": (481, 142)})
    fig = dashboard_figure(result, evaluate_criterion(result.primary, parse_criterion("significant")))
    assert len(fig.axes) == 4
    fig.savefig(tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("counts", "weights", "words"),
    [
        ({"A": (5000, 1200), "B": (5000, 1500)}, None, "ship artwork B"),
        ({"A": (500, 120), "B": (500, 130)}, None, "inconclusive"),
        ({"A": (5000, 1500), "B": (5000, 1200)}, None, "keep artwork A"),
        ({"A": (5400, 1300), "B": (4600, 1380)}, {"A": 0.5, "B": 0.5}, "do not act"),
    ],
)
def test_interpretation_recommends(counts, weights, words):
    text = interpretation(analyze_counts(counts, expected_shares=weights))
    assert words in text.splitlines()[-1]


# -- the command line --------------------------------------------------------------------------


def _write_logs(path: Path, rows: list[tuple[str, str, float]], title: str = "t1", propensity: float = 0.5) -> Path:
    records = [
        {"event_id": f"e{i}", "timestamp": 1_700_000_000 + i, "profile": p, "title": title, "artwork": a,
         "propensity": propensity, "reward": r, "policy": "ab"}
        for i, (p, a, r) in enumerate(rows)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def ab_logs(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(2000):
        arm = "B" if i % 2 else "A"
        ctr = 0.30 if arm == "B" else 0.24
        rows += [(f"p{i}", arm, float(rng.random() < ctr)) for _ in range(1 + i % 3)]
    return _write_logs(tmp_path / "logs.jsonl", rows)


def test_cli_json_has_the_spec_keys(ab_logs, capsys):
    assert main(["abtest", str(ab_logs), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == SPEC_KEYS
    assert set(out["arms"]) == {"A", "B"}
    assert all(set(v) == {"n", "clicks", "ctr"} for v in out["arms"].values())
    assert out["arms"]["A"]["n"] == 1000  # profiles, not impressions
    z, p = two_proportion_ztest(out["arms"]["B"]["clicks"], 1000, out["arms"]["A"]["clicks"], 1000)
    assert (out["z"], out["p_value"]) == (z, p)


def test_cli_impression_unit_warns(ab_logs, capsys):
    assert main(["abtest", str(ab_logs), "--unit", "impression", "--json", "--control", "B"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert sum(a["n"] for a in out["arms"].values()) > 2000
    assert "repeated impressions" in captured.err
    assert out["lift_abs"] < 0  # A against the control B


def test_cli_impression_unit_checks_the_split_on_profiles(tmp_path, capsys):
    # A 50/50 profile split where A's profiles come back three times: 75% of impressions are A's.
    rows = [(f"p{i}", "A" if i % 2 else "B", 0.0) for i in range(1000) for _ in range(3 if i % 2 else 1)]
    rows = [(p, a, float(k % 4 == 0)) for k, (p, a, _) in enumerate(rows)]
    path = _write_logs(tmp_path / "logs.jsonl", rows)
    assert main(["abtest", str(path), "--unit", "impression"]) == 0
    captured = capsys.readouterr()
    assert "broken" not in captured.out
    assert "ok: alarm only below 0.001" in captured.out
    assert "counts profiles" in captured.err


def test_srm_label_names_its_threshold():
    srm = srm_check(["A", "B"], [5100, 4900], [0.5, 0.5])
    assert 0.001 < srm.p_value < 0.05
    assert srm.label == "ok: alarm only below 0.001"
    assert srm_check(["A", "B"], [5500, 4500], [0.5, 0.5]).label == "ALARM: p < 0.001"


@pytest.mark.parametrize(
    ("rows", "extra", "words"),
    [
        ([("p1", "A", 1.0), ("p2", "A", 0.0)], [], "empty"),
        ([("p1", "A", 1.0), ("p2", "B", 0.0)], ["--control", "Z"], "unknown control"),
        ([("p1", "A", 1.0), ("p2", "B", 0.0)], ["--policy", "thompson"], "zero users"),
        ([("p1", "A", 1.0), ("p2", "B", 0.0)], ["--weights", "A=0.3,B=0.3,C=0.4"], "empty"),
    ],
)
def test_cli_bad_input_is_one_line_nonzero(tmp_path, capsys, rows, extra, words):
    logs = _write_logs(tmp_path / "bad.jsonl", rows)
    assert main(["abtest", str(logs), *extra]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and words in err


def test_cli_zero_users_subprocess_has_no_traceback(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = subprocess.run([sys.executable, "-m", "replay", "abtest", str(empty)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_cli_demo_is_reproducible_and_plots(tmp_path, capsys):
    png = tmp_path / "demo.png"
    args = ["abtest", "--demo", "--seed", "3", "--json", "--plot", str(png)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert main(["abtest", "--demo", "--seed", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) != first
    assert sum(a["n"] for a in first["arms"].values()) == 1000
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_demo_text_has_table_interpretation_and_verdict(tmp_path, capsys):
    data = tmp_path / "users.csv"
    assert main(["abtest", "--demo", "--criterion", "lift_rel>=10% and significant", "--data-out", str(data)]) == 0
    out = capsys.readouterr().out
    assert "Success criterion" in out and "Recommendation:" in out and "SRM:" in out
    assert list(pd.read_csv(data).columns) == ["user_id", "artwork", "clicked"]


def test_cli_plan(capsys):
    assert main(["abtest", "--plan", "--baseline", "0.24", "--mde", "0.06", "--power", "0.8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_per_arm"] == plan_sample_size(0.24, 0.06, power=0.8).n_per_arm


def test_cli_without_logs_or_mode_is_an_error(capsys):
    assert main(["abtest"]) == 1
    assert "LOGS" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_cli_reads_every_log_format_and_uses_logged_weights(tmp_path, capsys, suffix):
    rng = np.random.default_rng(11)
    to_a = rng.random(4000) < 0.7
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(4000)],
            "timestamp": 1_700_000_000 + np.arange(4000),
            "profile": [f"p{i}" for i in range(4000)],
            "title": "t1",
            "artwork": np.where(to_a, "A", "B"),
            "propensity": np.where(to_a, 0.7, 0.3),  # an `ab` policy logs each arm's weight
            "reward": (rng.random(4000) < 0.25).astype(float),
        }
    )
    path = tmp_path / f"logs{suffix}"
    {".jsonl": lambda p: frame.to_json(p, orient="records", lines=True), ".csv": lambda p: frame.to_csv(p, index=False),
     ".parquet": lambda p: frame.to_parquet(p)}[suffix](path)
    assert main(["abtest", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arms"]["A"]["n"] == int(to_a.sum())
    assert out["srm_p_value"] > 0.001  # 70/30 as designed
    assert main(["abtest", str(path), "--json", "--weights", "A=0.5,B=0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["srm_p_value"] < 1e-10  # not the 50/50 someone claims
