"""The Dask engine (replay.partitioned on a LocalCluster of 2 worker processes) gives the in-memory
engine's numbers on hive-partitioned Parquet: every estimator (replay too) and interval (the
bootstrap too), per group too (title, segment, a numeric context key), DM/DR with context features."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.cli import main
from replay.evaluation import evaluate_policies
from replay.logs import encode_logs, load_logs, write_logs
from replay.partitioned import SUPPORTED_ESTIMATORS, PartitionError, evaluate_partitioned, list_partitions
from replay.policies import ABPolicy, LoggedPolicy, TablePolicy, UniformPolicy
from replay.simulation import segmented_titles, simulate_logs

REL = 1e-9


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as lc, distributed.Client(lc) as client:
        yield client


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory):
    """12,000 uniform logs over 5 days (hive folders date=...), Thompson-free; and a target table."""
    root = tmp_path_factory.mktemp("parts")
    rng = np.random.default_rng(0)
    env = segmented_titles(rng, n_titles=3, n_artworks=4)
    write_logs(simulate_logs(env, rng, 12_000, "uniform"), root / "all.parquet")
    table = pq.read_table(root / "all.parquet")
    ts = table.column("timestamp").to_numpy()
    day = ((ts - ts.min()) / (np.ptp(ts) + 1e-9) * 5).astype(int)
    table = table.append_column("date", pa.array([f"2026-11-{20 + d}" for d in day]))
    pq.write_to_dataset(table, root / "parts", partition_cols=["date"])
    (root / "all.parquet").unlink()
    target = np.random.default_rng(1).dirichlet(np.ones(4), size=3)
    return root, env, target


def _whole(paths):
    """The partitions as one in-memory log, as ``--engine pandas`` reads them."""
    return encode_logs(__import__("pandas").concat([load_logs(p, keep_event_id=False) for p in paths],
                                                    ignore_index=True))


def _policies(env, target):
    return [TablePolicy(env.table(target), name="table"), UniformPolicy(), LoggedPolicy(), ABPolicy()]


def _assert_same(a, b):
    assert a.n == b.n
    assert a.estimates.keys() == b.estimates.keys()
    for name in a.estimates:
        for x, y in zip(a.estimates[name], b.estimates[name], strict=True):
            assert x.estimator == y.estimator
            assert y.value == pytest.approx(x.value, rel=REL), (name, x.estimator)
            assert y.ci == pytest.approx(x.ci, rel=REL), (name, x.estimator)
            assert y.se == pytest.approx(x.se, rel=REL) and y.ess == pytest.approx(x.ess, rel=REL)
            assert x.warnings == y.warnings
    assert a.by_n == b.by_n
    for label, per in a.by_group.items():
        for name, ests in per.items():
            for x, y in zip(ests, b.by_group[label][name], strict=True):
                assert y.value == pytest.approx(x.value, rel=REL) and y.ci == pytest.approx(x.ci, rel=REL)


@pytest.mark.parametrize(("interval", "by", "bootstrap"),
                         [("normal", "segment", 0), ("el", "title", 0), ("bootstrap", "segment", 40)])
def test_dask_engine_equals_in_memory_engine(cluster, logs_dir, interval, by, bootstrap):
    from replay import dask_engine

    root, env, target = logs_dir
    paths = list_partitions(root / "parts")
    assert len(paths) == 5
    ests = list(SUPPORTED_ESTIMATORS)
    assert "replay" in ests
    expected = evaluate_policies(_whole(paths), _policies(env, target), ests, np.random.default_rng(7),
                                 interval=interval, by=by, bootstrap=bootstrap)
    seen = []
    got = evaluate_partitioned(paths, _policies(env, target), ests, 7, interval=interval, by=by, bootstrap=bootstrap,
                               runner=dask_engine.runner(cluster), on_progress=lambda *a: seen.append(a))
    _assert_same(expected, got)
    assert ("estimators", 5, 5) in seen  # progress per partition
    replay = expected.estimates["table"][0]
    assert replay.estimator == "replay" and 0 < replay.ess < expected.n  # rows were rejected: draws mattered


def test_cli_dask_engine_on_a_running_scheduler_prints_the_pandas_engines_bootstrap_numbers(cluster, logs_dir, capsys):
    root, env, target = logs_dir
    policy = root / "policy.csv"
    policy.write_text("title,artwork,probability\n" + "".join(
        f"{t},{a},{float(target[i, j])!r}\n" for i, (t, arts) in enumerate(zip(env.titles, env.artworks, strict=True))
        for j, a in enumerate(arts)))
    argv = ["evaluate", str(root / "parts"), "--policy", f"table:{policy}", "--policy", "uniform",
            "--estimator", "ips", "--estimator", "snips", "--estimator", "dr", "--estimator", "replay",
            "--bootstrap", "30", "--seed", "3", "--json"]
    assert main([*argv, "--engine", "pandas"]) == 0
    pandas_out = capsys.readouterr()
    assert main([*argv, "--engine", "dask", "--scheduler", cluster.scheduler.address]) == 0
    dask_out = capsys.readouterr()
    assert "engine: pandas (5 files" in pandas_out.err and "engine: dask (5 files" in dask_out.err
    a, b = json.loads(pandas_out.out), json.loads(dask_out.out)
    for name, per in a["policies"].items():
        for est, v in per.items():
            assert b["policies"][name][est]["value"] == pytest.approx(v["value"], rel=REL)
            assert b["policies"][name][est]["ci"] == pytest.approx(v["ci"], rel=REL)


def test_auto_engine_keeps_small_partitioned_input_in_pandas(logs_dir, capsys):
    root, _, _ = logs_dir
    assert main(["evaluate", str(root / "parts" / "*" / "*.parquet"), "--policy", "uniform", "--estimator", "ips",
                 "--json"]) == 0
    assert "engine: pandas (5 files" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "argument"), [
    (["--policy", "thompson"], "learning policies"), (["--policy", "uniform", "--by", "nope"], "unknown column"),
    (["--policy", "uniform", "--bootstrap", "20", "--interval", "el"], "exclude each other"),
])
def test_dask_engine_refuses_what_it_cannot_partition_in_one_line(logs_dir, capsys, extra, argument):
    root, _, _ = logs_dir
    assert main(["evaluate", str(root / "parts"), "--engine", "dask", *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and argument in err[-1]


def test_no_parquet_files_name_the_argument(tmp_path):
    with pytest.raises(PartitionError, match="no Parquet files"):
        list_partitions(tmp_path)


def test_a_log_hashed_into_one_fold_is_fitted_in_sample_by_both_engines(tmp_path):
    """Three rows: a seed whose salt hashes them all into one fold leaves no fold to fit on without
    it; both engines then fit in sample (the same decision, from the summed fold counts)."""
    from replay.reward_model import fold_of

    rng = np.random.default_rng(3)
    env = segmented_titles(rng, n_titles=1, n_artworks=2)
    frame = simulate_logs(env, rng, 3, "uniform")
    write_logs(frame.iloc[:2], tmp_path / "a.parquet")
    write_logs(frame.iloc[2:], tmp_path / "b.parquet")
    paths = list_partitions(tmp_path)
    whole = _whole(paths)
    seed = next(s for s in range(500)
                if len(set(fold_of(whole.row_key, int(np.random.default_rng(s).integers(2**63)), 3))) == 1)
    policies = [UniformPolicy()]
    expected = evaluate_policies(whole, policies, ["dm", "dr"], np.random.default_rng(seed), folds=3)
    got = evaluate_partitioned(paths, policies, ["dm", "dr"], seed, folds=3)
    _assert_same(expected, got)


@pytest.fixture(scope="module")
def context_dir(tmp_path_factory):
    """6,000 uniform logs in 3 files with numeric context keys: ``visits`` (a few values, some rows
    missing it, and absent from the last file: the whole log's mean fills those), ``score``
    (continuous), and ``device``, text in one file and a number in another (dropped by both)."""
    root = tmp_path_factory.mktemp("context")
    rng = np.random.default_rng(4)
    env = segmented_titles(rng, n_titles=2, n_artworks=3)
    frame = simulate_logs(env, rng, 6000, "uniform")
    visits = rng.integers(0, 4, size=len(frame))
    score = rng.normal(2.0, 1.0, size=len(frame))
    contexts = []
    for i in range(len(frame)):
        c = {"score": float(score[i])}
        if i < 4000 and i % 7:
            c["visits"] = int(visits[i])
        c["device"] = "tv" if i < 2000 else 3 if i >= 4000 else None
        contexts.append(c)
    # rewards that depend on the context, so the slopes matter
    frame["reward"] = (rng.random(len(frame)) < np.clip(0.1 + 0.05 * score + 0.03 * visits, 0, 1)).astype(float)
    frame["context"] = contexts
    for part, rows in enumerate((slice(0, 2000), slice(2000, 4000), slice(4000, 6000))):
        write_logs(frame.iloc[rows], root / f"part-{part}.parquet")
    target = np.random.default_rng(2).dirichlet(np.ones(3), size=2)
    return root, env, target


def test_context_features_are_those_of_the_whole_log(context_dir):
    from replay.partitioned import _scan, vocabulary

    root, _, _ = context_dir
    paths = list_partitions(root)
    whole = _whole(paths)
    vocab = vocabulary([_scan(p) for p in paths])
    assert set(vocab.feature_names) == set(whole.feature_names) == {"score", "visits"}
    j = whole.feature_names.index("visits")
    assert vocab.feature_fill[vocab.feature_names.index("visits")] == pytest.approx(
        float(np.mean(whole.features[whole.features[:, j] != whole.features[-1, j], j])), rel=1e-9)


@pytest.mark.parametrize(("by", "bootstrap"), [("visits", 0), ("title", 30)])
def test_dask_engine_equals_in_memory_engine_with_context_features(cluster, context_dir, by, bootstrap):
    """DM/DR's reward model has per-slot slopes on the context (fitted per fold from normal
    equations that partitions add), and ``--by`` a numeric context key groups as in memory."""
    from replay import dask_engine

    root, env, target = context_dir
    paths = list_partitions(root)
    ests = list(SUPPORTED_ESTIMATORS)
    policies = [TablePolicy(env.table(target), name="table"), UniformPolicy()]
    expected = evaluate_policies(_whole(paths), policies, ests, np.random.default_rng(11), by=by, bootstrap=bootstrap)
    got = evaluate_partitioned(paths, policies, ests, 11, by=by, bootstrap=bootstrap,
                               runner=dask_engine.runner(cluster))
    _assert_same(expected, got)
    if by == "visits":
        assert len(got.by_group) == 5  # 0..3 and the rows filled with the mean


# ---- check and abtest on the same engine ----------------------------------------------------

DAYS = 5 * 86_400.0


def _json_close(a, b, path="") -> None:
    """Same JSON up to 1e-9 relative in every number (strings, flags and verdicts equal)."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _json_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _json_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert b == pytest.approx(a, rel=REL, abs=0 if a else 1e-300) or (np.isnan(a) and np.isnan(b)), path
    else:
        assert a == b, path


