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
