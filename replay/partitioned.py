"""Evaluate logs kept as many Parquet files from per-partition sufficient statistics.

A log stored as partitioned Parquet (hive folders such as ``date=2026-11-20/``, or any set of
files) is never loaded whole. Three passes over the partitions, each returning small tables:

1. ``_scan``: the vocabulary (titles, each title's artworks in the order the in-memory engine
   gives them, segments, candidate sets, numeric context keys with their values' sums, so that
   missing values get the whole log's mean), rows, smallest propensity;
2. ``_model_sums``: each policy's largest importance ratio (replay's bound); the reward model's
   per-fold sums (``CellSums``: cells, and the normal equations of the slopes on context
   features) and, per policy, the summed mass of the target (DM's weights) and of each DR-type
   correction per cell (``RewardModel.mass_sums``);
3. ``_estimator_sums``: every estimator's sums, cubic sums and bootstrap replicates' sums
   (``accumulate``), the warnings' sums (``diagnosis_sums``), the same per group for ``by``;
   the held-out fit's sums.

Sums add; ``finish_estimates`` turns them into the estimates and intervals the in-memory engine
gives on the same rows and seed: ``assign_folds`` hashes each row's timestamp, and replay's
acceptance and the bootstrap's weights are functions of each row's event-id hash
(``replay.draws``), so neither a row's fold nor its draws depend on its partition. ``run`` maps a
pass over the partitions: in this process, or on a Dask cluster (``replay.dask_engine``), one
partition per task, so a worker holds one partition at a time.

``replay.partitioned_check`` and ``replay.partitioned_abtest`` run ``check`` and ``abtest`` on the
same partitions and runners (the vocabulary pass and the cache are shared).

Supported by ``evaluate``: fixed policies (uniform, logged, ab, table:PATH); every estimator;
every interval (normal, EL, bootstrap); ``by`` title, segment or a numeric context key. Not
supported (an error says so): learning policies (thompson, vw), which learn row by row in log order.
"""

from __future__ import annotations

import glob
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from replay.errors import ReplayError
from replay.estimators import (
    ESTIMATORS,
    DiagnosisSums,
    Estimate,
    EstimatorInput,
    Replay,
    accumulate,
    check_interval,
    diagnose,
    diagnosis_sums,
    finish_estimates,
)
from replay.evaluation import (
    MODEL_BASED,
    Evaluation,
    _model_warning,
    _with_model_warning,
    check_by,
    chunk_rows,
    group_codes,
    group_label,
    needs_draws,
    row_draw_keys,
    take,
)
from replay.logs import LogArrays
from replay.policies import FixedPolicy, LoggedPolicy
from replay.reward_model import (
    DEFAULT_FOLDS,
    CellSums,
    RewardModel,
    _chosen,
    fold_of,
    fold_predictions,
    single_fold,
)

SUPPORTED_ESTIMATORS = ("replay", "ips", "snips", "ipsclip", "dm", "dr", "sndr", "switchdr", "dros")
DR_FAMILY = ("dr", "switchdr", "dros")


class PartitionError(ReplayError):
    """Partitioned input or a request the partitioned engine cannot serve; the message says which."""