def _spread(frame, rng, start=1.7e9):
    """The rows' timestamps spread over five days, in their order (so ``write_partitioned`` makes 5-6 days)."""
    return frame.assign(timestamp=start + np.sort(rng.uniform(0, DAYS, len(frame))))


@pytest.fixture(scope="module")
def check_dir(tmp_path_factory):
    """Thompson logs (propensities vary row to row: the imputation matters), uniform logs with one
    artwork's propensity wrong (flagged), a small mis-logged title without a policy (a Monte-Carlo
    p-value) and an
    ``ab`` split (tested per profile), written by ``write_partitioned`` as one folder per day."""
    import pandas as pd

    from bandit.ab_assignment import ABSplit, assign
    from replay.logs import write_partitioned

    rng = np.random.default_rng(5)
    env = segmented_titles(rng, n_titles=2, n_artworks=3)
    thompson = _spread(simulate_logs(env, rng, 4000, "thompson"), rng)
    uniform = _spread(simulate_logs(env, rng, 3000, "uniform"), rng)
    wrong = (uniform["title"] == env.titles[0]) & (uniform["artwork"] == env.artworks[0][0])
    uniform.loc[wrong, "propensity"] = 0.5  # served with 1/3
    uniform["event_id"] = "u" + uniform["event_id"]
    n = 240
    small = _spread(pd.DataFrame({
        "event_id": [f"s{i}" for i in range(n)], "profile": [f"q{i}" for i in range(n)], "title": "small",
        "artwork": np.array(["x1", "x2", "x3"])[rng.choice(3, size=n, p=(0.45, 0.3, 0.25))],
        "propensity": 1 / 3, "reward": 0.0, "segment": "regular",  # no policy: "(unnamed)"
        "candidates": [("x1", "x2", "x3")] * n}), rng)
    split = ABSplit.equal(("a1", "a2", "a3"), salt="t1")
    prof = rng.integers(60, size=400)
    arms = [assign(split, f"u{p}") for p in prof.tolist()]
    ab = _spread(pd.DataFrame({
        "event_id": [f"ab{i}" for i in range(400)], "profile": [f"u{p}" for p in prof], "title": "t-ab",
        "artwork": [a.arm for a in arms], "propensity": [a.propensity for a in arms], "reward": 0.0, "policy": "ab",
        "segment": "regular", "candidates": [("a1", "a2", "a3")] * 400}), rng)
    frame = pd.concat([thompson, uniform, small, ab], ignore_index=True).sort_values("timestamp", kind="stable")
    root = tmp_path_factory.mktemp("check")
    files = write_partitioned(frame, root / "parts")
    write_logs(frame, root / "all.parquet")
    write_logs(frame, root / "all.jsonl")
    return root, len(files)


