"""A simulated personalized catalog: comedy fans and action fans prefer different artworks.

One title with five tagged artworks. Each profile is a comedy fan or an action fan (with genre
affinities that say so, plus noise and an unrelated genre); comedy fans click the comedic
artwork 30% of the time and the action still 15%, action fans the reverse, and the other three
artworks 10% for everybody. Request context (device, country, hour) is noise. The oracle
knows each profile's group and always shows its best artwork: CTR 0.30.

``run_vw`` and ``run_thompson`` serve the same traffic (same profiles, same contexts, same
per-event uniform draws deciding clicks) so their CTRs compare like for like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.thompson import ThompsonSampling, decide_from_probabilities
from bandit.vw_features import decision_context, to_example
from bandit.vw_policy import VWConfig, VWModel, cost_of, learning_probability, sample_action
from replay.simulation import SimulationError

ARTWORKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a-comedic", ("comedic", "ensemble", "bright")),
    ("a-action", ("action", "closeup-lead", "dark")),
    ("a-dark", ("dark", "closeup-lead")),
    ("a-retro", ("retro", "ensemble")),
    ("a-landscape", ("landscape", "bright")),
)
GROUPS: tuple[str, ...] = ("comedy", "action")
# CTR[group, artwork]
CTR = np.array([[0.30, 0.15, 0.10, 0.10, 0.10], [0.15, 0.30, 0.10, 0.10, 0.10]])
DEVICES = ("tv", "mobile", "web")
COUNTRIES = ("US", "FR", "BR", "IN")


@dataclass(frozen=True, eq=False)
class SimProfile:
    id: str
    group: int
    features: dict  # as PUT /profiles/<id> takes them


@dataclass(frozen=True, eq=False)
class Traffic:
    """n events: which profile, which request context, and the uniform draw deciding the click."""

    profile: np.ndarray
    requests: tuple[dict, ...]
    u: np.ndarray


@dataclass(frozen=True, eq=False)
class SimResult:
    """Per event: the artwork served, its reward, and the policy's expected CTR (pmf . true CTR)."""

    action: np.ndarray
    reward: np.ndarray
    expected_ctr: np.ndarray

    def ctr(self, last: int | None = None) -> float:
        """Mean expected CTR over the last ``last`` events (all by default)."""
        x = self.expected_ctr if last is None else self.expected_ctr[-last:]
        return float(x.mean())


def artwork_ids() -> tuple[str, ...]:
    return tuple(a for a, _ in ARTWORKS)


def artwork_tags() -> dict[str, tuple[str, ...]]:
    return dict(ARTWORKS)


def oracle_ctr() -> float:
    return float(CTR.max(axis=1).mean())


def make_profiles(rng: np.random.Generator, n: int) -> tuple[SimProfile, ...]:
    """``n`` profiles, half comedy fans and half action fans (in random order)."""
    if n < 2:
        raise SimulationError(f"n must be >= 2, got {n}")
    groups = rng.permutation(np.arange(n) % 2)
    out = []
    for i, g in enumerate(groups.tolist()):
        fan, other = rng.uniform(0.55, 1.0), rng.uniform(0.0, 0.35)
        aff = {"comedy": fan, "action": other} if g == 0 else {"comedy": other, "action": fan}
        aff["drama"] = rng.uniform(0.0, 1.0)
        features = {
            "tenure_days": float(rng.integers(0, 2000)),
            "weekly_hours": round(float(rng.gamma(2.0, 3.0)), 1),
            "affinities": {k: round(float(v), 3) for k, v in aff.items()},
        }
        out.append(SimProfile(f"sim-{i}", int(g), features))
    return tuple(out)


def make_traffic(rng: np.random.Generator, n_profiles: int, n: int) -> Traffic:
    if n < 1 or n_profiles < 1:
        raise SimulationError(f"n and n_profiles must be >= 1, got {n} and {n_profiles}")
    profile = rng.integers(0, n_profiles, size=n)
    dev = rng.integers(0, len(DEVICES), size=n)
    cty = rng.integers(0, len(COUNTRIES), size=n)
    hour = rng.integers(0, 24, size=n)
    requests = tuple(
        {"device": DEVICES[d], "country": COUNTRIES[c], "hour": str(h)}
        for d, c, h in zip(dev.tolist(), cty.tolist(), hour.tolist(), strict=True)
    )
    return Traffic(profile, requests, rng.random(n))


def segment_of(features: dict) -> str:
    hours = features.get("weekly_hours")
    if features.get("tenure_days", 0) < 30:
        return "new"
    return "low" if hours < 2 else "power" if hours >= 10 else "regular"


def run_vw(profiles: tuple[SimProfile, ...], traffic: Traffic, rng: np.random.Generator,
           config: VWConfig | None = None, model: VWModel | None = None) -> SimResult:
    """VW serving and learning online, one event at a time (no reward delay)."""
    config = config or VWConfig()
    model = model or VWModel.new(config)
    arts, tags = artwork_ids(), artwork_tags()
    n = traffic.u.size
    action, reward, expected = np.empty(n, int), np.empty(n), np.empty(n)
    for i in range(n):
        prof = profiles[traffic.profile[i]]
        ctx = decision_context(prof.features, traffic.requests[i], segment_of(prof.features), tags)
        ex = to_example(ctx, arts)
        pmf = model.pmf(ex.lines())
        d = sample_action(pmf, rng)
        r = float(traffic.u[i] < CTR[prof.group, d.arm])
        model.learn(ex.lines((d.arm, cost_of(r), learning_probability(d.propensity, config.min_learn_p))))
        action[i], reward[i], expected[i] = d.arm, r, pmf @ CTR[prof.group]
    return SimResult(action, reward, expected)


def run_thompson(profiles: tuple[SimProfile, ...], traffic: Traffic, rng: np.random.Generator,
                 refresh_every: int = 50) -> SimResult:
    """Context-free Thompson sampling (the service's, with exact propensities) on the same traffic.

    The action distribution is recomputed every ``refresh_every`` events, as the service does
    once per counts snapshot.
    """
    ts = ThompsonSampling()
    k = len(ARTWORKS)
    n_imp, s_rew = np.zeros(k), np.zeros(k)
    n = traffic.u.size
    action, reward, expected = np.empty(n, int), np.empty(n), np.empty(n)
    probs = ts.action_probabilities(ts.posterior(n_imp, s_rew))
    for i in range(n):
        if i % refresh_every == 0:
            probs = ts.action_probabilities(ts.posterior(n_imp, s_rew))
        g = profiles[traffic.profile[i]].group
        d = decide_from_probabilities(probs, rng)
        r = float(traffic.u[i] < CTR[g, d.arm])
        n_imp[d.arm] += 1
        s_rew[d.arm] += r
        action[i], reward[i], expected[i] = d.arm, r, probs @ CTR[g]
    return SimResult(action, reward, expected)
