"""The evaluate / check / simulate commands end to end (in process, via replay.cli.main)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from replay.cli import main
from replay.simulation import segmented_titles


@pytest.fixture(scope="module")
def sim_logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    path, truth = d / "logs.parquet", d / "truth.json"
    assert main(["simulate", "--out", str(path), "--scenario", "segments", "--n", "20000", "--seed", "3",
                 "--truth", str(truth)]) == 0
    return path, json.loads(truth.read_text())


def test_evaluate_json_has_exactly_the_spec_shape(sim_logs, capsys, tmp_path):
    path, truth = sim_logs
    png = tmp_path / "est.png"
    assert main(["evaluate", str(path), "--policy", "uniform", "--policy", "thompson", "--json",
                 "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"n", "policies"} and out["n"] == 20000
    assert set(out["policies"]) == {"uniform", "thompson"}
    for per_est in out["policies"].values():
        assert set(per_est) == {"replay", "ips", "snips", "dm", "dr"}
        for v in per_est.values():
            assert set(v) == {"value", "ci"} and v["ci"][0] <= v["value"] <= v["ci"][1]
    uniform = out["policies"]["uniform"]["ips"]
    assert uniform["ci"][0] - 0.01 < truth["value_uniform"] < uniform["ci"][1] + 0.01
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_table_policy_text_output_and_estimates_near_the_truth(sim_logs, capsys, tmp_path):
    path, truth = sim_logs
    env = segmented_titles(np.random.default_rng(3), n_titles=4, n_artworks=3)  # simulate's environment (seed 3)
    assert truth["ctr"][env.titles[0]][env.artworks[0][0]][env.segments[0]] == pytest.approx(env.ctr[0, 0, 0])
    table = tmp_path / "policy.csv"
    table.write_text("title,artwork,probability\n" + "".join(
        f"{t},{arts[0]},1\n" for t, arts in zip(env.titles, env.artworks, strict=True)))
    target = np.zeros((4, 3))
    target[:, 0] = 1.0
    true_value = env.policy_value(target)
    assert abs(true_value - truth["value_uniform"]) > 0.005  # a wrong policy would not pass by accident
    assert main(["evaluate", str(path), "--policy", f"table:{table}", "--estimator", "ips", "--estimator", "dr",
                 "--bootstrap", "50", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert f"table:{table}" in text and "by segment:" in text and "snips" not in text
    assert main(["evaluate", str(path), "--policy", f"table:{table}", "--estimator", "ips", "--estimator", "dr",
                 "--bootstrap", "200", "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["policies"][f"table:{table}"]
    for est in ("ips", "dr"):  # one data set: within 4 standard errors (coverage is test_replay_estimators')
        lo, hi = out[est]["ci"]
        se = (hi - lo) / (2 * 1.96)
        assert abs(out[est]["value"] - true_value) < 4 * se and lo < out[est]["value"] < hi, (est, out[est], true_value)


def test_evaluate_by_title_json_nests_the_same_shape_per_group(sim_logs, capsys):
    path, _ = sim_logs
    assert main(["evaluate", str(path), "--policy", "uniform", "--estimator", "ips", "--estimator", "dm",
                 "--by", "title", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    groups = out["by"]["title"]
    assert set(groups) == {"title1", "title2", "title3", "title4"}
    assert sum(g["n"] for g in groups.values()) == out["n"]
    for g in groups.values():
        assert set(g["policies"]["uniform"]) == {"ips", "dm"}
    # The whole log's IPS is the row-weighted mean of the groups' IPS.
    whole = sum(g["n"] * g["policies"]["uniform"]["ips"]["value"] for g in groups.values()) / out["n"]
    assert whole == pytest.approx(out["policies"]["uniform"]["ips"]["value"], rel=1e-9)


def test_evaluate_warns_when_a_learning_policy_accepted_too_few_rows(tmp_path, capsys):
    path = tmp_path / "small.jsonl"
    assert main(["simulate", "--out", str(path), "--scenario", "segments", "--n", "60", "--seed", "4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(path), "--policy", "thompson", "--json"]) == 0
    err = capsys.readouterr().err
    assert "replay accepted only" in err and "rows to learn from" in err


def test_evaluate_by_unknown_column_is_one_line(sim_logs, capsys):
    path, _ = sim_logs
    assert main(["evaluate", str(path), "--policy", "uniform", "--by", "nope"]) == 1
    assert "unknown column 'nope'" in capsys.readouterr().err


def test_evaluate_el_interval_is_selectable(sim_logs, capsys):
    path, _ = sim_logs
    assert main(["evaluate", str(path), "--policy", "uniform", "--estimator", "ips", "--interval", "el",
                 "--json"]) == 0
    el = json.loads(capsys.readouterr().out)["policies"]["uniform"]["ips"]
    assert main(["evaluate", str(path), "--policy", "uniform", "--estimator", "ips", "--json"]) == 0
    normal = json.loads(capsys.readouterr().out)["policies"]["uniform"]["ips"]
    assert el["value"] == normal["value"] and el["ci"] != normal["ci"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "nope"], "unknown policy"),
        (["--policy", "table:/no/such.csv"], "no such file"),
        (["--policy", "uniform", "--policy", "uniform"], "named twice"),
    ],
)
def test_evaluate_user_errors_exit_1_with_one_line(sim_logs, capsys, argv, message):
    path, _ = sim_logs
    assert main(["evaluate", str(path), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_check_passes_on_honest_logs_and_fails_on_tampered(sim_logs, capsys, tmp_path):
    path, _ = sim_logs
    assert main(["check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flagged"] is False and len(report["groups"]) == 4
    import pandas as pd

    frame = pd.read_parquet(path)
    frame.loc[frame["artwork"].str.endswith("art1"), "propensity"] = 0.6
    frame.loc[~frame["artwork"].str.endswith("art1"), "propensity"] = 0.2
    bad = tmp_path / "bad.csv"
    frame.assign(candidates=frame["candidates"].map(lambda c: json.dumps(list(c)))).to_csv(bad, index=False)
    assert main(["check", str(bad)]) == 1
    assert "FLAGGED" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_simulate_two_artworks_with_thompson_logging(tmp_path, capsys, fmt):
    path = tmp_path / f"s.{fmt}"
    assert main(["simulate", "--out", str(path), "--n", "3000", "--logging", "thompson", "--ctr", "0.24,0.30"]) == 0
    assert "3,000 impressions" in capsys.readouterr().out
    assert main(["check", str(path)]) == 0


def test_progress_bar_goes_to_stderr_only_when_asked(sim_logs, capsys):
    path, _ = sim_logs
    assert main(["evaluate", str(path), "--policy", "thompson", "--estimator", "replay", "--json", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "thompson [" in captured.err
    json.loads(captured.out)


HEAVY = ("pandas", "scipy", "matplotlib")


@pytest.mark.parametrize("argv", [
    ["--help"], ["evaluate", "--help"], ["check", "--help"], ["simulate", "--help"], ["export", "--help"],
    ["compare", "--help"], ["train-vw", "--help"], ["abtest", "--help"], ["evaluate"], ["evaluate", "x.parquet", "--nope"], ["bogus"],
])
def test_help_and_usage_errors_import_no_pandas_scipy_or_matplotlib(argv):
    code = ("import sys\nfrom replay.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            f"    loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "    print(loaded, e.code, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"[] {0 if argv[-1] == '--help' else 2}", done.stderr
    if argv[-1] != "--help":  # one error line (then the marker line above)
        assert len(done.stderr.strip().splitlines()) == 2 and done.stderr.startswith("error: ")


def test_names_spelled_in_light_modules_match_their_sources():
    from replay.commands import _common, abtest, compare, compare_product, evaluate
    from replay.estimators import DEFAULT_ESTIMATORS, ESTIMATORS, INTERVALS
    from replay.logs import FORMATS
    from replay.reward_model import DEFAULT_FOLDS
    from replay.sequential import DEFAULT_TAU
    from replay.simulation.comparison import SHIP_RULES
    from replay.simulation.environments import PRODUCT_SCENARIOS, SCENARIOS

    assert tuple(ESTIMATORS) == evaluate.ESTIMATOR_NAMES
    assert (DEFAULT_ESTIMATORS, INTERVALS, DEFAULT_FOLDS) == (
        evaluate.DEFAULT_ESTIMATORS, evaluate.INTERVALS, evaluate.DEFAULT_FOLDS)
    assert _common.FORMATS == FORMATS
    assert abtest.DEFAULT_TAU == DEFAULT_TAU
    assert (tuple(SCENARIOS), SHIP_RULES) == (compare.SCENARIOS, compare.SHIP_RULES)
    assert tuple(PRODUCT_SCENARIOS) == compare_product.PRODUCT_SCENARIOS