def _run_json(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_check_on_dask_gives_the_pandas_engines_report(cluster, check_dir, capsys):
    root, days = check_dir
    argv = ["check", str(root / "parts"), "--json", "--scheduler", cluster.scheduler.address]
    code_p, pandas_report, err_p = _run_json([*argv, "--engine", "pandas"], capsys)
    code_d, dask_report, err_d = _run_json([*argv, "--engine", "dask"], capsys)
    assert f"engine: pandas ({days} files" in err_p and f"engine: dask ({days} files" in err_d
    _json_close(pandas_report, dask_report)
    groups = pandas_report["groups"]
    # The report exercises what the engines must agree on: a flag, a Monte-Carlo p-value, a per-profile group.
    assert code_p == code_d == 1 and any(g["flags"] for g in groups)
    assert {"monte-carlo", "chi-square"} <= {g["method"] for g in groups}
    assert "profile" in {g["unit"] for g in groups} and "(unnamed)" in {g["policy"] for g in groups}


def test_check_partitioned_reports_progress_per_partition_and_equals_check_propensities(cluster, check_dir):
    import pandas as pd

    from replay import dask_engine
    from replay.integrity import check_propensities
    from replay.partitioned_check import check_partitioned

    root, days = check_dir
    paths = list_partitions(root / "parts")
    whole = encode_logs(pd.concat([load_logs(p, keep_event_id=False) for p in paths], ignore_index=True))
    seen = []
    got = check_partitioned(paths, 0.01, seed=4, runner=dask_engine.runner(cluster),
                            on_progress=lambda *a: seen.append(a))
    expected = check_propensities(whole, 0.01, np.random.default_rng(4))
    assert ("scan", days, days) in seen
    assert [(g.title, g.policy) for g in got.groups] == [(g.title, g.policy) for g in expected.groups]
    for x, y in zip(expected.groups, got.groups, strict=True):
        assert (x.n, x.artworks, x.observed, x.flags, x.method, x.unit, x.warnings) == \
            (y.n, y.artworks, y.observed, y.flags, y.method, y.unit, y.warnings)
        for field in ("statistic", "p_value", "p_adjusted", "ess", "dof"):
            assert getattr(y, field) == pytest.approx(getattr(x, field), rel=REL), (x.title, x.policy, field)


@pytest.mark.parametrize("name", ["all.parquet", "all.jsonl"])
def test_check_on_dask_reads_a_single_file_like_pandas(cluster, check_dir, capsys, name):
    root, _ = check_dir
    argv = ["check", str(root / name), "--json", "--scheduler", cluster.scheduler.address]
    _, pandas_report, err_p = _run_json([*argv, "--engine", "pandas"], capsys)
    _, dask_report, err_d = _run_json([*argv, "--engine", "dask"], capsys)
    assert "engine: pandas (" in err_p and "engine: dask (1 files" in err_d
    _json_close(pandas_report, dask_report)


@pytest.fixture(scope="module")
def ab_dir(tmp_path_factory):
    """A three-arm ``ab`` split hashed by profile (some profiles also logged in another arm: crossovers)
    and another policy's title, over five days."""
    import pandas as pd

    from bandit.ab_assignment import ABSplit, assign
    from replay.logs import write_partitioned

    rng = np.random.default_rng(11)
    n = 8000
    split = ABSplit.equal(("a1", "a2", "a3"), salt="t1")
    prof = rng.integers(3000, size=n)
    arms = np.array([assign(split, f"u{p}").arm for p in prof.tolist()], dtype=object)
    cross = rng.choice(n, 40, replace=False)
    arms[cross] = "a1"
    ctr = np.select([arms == "a1", arms == "a2"], [0.10, 0.12], 0.16)
    ab = _spread(pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "profile": [f"u{p}" for p in prof], "title": "t1", "artwork": arms,
        "propensity": 1 / 3, "reward": (rng.random(n) < ctr).astype(float), "policy": "ab"}), rng)
    other = _spread(pd.DataFrame({
        "event_id": [f"o{i}" for i in range(500)], "profile": [f"v{i}" for i in range(500)], "title": "t2",
        "artwork": rng.choice(["b1", "b2"], 500), "propensity": 0.5, "reward": 0.0, "policy": "uniform"}), rng)
    frame = pd.concat([ab, other], ignore_index=True).sort_values("timestamp", kind="stable")
    root = tmp_path_factory.mktemp("ab")
    files = write_partitioned(frame, root / "parts")
    write_logs(frame, root / "all.csv")
    return root, len(files)


