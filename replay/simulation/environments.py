"""Simulated environments: who is shown an artwork, the true CTR of each artwork, the click draw.

Every environment implements ``Environment``: ``n_arms`` (artworks per title) and
``impressions(rng, n)``, which draws ``n`` impressions (title, segment, profile, what a policy
sees) with the true CTR of every artwork for that viewer and the potential outcome of every
artwork (impression t clicks on artwork k iff ``u[t] < ctr[t, k]`` for one shared uniform
``u[t]``: common random numbers, so policies run on the same traffic differ by their choices,
not their luck). ``ctr`` is per impression, so a scenario whose truth changes over the run (a
drift) simply fills later rows differently. ``replay.simulation.online.run_online`` plays any
policy on them.

Scenarios (add a new one here and register it in ``SCENARIOS`` if ``compare`` should offer it):

- ``CatalogEnvironment``: CTR per (title, artwork, segment); ``two_artworks`` (one title, a1/a2
  at 24% / 30%) and ``segmented_titles`` (segments prefer different artworks). What
  ``simulate`` writes logs from; ``policy_value`` gives the true value of a fixed policy.
- ``BernoulliArms`` (``compare --scenario uniform-ctr``): one title, one CTR per artwork for
  everybody, no features.
- ``PersonalizedArms`` (``compare --scenario personalized``): the comedy/action catalog of
  ``replay.simulation.personalized``, with profile features a contextual bandit can use.
- The product features' scenarios (``compare --scenario clickbait|drift|sticky``, run by
  ``replay.simulation.product``): ``ClickbaitArms`` (a click signal and a quality-play signal
  per impression: ``Impressions.signals``), ``DriftArms`` (the best artwork swaps halfway: later
  rows of ``ctr`` differ) and ``StickyVisits`` (profiles come back within a sticky period:
  ``Impressions.repeat_of``).

Indices everywhere: ``title`` into ``env.titles``, artwork slot into ``env.artworks[title]``,
``segment`` into ``env.segments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from bandit.segments import SEGMENTS
from replay.simulation import SimulationError, personalized


@dataclass(frozen=True, eq=False)
class Impressions:
    """One run's traffic. Arrays over impressions: ``title``, ``segment``, ``profile`` (indices),
    ``ctr`` and ``outcomes`` (n, K): true CTR and potential 0/1 outcome of every artwork slot;
    ``contexts``: what a contextual policy sees of each impression (``profile`` features,
    ``request`` parameters, ``segment`` name), or () when the traffic has no features.
    ``signals``: other reward signals than the click, name -> (potential outcomes, true rates),
    each (n, K); ``with_reward(name)`` makes one of them the reward a policy learns from.
    ``repeat_of``: for a sticky title, the index of the first decision an impression repeats
    (the randomization unit: ``run_online`` shows its artwork again and logs its propensity), or
    -1 for a decision of its own; None: every impression is a decision. ``time``: when each
    impression happens, where the scenario has a clock of its own (else None).
    """

    outcomes: np.ndarray
    ctr: np.ndarray
    title: np.ndarray
    segment: np.ndarray
    profile: np.ndarray
    contexts: tuple[dict, ...] = ()
    signals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    repeat_of: np.ndarray | None = None
    time: np.ndarray | None = None

    @classmethod
    def draw(cls, rng: np.random.Generator | None, ctr: np.ndarray, title=None, segment=None, profile=None,
             contexts: tuple[dict, ...] = (), u: np.ndarray | None = None) -> Impressions:
        """Outcomes from one shared uniform per impression (``u``, else drawn from ``rng``)."""
        n = ctr.shape[0]
        u = rng.random(n) if u is None else u  # type: ignore[union-attr]
        zeros = np.zeros(n, dtype=np.int64)
        return cls((u[:, None] < ctr).astype(float), ctr, zeros if title is None else title,
                   zeros if segment is None else segment, zeros if profile is None else profile, contexts)

    @property
    def n(self) -> int:
        return self.outcomes.shape[0]

    def with_reward(self, signal: str) -> Impressions:
        """The same traffic with ``signal`` as the reward (``click``: the outcomes themselves)."""
        if signal == "click" and "click" not in self.signals:
            return self
        if signal not in self.signals:
            raise SimulationError(f"signal must be click or one of {sorted(self.signals)}, got {signal!r}")
        outcomes, rate = self.signals[signal]
        return replace(self, outcomes=outcomes, ctr=rate, signals={**self.signals, "click": (self.outcomes, self.ctr)})

    def rate(self, signal: str) -> np.ndarray:
        """True (n, K) rates of a signal."""
        return self.ctr if signal == "click" and "click" not in self.signals else self.signals[signal][1]


class Environment(Protocol):
    """What ``run_online`` needs of a simulated environment."""

    @property
    def n_arms(self) -> np.ndarray: ...  # artworks per title

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions: ...


class OneTitleEnvironment(Environment, Protocol):
    """What ``compare`` needs besides: one title's artwork names, their CTRs averaged over the
    traffic (the A/B control is artwork 0), the best fixed artwork, and tags for VW."""

    @property
    def arms(self) -> tuple[str, ...]: ...

    @property
    def ctrs(self) -> tuple[float, ...]: ...

    @property
    def best(self) -> int: ...

    @property
    def tags(self) -> dict[str, tuple[str, ...]]: ...


@dataclass(frozen=True, eq=False)
class Contexts:
    """Sampled traffic: per impression the title, segment and profile (indices)."""

    title: np.ndarray
    segment: np.ndarray
    profile: np.ndarray


@dataclass(frozen=True, eq=False)
class CatalogEnvironment:
    """True CTR per (title, artwork slot, segment); ``ctr[t, a, g]`` is NaN past title t's artworks.

    title_weights / segment_weights: traffic shares (normalized). Profiles: ``n_profiles`` ids,
    each with a fixed segment, drawn uniformly per impression.
    """

    titles: tuple[str, ...]
    artworks: tuple[tuple[str, ...], ...]
    ctr: np.ndarray
    segments: tuple[str, ...] = SEGMENTS
    title_weights: np.ndarray | None = None
    segment_weights: np.ndarray | None = None
    n_profiles: int = 10_000
    profile_segment: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t_n, s_n = len(self.titles), len(self.segments)
        if t_n == 0 or len(self.artworks) != t_n:
            raise SimulationError("titles and artworks must be non-empty and of equal length")
        k = max(len(a) for a in self.artworks)
        ctr = np.asarray(self.ctr, dtype=float)
        if ctr.shape != (t_n, k, s_n):
            raise SimulationError(f"ctr must have shape (titles, max artworks, segments) = {(t_n, k, s_n)}, got {ctr.shape}")
        for t, arts in enumerate(self.artworks):
            block = ctr[t, : len(arts)]
            if len(arts) < 1 or not np.all((block >= 0) & (block <= 1)):
                raise SimulationError(f"ctr of title {self.titles[t]!r} must be in [0, 1] for each of its artworks")
        object.__setattr__(self, "ctr", ctr)
        for name, size in (("title_weights", t_n), ("segment_weights", s_n)):
            w = getattr(self, name)
            w = np.full(size, 1.0 / size) if w is None else np.asarray(w, dtype=float)
            if w.shape != (size,) or np.any(w < 0) or not w.sum() > 0:
                raise SimulationError(f"{name} must be {size} non-negative numbers with a positive sum")
            object.__setattr__(self, name, w / w.sum())
        if self.n_profiles < 1:
            raise SimulationError(f"n_profiles must be >= 1, got {self.n_profiles}")
        # Profiles' segments are a fixed function of the profile index, drawn with the weights.
        cum = np.cumsum(self.segment_weights)
        positions = (np.arange(self.n_profiles) + 0.5) / self.n_profiles
        object.__setattr__(self, "profile_segment", np.minimum(np.searchsorted(cum, positions), s_n - 1))

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([len(a) for a in self.artworks])

    def sample_contexts(self, rng: np.random.Generator, n: int) -> Contexts:
        title = rng.choice(len(self.titles), size=n, p=self.title_weights)
        profile = rng.integers(self.n_profiles, size=n)
        return Contexts(title, self.profile_segment[profile], profile)

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        """``n`` impressions; artwork slots a title does not have get CTR 0 (no policy shows them)."""
        ctx = self.sample_contexts(rng, n)
        ctr = np.nan_to_num(self.ctr[ctx.title, :, ctx.segment])
        return Impressions.draw(rng, ctr, ctx.title, ctx.segment, ctx.profile)

    def traffic(self) -> np.ndarray:
        """P(title, segment) of one impression: (T, S)."""
        return self.title_weights[:, None] * self.segment_weights[None, :]

    def policy_value(self, pi: np.ndarray) -> float:
        """True value of a policy giving ``pi[t, a]`` (or ``pi[t, a, g]`` per segment)."""
        pi = np.asarray(pi, dtype=float)
        if pi.ndim == 2:
            pi = np.repeat(pi[:, :, None], len(self.segments), axis=2)
        ctr = np.nan_to_num(self.ctr)
        return float(np.einsum("tg,tag,tag->", self.traffic(), pi, ctr))

    def best_value(self) -> float:
        """Value of the oracle that knows the best artwork per title and segment."""
        return float((self.traffic() * np.nanmax(self.ctr, axis=1)).sum())

    def table(self, pi: np.ndarray) -> dict[str, dict[str, float]]:
        """A (T, K) probability array as ``{title: {artwork: p}}`` (the ``table:`` policy shape)."""
        return {t: {a: float(pi[i, j]) for j, a in enumerate(arts)} for i, (t, arts) in enumerate(zip(self.titles, self.artworks, strict=True))}


def two_artworks(ctr: tuple[float, float] = (0.24, 0.30), title: str = "t1") -> CatalogEnvironment:
    """One title, artworks ``a1``/``a2`` with the given CTR in every segment."""
    c = np.array(ctr, dtype=float)
    return CatalogEnvironment((title,), (("a1", "a2"),), np.repeat(c[None, :, None], len(SEGMENTS), axis=2))


def segmented_titles(rng: np.random.Generator, n_titles: int = 4, n_artworks: int = 3,
                     base: tuple[float, float] = (0.04, 0.12), lift: float = 0.08) -> CatalogEnvironment:
    """Several titles where each segment has its own favourite artwork.

    Base CTRs are drawn in ``base``; segment g of title t likes artwork (t + g) mod K, which
    gets ``lift`` more, so no single artwork is best for every segment.
    """
    if n_titles < 1 or n_artworks < 2:
        raise SimulationError("n_titles must be >= 1 and n_artworks >= 2")
    s_n = len(SEGMENTS)
    ctr = rng.uniform(base[0], base[1], size=(n_titles, n_artworks, 1)).repeat(s_n, axis=2)
    for t in range(n_titles):
        for g in range(s_n):
            ctr[t, (t + g) % n_artworks, g] += lift
    titles = tuple(f"title{t + 1}" for t in range(n_titles))
    artworks = tuple(tuple(f"t{t + 1}-art{a + 1}" for a in range(n_artworks)) for t in range(n_titles))
    return CatalogEnvironment(titles, artworks, np.clip(ctr, 0, 1), segment_weights=np.array([0.15, 0.25, 0.4, 0.2]))


# -- one-title scenarios for ``compare`` ----------------------------------------------------------


@dataclass(frozen=True)
class BernoulliArms:
    """One title, a true CTR per artwork for everybody; ``arms`` are display names."""

    ctrs: tuple[float, ...]
    arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ctrs) < 2:
            raise SimulationError(f"ctrs: need at least two artworks, got {len(self.ctrs)}")
        if not all(0 <= c <= 1 for c in self.ctrs):
            raise SimulationError(f"ctrs: each CTR must be in [0, 1], got {self.ctrs}")
        if not self.arms:
            object.__setattr__(self, "arms", tuple(chr(ord("A") + i) if i < 26 else f"arm{i}" for i in range(len(self.ctrs))))
        if len(self.arms) != len(self.ctrs) or len(set(self.arms)) != len(self.arms):
            raise SimulationError("arms: need one distinct name per CTR")

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([len(self.ctrs)])

    @property
    def tags(self) -> dict[str, tuple[str, ...]]:
        return {}

    @property
    def best(self) -> int:
        return int(np.argmax(self.ctrs))

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        """Everybody with the same CTRs and no features."""
        ctr = np.broadcast_to(np.asarray(self.ctrs, dtype=float), (n, len(self.ctrs)))
        return Impressions.draw(rng, ctr)


@dataclass(frozen=True)
class PersonalizedArms:
    """``replay.simulation.personalized``'s catalog and profiles, comedy fans ``comedy_share`` of traffic.

    ``ctrs`` are the CTRs averaged over the traffic's group mix: what a one-artwork-for-everybody
    policy faces. The default mix is 60/40 rather than 50/50 so that one fixed artwork is best
    overall (the comedic one, 24% vs the action one's 21%), as an A/B test or a context-free
    bandit assume. The A/B control (arm 0) is that comedic artwork: the A/B test then keeps the
    best one-size-fits-all artwork, the strongest baseline VW can be held to
    (``compare_policies``' default plans it for the largest true gap to the control, -0.14 with
    the default mix, and nothing beats the control significantly).
    """

    comedy_share: float = 0.6
    n_profiles: int = 1_000

    def __post_init__(self) -> None:
        if not 0 < self.comedy_share < 1:
            raise SimulationError(f"comedy_share: must be in (0, 1), got {self.comedy_share}")
        if self.n_profiles < 2:
            raise SimulationError(f"n_profiles: need at least two profiles, got {self.n_profiles}")

    @property
    def arms(self) -> tuple[str, ...]:
        return personalized.artwork_ids()

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([len(self.arms)])

    @property
    def tags(self) -> dict[str, tuple[str, ...]]:
        return personalized.artwork_tags()

    @property
    def group_ctrs(self) -> np.ndarray:
        """CTR[group, arm], groups as ``groups``."""
        return personalized.CTR

    @property
    def groups(self) -> tuple[str, ...]:
        return personalized.GROUPS

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

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        profiles = personalized.make_profiles(rng, self.n_profiles)
        traffic = personalized.make_traffic(rng, self.n_profiles, n)  # request contexts and click draws
        groups = np.array([p.group for p in profiles])
        # make_profiles makes as many comedy fans as action fans; weight the draws to the mix
        weight = np.where(groups == 0, self.comedy_share / np.sum(groups == 0), (1 - self.comedy_share) / np.sum(groups == 1))
        who = rng.choice(self.n_profiles, size=n, p=weight / weight.sum())
        return personalized.impressions(profiles, traffic, who)


# -- the product features' scenarios (``replay.simulation.product``) ------------------------------


@dataclass(frozen=True)
class ClickbaitArms:
    """One title whose artworks differ in click rate and in play-through (quality plays per
    click). A play needs a click: impression t clicks artwork k iff ``u[t] < click[k]`` and then
    plays iff ``v[t] < play_through[k]`` (common random numbers for both signals). The
    clickbait artwork has the highest click rate and the lowest play-through."""

    click: tuple[float, ...] = (0.10, 0.16, 0.08)
    play_through: tuple[float, ...] = (0.60, 0.20, 0.50)
    arms: tuple[str, ...] = ("honest", "clickbait", "plain")

    def __post_init__(self) -> None:
        if not len(self.click) == len(self.play_through) == len(self.arms) >= 2:
            raise SimulationError("click, play_through and arms: one per artwork, at least two")
        if not all(0 <= c <= 1 for c in (*self.click, *self.play_through)):
            raise SimulationError("click rates and play-through must be in [0, 1]")

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([len(self.arms)])

    @property
    def play(self) -> np.ndarray:
        """Quality plays per impression."""
        return np.asarray(self.click) * np.asarray(self.play_through)

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        click = np.broadcast_to(np.asarray(self.click, dtype=float), (n, len(self.arms)))
        clicks = Impressions.draw(rng, click)
        through = rng.random(n)[:, None] < np.asarray(self.play_through)
        plays = clicks.outcomes * through
        return replace(clicks, signals={"play": (plays, np.broadcast_to(self.play, click.shape))})


@dataclass(frozen=True)
class DriftArms:
    """Two artworks whose click rates swap after ``swap_at`` impressions (of ``n``; default
    halfway): artwork 0 is best before, artwork 1 after."""

    rates: tuple[float, float] = (0.12, 0.06)
    swap_at: int | None = None

    def __post_init__(self) -> None:
        if len(self.rates) != 2 or not all(0 <= r <= 1 for r in self.rates):
            raise SimulationError(f"rates: two click rates in [0, 1], got {self.rates}")
        if self.swap_at is not None and self.swap_at < 0:
            raise SimulationError(f"swap_at must be >= 0, got {self.swap_at}")

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([2])

    def swap(self, n: int) -> int:
        return n // 2 if self.swap_at is None else self.swap_at

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        before = np.asarray(self.rates, dtype=float)
        ctr = np.where((np.arange(n) < self.swap(n))[:, None], before, before[::-1])
        return Impressions.draw(rng, ctr)


@dataclass(frozen=True)
class StickyVisits:
    """Profiles coming back to a sticky title: each profile's first visit is uniform in [0, 1),
    its ``visits - 1`` repeats come within ``period`` after it (so all within its sticky
    period: they show the first decision's artwork). Impressions are in time order; ``time``
    gives each impression's time, ``repeat_of`` its first decision."""

    ctrs: tuple[float, ...] = (0.05, 0.10)
    visits: int = 4
    period: float = 0.4

    def __post_init__(self) -> None:
        if self.visits < 1 or not self.period > 0:
            raise SimulationError("visits must be >= 1 and period > 0")

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([len(self.ctrs)])

    def visit_times(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time, profile, repeat_of) of ``n`` impressions (``n // visits`` profiles), time-ordered."""
        profiles = max(1, n // self.visits)
        first = rng.random(profiles)
        times = np.concatenate([first[:, None], first[:, None] + self.period * rng.random((profiles, self.visits - 1))], axis=1)
        order = np.argsort(times, axis=None, kind="stable")
        profile = np.repeat(np.arange(profiles), self.visits)[order]
        is_first = (np.arange(times.size) % self.visits == 0)[order]
        position = np.empty(order.size, dtype=np.int64)
        position[order] = np.arange(order.size)  # where each (profile, visit) lands in time order
        repeat_of = np.where(is_first, -1, position[profile * self.visits])
        return times.ravel()[order], profile, repeat_of

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        time, profile, repeat_of = self.visit_times(rng, n)
        ctr = np.broadcast_to(np.asarray(self.ctrs, dtype=float), (time.size, len(self.ctrs)))
        imps = Impressions.draw(rng, ctr, profile=profile)
        return replace(imps, repeat_of=repeat_of, time=time)


# compare's scenarios (``OneTitleEnvironment``s): name -> class; replay.commands.compare spells
# the names (so --help stays light) and builds each from its flags in ``_environment``.
SCENARIOS: dict[str, type] = {"uniform-ctr": BernoulliArms, "personalized": PersonalizedArms}
# compare's product scenarios (``replay.simulation.product`` runs them); replay.commands.compare_product spells the names
PRODUCT_SCENARIOS: dict[str, type] = {"clickbait": ClickbaitArms, "drift": DriftArms, "sticky": StickyVisits}