def list_partitions(spec: str | Path) -> list[Path]:
    """The Parquet files of a folder (recursively: hive folders), a glob, or one file; sorted."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".pq") and p.is_file())
    elif any(c in str(spec) for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file())
    elif path.is_file():
        files = [path]
    else:
        raise PartitionError(f"{spec}: no such file or folder", "LOGS")
    if not files:
        raise PartitionError(f"{spec}: no Parquet files (*.parquet) found", "LOGS")
    return files


# A pass: fn(item, *args) per item (a partition's path, or another small key such as a group's),
# results in item order; ``on_done(done, total)``. With ``combine`` (an associative, commutative
# merge of two results) the runner returns the one merged result instead, merging results as they
# arrive (a tree on a cluster), so the caller never holds every partition's result at once.
Runner = Callable[..., list]


def local_runner(fn: Callable, paths: Sequence, args: tuple,
                 on_done: Callable[[int, int], None] | None = None, combine: Callable | None = None):
    out = []
    for i, p in enumerate(paths):
        r = fn(p, *args)
        if combine is None:
            out.append(r)
        else:
            out = [r] if not out else [combine(out[0], r)]
        if on_done is not None:
            on_done(i + 1, len(paths))
    return out if combine is None else out[0]


# Each process keeps the partitions it loaded last, up to this many rows, for the next pass (a
# runner sends a partition's later passes to the worker that ran its first): a million-row log is
# read once, a big one still holds at most this much beyond the partition at hand.
CACHE_ROWS = 2_000_000
_cache: OrderedDict[tuple[str, int, int], LogArrays] = OrderedDict()


def _load(path: Path | str) -> LogArrays:
    from replay.logs import encode_logs, load_logs

    stat = Path(path).stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    logs = encode_logs(load_logs(path, keep_event_id=False), fill_features=False)  # the whole log's means fill
    _cache[key] = logs
    while sum(v.n for v in _cache.values()) > CACHE_ROWS and len(_cache) > 1:
        _cache.popitem(last=False)
    if logs.n > CACHE_ROWS:
        _cache.pop(key)
    return logs


# ---- pass 1: vocabulary ---------------------------------------------------------------------

def _scan(path: Path) -> dict:
    logs = _load(path)
    ts = logs.row_key.view(np.float64)
    combos = []
    codes, first = np.unique(logs.combo, return_index=True)
    for c, row in zip(codes.tolist(), first.tolist(), strict=True):
        t = int(logs.combo_title[c])
        names = tuple(logs.arms[t][s] for s in logs.combo_slots[c])
        combos.append((float(ts[row]), row, logs.titles[t], names))
    logged = {}
    for t, title in enumerate(logs.titles):
        slots = np.unique(logs.action[logs.title == t])
        logged[title] = {logs.arms[t][s] for s in slots.tolist()}
    return {"n": logs.n, "combos": combos, "logged": logged, "segments": set(logs.segments),
            "has_segment": logs.has_segment, "has_candidates": logs.has_candidates,
            "pmin": float(logs.propensity.min()), **_feature_scan(logs)}


def _feature_scan(logs: LogArrays) -> dict:
    """The partition's numeric context keys (in order) with their values' sums and counts (missing
    values are NaN here), and the keys it has non-numeric values for (the whole log drops those)."""
    names = logs.feature_names
    x = logs.features if logs.features is not None else np.zeros((logs.n, 0))
    given = ~np.isnan(x)
    texts: set[str] = set()
    if logs.contexts is not None:
        seen = {k for c in logs.contexts if c for k, v in c.items() if v is not None}
        texts = seen - set(names) - {"segment"}
    return {"feature_names": names, "feature_sum": np.where(given, x, 0.0).sum(axis=0),
            "feature_count": given.sum(axis=0), "feature_texts": texts}


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The whole log's codes: what every partition is re-coded to (``localize``)."""

    titles: tuple[str, ...]
    arms: tuple[tuple[str, ...], ...]
    segments: tuple[str, ...]
    combos: dict[tuple[str, tuple[str, ...]], int]  # (title, candidates) -> code
    combo_mask: np.ndarray
    combo_title: np.ndarray
    combo_slots: tuple[tuple[int, ...], ...]
    has_segment: bool
    has_candidates: bool
    n: int
    pmin: float
    feature_names: tuple[str, ...] = ()  # the whole log's numeric context keys
    feature_fill: np.ndarray | None = None  # their means: what a missing value is

    @property
    def k(self) -> int:
        return int(self.combo_mask.shape[1])