@pytest.mark.parametrize("extra", [
    ["--unit", "profile", "--criterion", "lift_rel>=10% and significant"],
    ["--unit", "impression", "--control", "a2"],
    ["--sequential", "--tau", "0.03"],
], ids=["profile", "impression", "sequential"])
def test_abtest_on_dask_gives_the_pandas_engines_result(cluster, ab_dir, capsys, extra):
    root, days = ab_dir
    argv = ["abtest", str(root / "parts"), "--policy", "ab", "--json", "--scheduler", cluster.scheduler.address, *extra]
    code_p, pandas_result, err_p = _run_json([*argv, "--engine", "pandas"], capsys)
    code_d, dask_result, err_d = _run_json([*argv, "--engine", "dask"], capsys)
    assert code_p == code_d == 0
    assert f"engine: pandas ({days} files" in err_p and f"engine: dask ({days} files" in err_d
    _json_close(pandas_result, dask_result)
    warnings = [line for line in err_p.splitlines() if line.startswith("warning")]
    assert warnings == [line for line in err_d.splitlines() if line.startswith("warning")]
    if "--sequential" in extra:
        assert len(dask_result["looks"]) >= 5
    else:  # three arms: Holm-adjusted comparisons, and the crossovers named
        assert "comparisons" in dask_result and any("shown more than one arm" in w or "repeat a profile" in w
                                                    for w in warnings)


