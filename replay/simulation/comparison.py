"""A/B test vs Thompson sampling (vs VW) on the same simulated traffic.

Scenarios (``replay.simulation.environments.SCENARIOS``), one title with Bernoulli clicks:

- ``uniform-ctr`` (``BernoulliArms``): one true CTR per artwork, the same for everybody. There is
  nothing to personalize, so VW (which sees no features here) can at best match a
  context-free bandit.
- ``personalized`` (``PersonalizedArms``): the catalog, profiles and traffic of
  ``replay.simulation.personalized``: comedy fans click the comedic artwork 30% and the action one 15%,
  action fans the reverse, three other artworks 10% for everybody. The A/B test still ships one
  artwork for everybody and context-free Thompson sampling converges to the overall best one;
  VW sees each impression's profile features and can learn each group's best. Regret is then
  measured against the oracle that shows each profile its group's best artwork.

Every policy in a run faces the same traffic (common random numbers: impression t clicks on
artwork k iff ``u[t] < ctr[t, k]`` for one shared uniform ``u[t]``, ``ctr[t]`` being the true CTRs
for impression t's viewer), so differences between policies are not differences in luck.

Every policy is an ``OnlinePolicy`` played by ``replay.simulation.online.run_online`` (A/B:
``ABTest`` here; Thompson sampling: ``replay.simulation.thompson.ThompsonOnline``; VW:
``replay.simulation.vw.VWOnline``). ``decision()`` is the artwork a policy has settled on, if any
(A/B: the shipped arm once the planned sample is in; Thompson sampling: the arm whose posterior
probability of being best exceeds 95%; VW: never, it has no posterior).

Metrics per run, averaged over seeds: total clicks (and CTR); regret = expected clicks of always
showing the best artwork (personalized: each viewer's best) minus the expected clicks of the
artworks actually shown (pseudo-regret: the sum of true-CTR gaps, free of click noise); share of
impressions on the best artwork (personalized: the viewer's best); time to a decision
(impressions seen when ``decision()`` first returned an arm, and whether that arm was
the best) and time to the right decision (when it first returned the best arm: for Thompson
sampling, the first time the best arm's posterior probability of being best exceeds 95%). A
decision is one artwork for everybody, so "best" there is always the best fixed artwork (in
``personalized``: the best on average over the traffic's mix of groups).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from replay.abtest import analyze_counts, plan_sample_size
from replay.policy_base import REFRESH
from replay.simulation import SimulationError
from replay.simulation.environments import SCENARIOS, Impressions, OneTitleEnvironment
from replay.simulation.online import OnlinePolicy, run_online
from replay.simulation.thompson import ThompsonOnline

SHIP_RULES = ("significant", "best")


# -- the A/B test --------------------------------------------------------------------------------


class ABTest:
    """Equal random split until ``n_per_arm * K`` impressions, then always the shipped arm.

    ship_rule ``significant`` (what teams do): ship the best-CTR treatment among those
    significantly better than the control (Holm-adjusted), else keep the control.
    ``best``: ship the highest observed CTR, significant or not.
    """

    def __init__(self, n_arms: int, n_per_arm: int, alpha: float = 0.05, control: int = 0, ship_rule: str = "significant"):
        if ship_rule not in SHIP_RULES:
            raise SimulationError(f"ship_rule must be one of {SHIP_RULES}, got {ship_rule!r}")
        self.name = "ab"
        self.k, self.budget, self.alpha, self.control, self.ship_rule = n_arms, n_per_arm * n_arms, alpha, control, ship_rule
        self.n = np.zeros(n_arms)
        self.clicks = np.zeros(n_arms)
        self.shipped: int | None = None

    def steady(self, traffic: Impressions, start: int, stop: int) -> int:
        return stop - start if self.shipped is not None else 1

    def pmf(self, traffic: Impressions, start: int, stop: int) -> np.ndarray:
        if self.shipped is not None:
            return np.repeat(np.eye(self.k)[[self.shipped]], stop - start, axis=0)
        return np.full((stop - start, self.k), 1.0 / self.k)

    def learn(self, traffic, start, stop, action, reward, propensity) -> None:
        for arm, r in zip(action.tolist(), reward.tolist(), strict=True):
            self.update(arm, r)

    def update(self, arm: int, reward: float) -> None:
        """Count one impression of the test (nothing once shipped)."""
        if self.shipped is not None:
            return
        self.n[arm] += 1
        self.clicks[arm] += reward > 0
        if self.n.sum() >= self.budget:
            self.shipped = self._winner()

    def _winner(self) -> int:
        ctr = self.clicks / np.maximum(self.n, 1)
        if self.ship_rule == "best" or np.any(self.n == 0):
            return int(np.argmax(ctr))
        names = [str(i) for i in range(self.k)]
        result = analyze_counts({names[i]: (int(self.n[i]), int(self.clicks[i])) for i in range(self.k)}, control=names[self.control], alpha=self.alpha)
        winners = [int(c.treatment) for c in result.comparisons if c.significant and c.lift_abs > 0]
        return max(winners, key=lambda i: ctr[i]) if winners else self.control

    def decision(self) -> int | None:
        return self.shipped



# -- the runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunMetrics:
    clicks: float
    regret: float
    best_share: float
    decided_at: int | None  # impressions seen when decision() first returned an arm
    first_decision: int | None  # that arm
    best_decided_at: int | None  # impressions seen when decision() first returned the best arm
    cumulative_regret: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class PolicySummary:
    """One policy over all seeds (means, and the standard error of the mean regret)."""

    name: str
    runs: tuple[RunMetrics, ...] = field(repr=False)

    @property
    def clicks(self) -> float:
        return float(np.mean([r.clicks for r in self.runs]))

    @property
    def regret(self) -> float:
        return float(np.mean([r.regret for r in self.runs]))

    @property
    def regret_se(self) -> float:
        values = [r.regret for r in self.runs]
        return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0

    @property
    def best_share(self) -> float:
        return float(np.mean([r.best_share for r in self.runs]))

    @property
    def ctr(self) -> float:
        """Realized clicks per impression."""
        return float(np.mean([r.clicks / len(r.cumulative_regret) for r in self.runs]))

    @property
    def decided_share(self) -> float:
        return float(np.mean([r.decided_at is not None for r in self.runs]))

    @property
    def decision_time(self) -> float | None:
        """Mean impressions to a decision over the runs that reached one (None if none did)."""
        times = [r.decided_at for r in self.runs if r.decided_at is not None]
        return float(np.mean(times)) if times else None

    def correct_share(self, best: int) -> float:
        """Share of runs whose first decision was the best artwork (no decision counts as wrong)."""
        return float(np.mean([r.first_decision == best for r in self.runs]))

    @property
    def best_decision_time(self) -> float | None:
        """Mean impressions until the policy first settled on the best artwork (runs that did)."""
        times = [r.best_decided_at for r in self.runs if r.best_decided_at is not None]
        return float(np.mean(times)) if times else None

    @property
    def mean_cumulative_regret(self) -> np.ndarray:
        return np.mean([r.cumulative_regret for r in self.runs], axis=0)


@dataclass(frozen=True)
class ComparisonResult:
    env: OneTitleEnvironment
    horizon: int
    seeds: tuple[int, ...]
    ab_n_per_arm: int
    policies: tuple[PolicySummary, ...]
    notes: tuple[str, ...] = ()

    def policy(self, name: str) -> PolicySummary:
        return next(p for p in self.policies if p.name == name)

    @property
    def scenario(self) -> str:
        return next(name for name, cls in SCENARIOS.items() if isinstance(self.env, cls))


def run_policy(policy: OnlinePolicy, env: OneTitleEnvironment, traffic: Impressions, rng: np.random.Generator) -> RunMetrics:
    """Play ``policy`` over ``traffic`` (``run_online``) and score it.

    Regret and the share on the best artwork are per impression, against the viewer's best
    (``traffic.ctr``); decision times are against ``env.best``, the best fixed artwork.
    """
    run = run_online(policy, traffic, rng, best=env.best)
    rows = np.arange(traffic.n)
    gaps = traffic.ctr.max(axis=1) - traffic.ctr[rows, run.action]
    # argmax per viewer: with one CTR row for everybody this is ``env.best`` (ties: the first)
    on_best = run.action == traffic.ctr.argmax(axis=1)
    return RunMetrics(
        clicks=float(run.reward.sum()),
        regret=float(gaps.sum()),
        best_share=float(np.mean(on_best)),
        decided_at=run.decided_at,
        first_decision=run.first_decision,
        best_decided_at=run.best_decided_at,
        cumulative_regret=np.cumsum(gaps),
    )


def compare_policies(
    env: OneTitleEnvironment,
    horizon: int = 10_000,
    seeds: Sequence[int] = tuple(range(10)),
    alpha: float = 0.05,
    power: float = 0.8,
    mde: float | None = None,
    ship_rule: str = "significant",
    ts_refresh: int = REFRESH,
    include: Sequence[str] = ("ab", "thompson", "vw"),
    on_progress: Callable[[int, int], None] | None = None,
) -> ComparisonResult:
    """Run every included policy on each seed's traffic.

    The A/B test is planned for ``mde`` (absolute; default: the true gap between the best
    artwork and the control, arm 0, i.e. the A/B test is told the right effect size) at
    ``alpha`` and ``power``.
    """
    if horizon < 1:
        raise SimulationError(f"horizon must be >= 1, got {horizon}")
    if not seeds:
        raise SimulationError("seeds: need at least one seed")
    unknown = set(include) - {"ab", "thompson", "vw"}
    if unknown:
        raise SimulationError(f"include: unknown policies {sorted(unknown)}; choose from ab, thompson, vw")
    k = len(env.ctrs)
    control_ctr = env.ctrs[0]
    if mde is None:
        others = [c for c in env.ctrs[1:]]
        mde = max(others, key=lambda c: abs(c - control_ctr)) - control_ctr
    if mde == 0:
        raise SimulationError("mde: the artworks' true CTRs are equal; give the effect the A/B test is planned for")
    n_per_arm = plan_sample_size(control_ctr, mde, alpha=alpha, power=power, arms=k).n_per_arm

    makers: dict[str, Callable[[int], OnlinePolicy]] = {}
    notes: list[str] = []
    if "ab" in include:
        makers["ab"] = lambda seed: ABTest(k, n_per_arm, alpha, 0, ship_rule)
    if "thompson" in include:
        makers["thompson"] = lambda seed: ThompsonOnline(env.n_arms, refresh=ts_refresh)
    if "vw" in include:
        from replay.simulation.vw import VWOnline  # vowpalwabbit: only when VW runs

        makers["vw"] = lambda seed: VWOnline(env.arms, env.tags)

    runs: dict[str, list[RunMetrics]] = {name: [] for name in makers}
    total, done = len(seeds) * len(makers), 0
    for seed in seeds:
        traffic = env.impressions(np.random.default_rng([seed, 0]), horizon)
        for i, (name, make) in enumerate(makers.items()):
            # each policy has its own stream for its own coin flips; the traffic is shared
            rng = np.random.default_rng([seed, 1 + i])
            runs[name].append(run_policy(make(seed), env, traffic, rng))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    summaries = tuple(PolicySummary(name, tuple(r)) for name, r in runs.items())
    return ComparisonResult(env, horizon, tuple(seeds), n_per_arm, summaries, tuple(notes))