def vocabulary(scans: Sequence[dict]) -> Vocabulary:
    """Titles sorted; a title's artworks: its candidate lists in order of first appearance in time
    (ties: partition order), then any other logged artwork, sorted: as ``encode_logs`` orders them."""
    if len({s["has_candidates"] for s in scans}) > 1:
        raise PartitionError("some partitions have a candidates column and others not", "LOGS")
    if len({s["has_segment"] for s in scans}) > 1:
        raise PartitionError("some partitions have a segment column and others not", "LOGS")
    has_candidates = scans[0]["has_candidates"]
    seen = sorted((ts, part, row, title, names) for part, s in enumerate(scans) for ts, row, title, names in s["combos"])
    logged: dict[str, set[str]] = {}
    for s in scans:
        for title, arts in s["logged"].items():
            logged.setdefault(title, set()).update(arts)
    titles = tuple(sorted(logged))
    arm_lists: dict[str, dict[str, None]] = {t: {} for t in titles}
    combo_keys: dict[tuple[str, tuple[str, ...]], int] = {}
    for _, _, _, title, names in seen:
        if has_candidates:
            arm_lists[title].update(dict.fromkeys(names))
        combo_keys.setdefault((title, names), len(combo_keys))
    for t in titles:
        arm_lists[t].update(dict.fromkeys(sorted(logged[t] - set(arm_lists[t]))))
    arms = tuple(tuple(arm_lists[t]) for t in titles)
    k = max(len(a) for a in arms)
    if not has_candidates:  # a title's rows may use every artwork logged for it anywhere
        combo_keys = {(t, arms[i]): i for i, t in enumerate(titles)}
    slots = tuple(tuple(arms[titles.index(t)].index(a) for a in names) for (t, names) in combo_keys)
    mask = np.zeros((len(combo_keys), k), dtype=bool)
    for c, sl in enumerate(slots):
        mask[c, list(sl)] = True
    combo_title = np.array([titles.index(t) for (t, _) in combo_keys], dtype=np.int64)
    segments = tuple(sorted(set().union(*(s["segments"] for s in scans))))
    texts = set().union(*(s["feature_texts"] for s in scans))
    sums: dict[str, list[float]] = {}
    for s in scans:
        for name, total, count in zip(s["feature_names"], s["feature_sum"], s["feature_count"], strict=True):
            acc = sums.setdefault(name, [0.0, 0])
            acc[0] += float(total)
            acc[1] += int(count)
    names = tuple(name for name in sums if name not in texts)
    fill = np.array([sums[name][0] / sums[name][1] for name in names]) if names else None
    return Vocabulary(titles, arms, segments, combo_keys, mask, combo_title, slots, scans[0]["has_segment"],
                      has_candidates, sum(s["n"] for s in scans), min(s["pmin"] for s in scans), names, fill)


def localize(logs: LogArrays, vocab: Vocabulary) -> LogArrays:
    """One partition's arrays re-coded to the whole log's vocabulary."""
    t_map = np.array([vocab.titles.index(t) for t in logs.titles], dtype=np.int32)
    k_local = logs.k
    slot_map = np.zeros((len(logs.titles), k_local), dtype=np.int32)
    for t, arts in enumerate(logs.arms):
        g_arms = vocab.arms[t_map[t]]
        slot_map[t, : len(arts)] = [g_arms.index(a) for a in arts]
    s_map = np.array([vocab.segments.index(s) for s in logs.segments], dtype=np.int32)
    if vocab.has_candidates:
        c_map = np.array([vocab.combos[(logs.titles[int(logs.combo_title[c])],
                                        tuple(logs.arms[int(logs.combo_title[c])][s] for s in sl))]
                          for c, sl in enumerate(logs.combo_slots)], dtype=np.int64)
        combo = c_map[logs.combo]
    else:
        combo = t_map[logs.title].astype(np.int64)
    title = t_map[logs.title]
    features = None
    if vocab.feature_names:
        features = np.empty((logs.n, len(vocab.feature_names)))
        for j, name in enumerate(vocab.feature_names):
            col = logs.features[:, logs.feature_names.index(name)] if name in logs.feature_names else np.nan
            features[:, j] = np.where(np.isnan(col), vocab.feature_fill[j], col)
    return LogArrays(
        titles=vocab.titles, arms=vocab.arms, segments=vocab.segments, title=title,
        action=slot_map[logs.title, logs.action], segment=s_map[logs.segment], propensity=logs.propensity,
        reward=logs.reward, mask=vocab.combo_mask[combo], profile=logs.profile, profiles=logs.profiles,
        logging_policy=logs.logging_policy, logging_policies=logs.logging_policies, order=logs.order,
        features=features, feature_names=vocab.feature_names, has_segment=vocab.has_segment,
        has_candidates=vocab.has_candidates, combo=combo, combo_mask=vocab.combo_mask, combo_title=vocab.combo_title,
        contexts=None, combo_slots=vocab.combo_slots, row_key=logs.row_key, event_key=logs.event_key,
    )