def test_abtest_on_dask_reads_a_single_csv_file_like_pandas(cluster, ab_dir, capsys):
    root, _ = ab_dir
    argv = ["abtest", str(root / "all.csv"), "--policy", "ab", "--json", "--scheduler", cluster.scheduler.address]
    _, pandas_result, _ = _run_json([*argv, "--engine", "pandas"], capsys)
    _, dask_result, err = _run_json([*argv, "--engine", "dask"], capsys)
    assert "engine: dask (1 files" in err
    _json_close(pandas_result, dask_result)


def test_abtest_partitions_report_progress_and_merge_in_any_order(ab_dir):
    from replay.partitioned_abtest import per_profile, select_partitioned, unit_counts

    root, days = ab_dir
    paths = list_partitions(root / "parts")
    seen = []
    forward = select_partitioned(paths, "ab", None, on_progress=lambda *a: seen.append(a))
    assert seen[-1] == ("partitions", days, days)

    def backwards(fn, items, args, on_done=None, combine=None):  # merges the last partitions first
        results = [fn(p, *args) for p in items]
        total = results[-1]
        for r in reversed(results[:-1]):
            total = combine(r, total)
        return total

    backward = select_partitioned(paths, "ab", None, runner=backwards)
    for unit in ("profile", "impression"):
        assert unit_counts(forward.table, unit) == unit_counts(backward.table, unit)
    a, b = per_profile(forward.table).sort_index(), per_profile(backward.table).sort_index()
    assert a.equals(b)  # each profile's first arm and timestamp too


@pytest.mark.parametrize("command", [["check"], ["abtest", "--policy", "ab"]])
def test_a_bad_scheduler_address_is_one_line(ab_dir, capsys, command):
    root, _ = ab_dir
    argv = [command[0], str(root / "parts"), *command[1:], "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--scheduler tcp://127.0.0.1:9" in err[0]
