"""A/B test vs Thompson sampling (vs VW) on the same simulated traffic.

Two scenarios (environments), both one title with Bernoulli clicks:

- ``uniform-ctr`` (``BernoulliArms``): one true CTR per artwork, the same for everybody. There is
  nothing to personalize, so VW (which sees no features here) can at best match a
  context-free bandit.
- ``personalized`` (``PersonalizedArms``): the catalog, profiles and traffic of
  ``replay.personalized_sim``: comedy fans click the comedic artwork 30% and the action one 15%,
  action fans the reverse, three other artworks 10% for everybody. The A/B test still ships one
  artwork for everybody and context-free Thompson sampling converges to the overall best one;
  VW sees each impression's profile features and can learn each group's best. Regret is then
  measured against the oracle that shows each profile its group's best artwork.

Every policy in a run faces the same traffic (common random numbers: impression t clicks on
artwork k iff ``u[t] < ctr[t, k]`` for one shared uniform ``u[t]``, ``ctr[t]`` being the true CTRs
for impression t's viewer), so differences between policies are not differences in luck.

A policy is a small stateful object (``ComparablePolicy``): ``choose(rng, context) -> (arm,
propensity)``, ``update(arm, reward, context)``, and ``decision() -> arm | None``, the artwork it
has settled on, if any (A/B: the shipped arm once the planned sample is in; Thompson sampling:
the arm whose posterior probability of being best exceeds 95%; VW: never, it has no posterior).

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
from typing import Protocol

import numpy as np

from bandit import vw_features
from bandit import vw_policy as vw_model
from bandit.thompson import ThompsonSampling, decide_from_probabilities, mix_uniform, ts_propensities
from replay import personalized_sim
from replay.abtest import analyze_counts, plan_sample_size
from replay.errors import ReplayError

SHIP_RULES = ("significant", "best")
SCENARIOS = ("uniform-ctr", "personalized")


class ComparisonError(ReplayError):
    """A comparison argument is malformed; the message names it."""


class ComparablePolicy(Protocol):
    name: str

    def choose(self, rng: np.random.Generator, context: dict) -> tuple[int, float]: ...

    def update(self, arm: int, reward: float, context: dict) -> None: ...

    def decision(self) -> int | None: ...


# -- the environment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BernoulliArms:
    """True CTR per artwork; ``arms`` are display names."""

    ctrs: tuple[float, ...]
    arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ctrs) < 2:
            raise ComparisonError(f"ctrs: need at least two artworks, got {len(self.ctrs)}")
        if not all(0 <= c <= 1 for c in self.ctrs):
            raise ComparisonError(f"ctrs: each CTR must be in [0, 1], got {self.ctrs}")
        if not self.arms:
            object.__setattr__(self, "arms", tuple(chr(ord("A") + i) if i < 26 else f"arm{i}" for i in range(len(self.ctrs))))
        if len(self.arms) != len(self.ctrs) or len(set(self.arms)) != len(self.arms):
            raise ComparisonError("arms: need one distinct name per CTR")

    @property
    def best(self) -> int:
        return int(np.argmax(self.ctrs))

    def outcomes(self, rng: np.random.Generator, horizon: int) -> np.ndarray:
        """(horizon, K) 0/1 potential outcomes: what impression t would give for each artwork."""
        u = rng.random(horizon)
        return (u[:, None] < np.asarray(self.ctrs)[None, :]).astype(float)

    def impressions(self, rng: np.random.Generator, horizon: int) -> Impressions:
        """``outcomes`` (same draws), everybody with the same CTRs and no features."""
        outcomes = self.outcomes(rng, horizon)
        return Impressions(outcomes, np.broadcast_to(np.asarray(self.ctrs, dtype=float), outcomes.shape), ())


@dataclass(frozen=True, eq=False)
class Impressions:
    """One run's traffic: per impression, the potential outcomes, true CTRs and what a policy sees.

    outcomes, ctr: (horizon, K); contexts: one dict per impression (``profile`` features,
    ``request`` parameters, ``segment``), or () when the traffic has no features.
    """

    outcomes: np.ndarray
    ctr: np.ndarray
    contexts: tuple[dict, ...]


@dataclass(frozen=True)
class PersonalizedArms:
    """``bandit.personalized_sim``'s catalog and profiles, with comedy fans ``comedy_share`` of traffic.

    ``ctrs`` are the CTRs averaged over the traffic's group mix: what a one-artwork-for-everybody
    policy faces. The default mix is 60/40 rather than personalized_sim's 50/50 so that one fixed
    artwork is best overall (the comedic one, 24% vs the action one's 21%), as an A/B test or a
    context-free bandit assume. The A/B control (arm 0) is that comedic artwork: the A/B test
    then keeps the best one-size-fits-all artwork, the strongest baseline VW can be held to
    (``compare_policies``' default plans it for the largest true gap to the control, -0.14 with
    the default mix, and nothing beats the control significantly).
    """

    comedy_share: float = 0.6
    n_profiles: int = 1_000

    def __post_init__(self) -> None:
        if not 0 < self.comedy_share < 1:
            raise ComparisonError(f"comedy_share: must be in (0, 1), got {self.comedy_share}")
        if self.n_profiles < 2:
            raise ComparisonError(f"n_profiles: need at least two profiles, got {self.n_profiles}")

    @property
    def arms(self) -> tuple[str, ...]:
        return personalized_sim.artwork_ids()

    @property
    def tags(self) -> dict[str, tuple[str, ...]]:
        return personalized_sim.artwork_tags()

    @property
    def group_ctrs(self) -> np.ndarray:
        """CTR[group, arm], groups as ``groups``."""
        return personalized_sim.CTR

    @property
    def groups(self) -> tuple[str, ...]:
        return personalized_sim.GROUPS

    @property
    def group_shares(self) -> tuple[float, ...]:
        return (self.comedy_share, 1.0 - self.comedy_share)

    @property
    def ctrs(self) -> tuple[float, ...]:
        return tuple(float(c) for c in np.asarray(self.group_shares) @ self.group_ctrs)

    @property
    def best(self) -> int:
        return int(np.argmax(self.ctrs))

    @property
    def oracle_ctr(self) -> float:
        """CTR of showing every viewer their group's best artwork."""
        return float(np.asarray(self.group_shares) @ self.group_ctrs.max(axis=1))

    def impressions(self, rng: np.random.Generator, horizon: int) -> Impressions:
        sim = personalized_sim
        profiles = sim.make_profiles(rng, self.n_profiles)
        traffic = sim.make_traffic(rng, self.n_profiles, horizon)  # request contexts and click draws
        groups = np.array([p.group for p in profiles])
        # make_profiles makes as many comedy fans as action fans; weight the draws to the mix
        weight = np.where(groups == 0, self.comedy_share / np.sum(groups == 0), (1 - self.comedy_share) / np.sum(groups == 1))
        who = rng.choice(self.n_profiles, size=horizon, p=weight / weight.sum())
        ctr = self.group_ctrs[groups[who]]
        segments = [sim.segment_of(p.features) for p in profiles]
        contexts = tuple(
            {"profile": profiles[i].features, "request": request, "segment": segments[i]}
            for i, request in zip(who.tolist(), traffic.requests, strict=True)
        )
        return Impressions((traffic.u[:, None] < ctr).astype(float), ctr, contexts)


Environment = BernoulliArms | PersonalizedArms


# -- policies ----------------------------------------------------------------------------------


class FixedSplitABTest:
    """Equal random split until ``n_per_arm * K`` impressions, then always the shipped arm.

    ship_rule ``significant`` (what teams do): ship the best-CTR treatment among those
    significantly better than the control (Holm-adjusted), else keep the control.
    ``best``: ship the highest observed CTR, significant or not.
    """

    def __init__(self, n_arms: int, n_per_arm: int, alpha: float = 0.05, control: int = 0, ship_rule: str = "significant"):
        if ship_rule not in SHIP_RULES:
            raise ComparisonError(f"ship_rule must be one of {SHIP_RULES}, got {ship_rule!r}")
        self.name = "ab"
        self.k, self.budget, self.alpha, self.control, self.ship_rule = n_arms, n_per_arm * n_arms, alpha, control, ship_rule
        self.n = np.zeros(n_arms)
        self.clicks = np.zeros(n_arms)
        self.shipped: int | None = None

    def choose(self, rng: np.random.Generator, context: dict) -> tuple[int, float]:
        if self.shipped is not None:
            return self.shipped, 1.0
        return int(rng.integers(self.k)), 1.0 / self.k

    def update(self, arm: int, reward: float, context: dict) -> None:
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


class ThompsonBandit:
    """The service's Thompson sampling (``bandit.thompson``), learning online.

    Action probabilities are recomputed every ``refresh`` updates (1: after every click report,
    like the service reading fresh counts; larger values model a stale counts snapshot).
    """

    def __init__(self, n_arms: int, sampler: ThompsonSampling | None = None, refresh: int = 1, decision_level: float = 0.95):
        if refresh < 1:
            raise ComparisonError(f"refresh must be >= 1, got {refresh}")
        self.name = "thompson"
        self.sampler = sampler or ThompsonSampling()
        self.refresh, self.decision_level = refresh, decision_level
        self.n = np.zeros(n_arms)
        self.rewards = np.zeros(n_arms)
        self._pending = 0
        self._recompute()

    def _recompute(self) -> None:
        post = self.sampler.posterior(self.n, self.rewards)
        self.p_best = ts_propensities(post.alpha, post.beta)  # also the posterior P(arm is best)
        self.probabilities = mix_uniform(self.p_best, self.sampler.uniform_mix)
        self._pending = 0

    def choose(self, rng: np.random.Generator, context: dict) -> tuple[int, float]:
        d = decide_from_probabilities(self.probabilities, rng)
        return d.arm, d.propensity

    def update(self, arm: int, reward: float, context: dict) -> None:
        self.n[arm] += 1
        self.rewards[arm] += reward
        self._pending += 1
        if self._pending >= self.refresh:
            self._recompute()

    def decision(self) -> int | None:
        best = int(np.argmax(self.p_best))
        return best if self.p_best[best] > self.decision_level else None


class VWBandit:
    """The VW contextual bandit (``bandit.vw_policy.VWModel``, ``--cb_explore_adf``), learning online.

    Without features (``uniform-ctr`` traffic: empty contexts) every decision shares one
    cold-start context; VW then learns one value per artwork, as a context-free bandit would.
    A context with a ``profile`` (``personalized`` traffic) is featurized as the service does
    (``bandit.vw_features.decision_context``), artwork tags included, so VW can learn
    profile x artwork weights.
    """

    def __init__(self, arms: Sequence[str], tags: dict[str, Sequence[str]] | None = None):
        self.name = "vw"
        self.arms = list(arms)
        self.tags = {a: list((tags or {}).get(a, ())) for a in arms}
        self.model = vw_model.VWModel.new(vw_model.VWConfig())
        context = vw_features.decision_context(None, {}, "new", self.tags)
        self.example = vw_features.to_example(context, self.arms)
        self._pmf: np.ndarray | None = None
        self._last = self.example  # the example of the decision being rewarded

    def _example(self, context: dict):
        if "profile" not in context:
            return self.example
        ctx = vw_features.decision_context(context["profile"], context.get("request", {}), context.get("segment", "new"), self.tags)
        return vw_features.to_example(ctx, self.arms)

    def choose(self, rng: np.random.Generator, context: dict) -> tuple[int, float]:
        self._last = self._example(context)
        self._pmf = self.model.pmf(self._last.lines())
        d = decide_from_probabilities(self._pmf, rng)
        return d.arm, d.propensity

    def update(self, arm: int, reward: float, context: dict) -> None:
        prob = float(self._pmf[arm]) if self._pmf is not None else 1.0 / len(self.example.actions)
        self.model.learn(self._last.lines((arm, vw_model.cost_of(reward), prob)))

    def decision(self) -> int | None:
        return None  # VW exposes no posterior; it never declares a winner


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
    env: Environment
    horizon: int
    seeds: tuple[int, ...]
    ab_n_per_arm: int
    policies: tuple[PolicySummary, ...]
    notes: tuple[str, ...] = ()

    def policy(self, name: str) -> PolicySummary:
        return next(p for p in self.policies if p.name == name)

    @property
    def scenario(self) -> str:
        return "personalized" if isinstance(self.env, PersonalizedArms) else "uniform-ctr"


def run_policy(
    policy: ComparablePolicy,
    env: Environment,
    outcomes: np.ndarray,
    rng: np.random.Generator,
    ctr: np.ndarray | None = None,
    contexts: Sequence[dict] = (),
) -> RunMetrics:
    """Play ``policy`` over the impressions of ``outcomes`` (horizon x K).

    ctr: (horizon, K) true CTRs of each impression's viewer (default: ``env.ctrs`` for all);
    regret and the share on the best artwork are per impression, against the viewer's best.
    contexts: what the policy sees of each impression (default: nothing).
    """
    horizon = outcomes.shape[0]
    ctr = np.broadcast_to(np.asarray(env.ctrs, dtype=float), outcomes.shape) if ctr is None else ctr
    chosen = np.empty(horizon, dtype=int)
    decided_at: int | None = None
    first_decision: int | None = None
    best_decided_at: int | None = None
    context: dict = {}
    for t in range(horizon + 1):
        decision = policy.decision()
        if decision is not None and decided_at is None:
            decided_at, first_decision = t, decision
        if decision == env.best and best_decided_at is None:
            best_decided_at = t
        if t == horizon:
            break
        if contexts:
            context = contexts[t]
        arm, _ = policy.choose(rng, context)
        chosen[t] = arm
        policy.update(arm, float(outcomes[t, arm]), context)
    rows = np.arange(horizon)
    gaps = ctr.max(axis=1) - ctr[rows, chosen]
    # argmax per viewer: with one CTR row for everybody this is ``env.best`` (ties: the first)
    on_best = chosen == ctr.argmax(axis=1)
    return RunMetrics(
        clicks=float(outcomes[rows, chosen].sum()),
        regret=float(gaps.sum()),
        best_share=float(np.mean(on_best)),
        decided_at=decided_at,
        first_decision=first_decision,
        best_decided_at=best_decided_at,
        cumulative_regret=np.cumsum(gaps),
    )


def compare_policies(
    env: Environment,
    horizon: int = 10_000,
    seeds: Sequence[int] = tuple(range(10)),
    alpha: float = 0.05,
    power: float = 0.8,
    mde: float | None = None,
    ship_rule: str = "significant",
    ts_refresh: int = 1,
    include: Sequence[str] = ("ab", "thompson", "vw"),
    on_progress: Callable[[int, int], None] | None = None,
) -> ComparisonResult:
    """Run every included policy on each seed's traffic.

    The A/B test is planned for ``mde`` (absolute; default: the true gap between the best
    artwork and the control, arm 0, i.e. the A/B test is told the right effect size) at
    ``alpha`` and ``power``.
    """
    if horizon < 1:
        raise ComparisonError(f"horizon must be >= 1, got {horizon}")
    if not seeds:
        raise ComparisonError("seeds: need at least one seed")
    unknown = set(include) - {"ab", "thompson", "vw"}
    if unknown:
        raise ComparisonError(f"include: unknown policies {sorted(unknown)}; choose from ab, thompson, vw")
    k = len(env.ctrs)
    control_ctr = env.ctrs[0]
    if mde is None:
        others = [c for c in env.ctrs[1:]]
        mde = max(others, key=lambda c: abs(c - control_ctr)) - control_ctr
    if mde == 0:
        raise ComparisonError("mde: the artworks' true CTRs are equal; give the effect the A/B test is planned for")
    n_per_arm = plan_sample_size(control_ctr, mde, alpha=alpha, power=power, arms=k).n_per_arm

    makers: dict[str, Callable[[int], ComparablePolicy]] = {}
    notes: list[str] = []
    if "ab" in include:
        makers["ab"] = lambda seed: FixedSplitABTest(k, n_per_arm, alpha, 0, ship_rule)
    if "thompson" in include:
        makers["thompson"] = lambda seed: ThompsonBandit(k, refresh=ts_refresh)
    if "vw" in include:
        tags = env.tags if isinstance(env, PersonalizedArms) else None
        makers["vw"] = lambda seed: VWBandit(env.arms, tags)

    runs: dict[str, list[RunMetrics]] = {name: [] for name in makers}
    total, done = len(seeds) * len(makers), 0
    for seed in seeds:
        traffic = env.impressions(np.random.default_rng([seed, 0]), horizon)
        for i, (name, make) in enumerate(makers.items()):
            # each policy has its own stream for its own coin flips; the traffic is shared
            rng = np.random.default_rng([seed, 1 + i])
            runs[name].append(run_policy(make(seed), env, traffic.outcomes, rng, traffic.ctr, traffic.contexts))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    summaries = tuple(PolicySummary(name, tuple(r)) for name, r in runs.items())
    return ComparisonResult(env, horizon, tuple(seeds), n_per_arm, summaries, tuple(notes))