# ---- pass 2: the reward model's sums and the policies' mass per cell -----------------------

@dataclass(frozen=True)
class Plan:
    """What passes 2 and 3 need besides the partition: small, sent with every task."""

    vocab: Vocabulary
    policies: tuple[FixedPolicy | LoggedPolicy, ...]
    estimators: tuple[str, ...]
    folds: int
    salt: int
    strength: float = 20.0
    by: str | None = None
    interval: str = "normal"
    bootstrap: int = 0
    draw_salt: int | None = None  # the salt of replay's and the bootstrap's draws (``row_draw_keys``)
    models: dict = field(default_factory=dict)  # set after pass 2
    bounds: tuple[float, ...] = ()  # per policy: the largest pi / mu over the log (replay's M), after pass 2

    @property
    def model_based(self) -> bool:
        return bool(MODEL_BASED & set(self.estimators))


def _shape(vocab: Vocabulary) -> tuple[int, int, int]:
    return len(vocab.titles), vocab.k, len(vocab.segments)


def _shape_model(vocab: Vocabulary) -> RewardModel:
    """A model with the log's cell shape: ``mass_sums`` needs only that, and with features a
    standardization: the identity after the shift (``_standardized`` turns its sums into the model's)."""
    shape = _shape(vocab)
    if not vocab.feature_names:
        return RewardModel(np.zeros(shape), np.zeros(shape), 1.0, 1.0, 1.0)
    d = len(vocab.feature_names)
    return RewardModel(np.zeros(shape), np.zeros(shape), 1.0, 1.0, 1.0, vocab.feature_fill, np.ones(d),
                       np.zeros((vocab.k, d)))


def _standardized(sums: tuple[np.ndarray, np.ndarray | None], model: RewardModel, shift: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """``mass_sums`` with sum_i pi_ia (x_i - shift) as ``model``'s: sum_i pi_ia z_i (z is affine in x)."""
    mass, px = sums
    if px is None or model.coef is None:
        return mass, None
    return mass, (px - mass.sum(axis=(0, 2))[:, None] * (model.mean - shift)) / model.scale


def _policy_input(logs: LogArrays, policy) -> tuple[EstimatorInput, tuple[np.ndarray, np.ndarray]]:
    out = policy.evaluate(logs, np.random.default_rng(0))  # fixed policies draw nothing
    data = EstimatorInput(reward=logs.reward, propensity=logs.propensity, action=logs.action,
                          pi_chosen=out.pi_chosen, accepted=out.accepted, group=logs.title, pi_coded=out.coded,
                          validate=False)
    return data, out.coded


def _model_sums(path: Path, plan: Plan) -> dict:
    logs = localize(_load(path), plan.vocab)
    out: dict = {"mass": {}, "bounds": []}
    for policy in plan.policies:
        data, _ = _policy_input(logs, policy)
        out["bounds"].append(float(np.max(data.pi_chosen / data.propensity)))
    if not plan.model_based:
        return out
    fold = fold_of(logs.row_key, plan.salt, plan.folds) if plan.folds > 1 else np.zeros(logs.n, np.int64)
    out["cells"] = CellSums.of(logs, fold, plan.folds, plan.vocab.feature_fill)
    shaper = _shape_model(plan.vocab)
    for p, policy in enumerate(plan.policies):
        data, coded = _policy_input(logs, policy)
        out["mass"][(p, "dm")] = shaper.mass_sums(logs, coded)
        for name in plan.estimators:
            if name in DR_FAMILY:
                h = ESTIMATORS[name]().correction_weight(data)
                out["mass"][(p, name)] = shaper.mass_sums(logs, h)
    return out


def _add(results: Sequence, key: str):
    total = results[0][key]
    for r in results[1:]:
        total = total + r[key]
    return total


def _add_mass(results: Sequence) -> dict:
    """The partitions' ``mass_sums`` per (policy, estimator), added (the feature part may be None)."""
    out = {}
    for key in results[0]["mass"]:
        parts = [r["mass"][key] for r in results]
        out[key] = (_sum(m for m, _ in parts), None if parts[0][1] is None else _sum(px for _, px in parts))
    return out


# ---- pass 3: estimator sums -----------------------------------------------------------------

def _fit(plan: Plan, cells: CellSums, mass: dict) -> dict:
    """The model on every row, each fold's model, the folds' held-out mean rewards, and the
    policies' mass sums in the model's standardization: what pass 3 needs."""
    folds = plan.folds
    model = cells.model(strength=plan.strength)
    others = [np.flatnonzero(np.arange(folds) != f) if folds > 1 else slice(None) for f in range(folds)]
    models = [cells.model(o, plan.strength) for o in others] if folds > 1 else [model]
    means = np.array([cells.mean_reward(o) for o in others])
    mass = {key: _standardized(v, model, cells.shift) for key, v in mass.items()}
    return {"model": model, "fold_models": models, "means": means, "mass": mass}


def _estimator_sums(path: Path, plan: Plan) -> dict:
    logs = localize(_load(path), plan.vocab)
    n_total = plan.vocab.n
    ests = [ESTIMATORS[e]() for e in plan.estimators]
    result: dict = {"policies": [], "fit": np.zeros(2)}
    if plan.model_based:
        m = plan.models
        fold = fold_of(logs.row_key, plan.salt, plan.folds) if plan.folds > 1 else np.zeros(logs.n, np.int64)
        model = m["model"]
        q_table, q_code, dense = fold_predictions(logs, m["fold_models"], fold)
        q_logged = _chosen(logs.action, q_table, q_code, dense)
        result["fit"] = np.array([np.sum((logs.reward - q_logged) ** 2),
                                  np.sum((logs.reward - m["means"][fold]) ** 2)])
    codes_by, keys = (None, [])
    if plan.by is not None:
        codes_by, keys = group_codes(logs, plan.by)
        if plan.by not in ("title", "segment"):  # a context key: grouped by value (labels may coincide)
            keys = np.unique(logs.features[:, logs.feature_names.index(plan.by)]).tolist()
    draw_key = row_draw_keys(logs, plan.draw_salt) if plan.draw_salt is not None else None
    for p, policy in enumerate(plan.policies):
        data, coded = _policy_input(logs, policy)
        data = replace(data, draw_key=draw_key)
        if "replay" in plan.estimators:  # accepted once, by the whole log's bound: groups keep the rows' outcomes
            data = Replay(bound=plan.bounds[p]).prepare(data, None)
        if plan.model_based:
            dm_weight = model.dm_weights(logs, None, sums=m["mass"][(p, "dm")], n=n_total)
            if dense is not None:  # context features: per-row predictions, as the in-memory engine's
                data = replace(data, pi=np.take(coded[1], coded[0], axis=0), q_hat=dense, dm_weight=dm_weight)
            else:
                codes, rows = coded
                n_m, n_q = plan.vocab.combo_mask.shape[0], q_table.shape[0]
                value = np.einsum("ca,ma,ga->cmg", rows, plan.vocab.combo_mask.astype(float), q_table)
                dm_values = np.take(value.reshape(-1), (codes.astype(np.int64) * n_m + logs.combo) * n_q + q_code)
                data = replace(data, dm_values=dm_values, q_logged=q_logged, dm_weight=dm_weight)
        prepared = []
        for name, est in zip(plan.estimators, ests, strict=True):
            d = data
            if name in DR_FAMILY and plan.model_based:
                mass = plan.models["mass"][(p, name)]
                d = replace(data, model_influence=lambda h, mass=mass: model.dm_weights(logs, None, sums=mass, n=n_total))
            prepared.append(est.prepare(d, None))
        sums = accumulate(ests, prepared, interval=plan.interval, bootstrap=plan.bootstrap,
                          chunk_size=chunk_rows(plan.bootstrap))
        groups = {}
        if codes_by is not None:
            for g, key in enumerate(keys):
                rows_g = np.flatnonzero(codes_by == g)
                if rows_g.size:
                    sub = take(data, rows_g)
                    groups[key] = (accumulate(ests, [e.prepare(sub, None) for e in ests], interval=plan.interval,
                                              bootstrap=plan.bootstrap, chunk_size=chunk_rows(plan.bootstrap)),
                                   diagnosis_sums(sub, n_groups=len(plan.vocab.titles)))
        result["policies"].append({"sums": sums, "groups": groups,
                                   "diag": diagnosis_sums(data, n_groups=len(plan.vocab.titles))})
    return result


# ---- the whole evaluation ------------------------------------------------------------------

def check_request(policies: Sequence, estimators: Sequence[str], bootstrap: int, interval: str,
                  level: float = 0.95) -> str:
    """What the partitioned engine can serve (before any file is read); returns the interval method."""
    for p in policies:
        if not isinstance(p, FixedPolicy | LoggedPolicy):
            raise PartitionError(f"policy {p.name}: the partitioned engine evaluates fixed policies only "
                                 "(uniform, logged, ab, table:PATH); learning policies replay the log in time order: "
                                 "use --engine pandas", "--policy")
    bad = [e for e in estimators if e not in SUPPORTED_ESTIMATORS]
    if bad:
        raise PartitionError(f"estimator {bad[0]} is not available on the partitioned engine "
                             f"(supported: {', '.join(SUPPORTED_ESTIMATORS)}); use --engine pandas", "--estimator")
    return check_interval(interval, bootstrap, level)


def evaluate_partitioned(
    paths: Sequence[Path], policies: Sequence, estimators: Sequence[str], seed: int, *, level: float = 0.95,
    interval: str = "normal", folds: int = DEFAULT_FOLDS, by: str | None = None, bootstrap: int = 0,
    runner: Runner = local_runner, on_progress: Callable[[str, int, int], None] | None = None,
    by_if_present: bool = False,
) -> Evaluation:
    """The in-memory ``evaluate_policies`` result for the same rows and ``seed``, pass by pass.
    ``by_if_present``: ``by`` is a default, dropped when the logs lack that column."""
    interval = check_request(policies, estimators, bootstrap, interval, level)

    def progress(stage: str):
        return None if on_progress is None else (lambda done, total: on_progress(stage, done, total))

    vocab = vocabulary(runner(_scan, paths, (), progress("scan")))
    if by == "segment" and not vocab.has_segment and by_if_present:
        by = None
    if by is not None:
        check_by(by, vocab.has_segment, vocab.feature_names)
    rng = np.random.default_rng(seed)
    # The draws the in-memory engine makes, in its order: ``assign_folds``'s salt, then the salt of
    # replay's and the bootstrap's draws (``evaluate_policies``).
    salt = int(rng.integers(2**63)) if MODEL_BASED & set(estimators) and min(folds, vocab.n) > 1 else 0
    draw_salt = int(rng.integers(2**63)) if needs_draws(estimators, bootstrap) else None
    folds = min(int(folds), vocab.n)
    plan = Plan(vocab, tuple(policies), tuple(dict.fromkeys(estimators)), folds, salt, by=by, interval=interval,
                bootstrap=bootstrap, draw_salt=draw_salt)
    fit_info = None
    if plan.model_based or "replay" in plan.estimators:
        sums = runner(_model_sums, paths, (plan,), progress("reward model" if plan.model_based else "replay bound"))
        plan = replace(plan, bounds=tuple(np.max([r["bounds"] for r in sums], axis=0).tolist()))
    if plan.model_based:
        cells = _add(sums, "cells")
        if plan.folds > 1 and single_fold(cells.rows.sum(axis=1)):  # as cross_fit decides on the same counts
            plan, cells = replace(plan, folds=1), cells.collapsed()
        plan = replace(plan, models=_fit(plan, cells, _add_mass(sums)))
    parts = runner(_estimator_sums, paths, (plan,), progress("estimators"))
    ests = [ESTIMATORS[e]() for e in plan.estimators]
    if plan.model_based:
        fit_sums = sum(p["fit"] for p in parts)
        fit_info = _FitSummary(plan.folds, float(fit_sums[0] / vocab.n), float(fit_sums[1] / vocab.n))
    warning = _model_warning(fit_info)
    results: dict[str, tuple[Estimate, ...]] = {}
    by_group: dict[str, dict[str, tuple[Estimate, ...]]] = {}
    by_n: dict[str, int] = {}
    # Groups in the in-memory engine's order: the vocabulary's, or a context key's values ascending.
    order = (vocab.titles if by == "title" else vocab.segments).index if by in ("title", "segment") else float
    for p, policy in enumerate(policies):
        per = [part["policies"][p] for part in parts]
        diag: DiagnosisSums = _sum(x["diag"] for x in per)
        results[policy.name] = _with_model_warning(tuple(finish_estimates(
            ests, *_combine([x["sums"] for x in per]), n=vocab.n, pmin=vocab.pmin, shared=diagnose(diag),
            level=level, interval=interval)), warning)
        for key in sorted({key for x in per for key in x["groups"]}, key=order):
            got = [x["groups"][key] for x in per if key in x["groups"]]
            g_diag = _sum(g[1] for g in got)
            label = key if isinstance(key, str) else group_label(key)
            # Labels of distinct values may coincide ("%g"): the later group wins, as in the in-memory engine.
            by_group.setdefault(label, {})[policy.name] = tuple(finish_estimates(
                ests, *_combine([g[0] for g in got]), n=g_diag.n, pmin=g_diag.pmin, shared=diagnose(g_diag),
                level=level, interval=interval))
            by_n[label] = g_diag.n
    warnings = {p.name: () for p in policies}
    return Evaluation(vocab.n, results, by_group, warnings, by, by_n)


def _combine(parts: Sequence[tuple[list, list, list]]) -> tuple[list, list, list]:
    """Partitions' (totals, cubic sums, bootstrap sums) per estimator (``accumulate``'s), added up."""
    out = []
    for column in zip(*parts, strict=True):  # totals, then cubics, then boots: each a list per partition
        out.append([None if items[0] is None else _sum(items) for items in zip(*column, strict=True)])
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class _FitSummary:
    folds: int
    mse: float
    baseline_mse: float


def _sum(items):
    """Partitions' sums added up (arrays, ``SkewSums``, ``DiagnosisSums``: whatever defines +)."""
    items = list(items)
    total = items[0]
    for x in items[1:]:
        total = total + x
    return total
