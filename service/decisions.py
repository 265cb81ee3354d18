"""The decision engine: catalog and counter caches, policy dispatch, logging, fallback.

Staleness, by design:
- A worker re-reads the catalog when its version changes, checking at most every
  ``CATALOG_REFRESH_S`` (default 0.5 s), so an admin write is in force everywhere within 1 s.
- A worker's copy of a title's arm counters is refreshed when it is older than
  ``STATS_CACHE_S`` (default 1 s): the next decision for the title is still made from the old
  copy and brings the new one back in the same round trip. The Thompson action distribution is
  computed from a copy (once per copy and segment), and the artwork is drawn from the same
  distribution that is logged as the propensity, so the logs are exact; staleness only delays
  learning by about that long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from bandit.ab_assignment import ABSplit, assign
from bandit.segments import SEGMENTS
from bandit.thompson import ActionSampler, ThompsonSampling
from service.catalog import Profile, Title, load_catalog_file
from service.config import Settings
from service.errors import UnknownTitle
from service.ids import new_event_ids
from service.models import ModelCache, ModelStore
from service.redis_conn import STORE_ERRORS
from service.store import SEGMENT_ORDER, ArmCounts, DecisionRecord, RedisStore, encode_draws

log = logging.getLogger(__name__)

# How often a worker trims the decision logs by age (with the catalog check, off the decide script).
LOG_TRIM_S = 60.0



class Decision(NamedTuple):
    """One answer of ``/artwork`` (a named tuple: a 40-title batch makes 40 per request, and a
    frozen dataclass costs ~4x as much to build)."""

    profile: str
    title: str
    artwork: str
    event_id: str | None
    propensity: float | None
    policy: str
    fallback: bool

    def to_json(self) -> dict:
        return self._asdict()  # the SPEC's field order


@dataclass(frozen=True)
class Choice:
    """What a serving policy chose: the artwork and the probability it had of choosing it."""

    artwork: str
    propensity: float
    context: dict | None = None  # logged instead of the request context when a policy has features


class CatalogCache:
    """The worker's copy of the catalog, refreshed when the version in Redis changes."""

    def __init__(self, store: RedisStore, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.refresh_s = settings.catalog_refresh_s
        self.clock = clock
        self.seed_titles: list[Title] = load_catalog_file(settings.catalog_path) if settings.load_catalog else []
        # Until Redis answers, the seed file is the catalog: fallbacks still know default artworks.
        self.titles: dict[str, Title] = {t.id: t for t in self.seed_titles}
        self.version: int | None = None
        self.loaded = False
        self._checked_at = float("-inf")
        self._trimmed_at = float("-inf")
        self.log_max_age_s = settings.decision_log_max_age_s
        self._lock = threading.Lock()

    def get(self) -> dict[str, Title]:
        if self.clock() - self._checked_at >= self.refresh_s:
            self.refresh()
        return self.titles

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            self._checked_at = self.clock()
            try:
                version = self.store.catalog_version()
                if version == 0 and self.seed_titles:
                    # A Redis without our catalog (new, or restarted without persistence): seed it.
                    self.store.seed_catalog(self.seed_titles)
                    version = self.store.catalog_version()
                if force or version != self.version:
                    self.version, self.titles = self.store.load_catalog()
                self.loaded = True
                if self._checked_at - self._trimmed_at >= LOG_TRIM_S:
                    self._trimmed_at = self._checked_at
                    self.store.trim_logs(time.time() - self.log_max_age_s)
            except STORE_ERRORS as exc:
                log.warning("catalog refresh failed, serving the last known catalog: %s", exc)

    def invalidate(self) -> None:
        self._checked_at = float("-inf")


@dataclass
class _Snapshot:
    counts: ArmCounts
    fetched_at: float
    # segment -> TS action pmf; None: the one of every segment without data of its own
    samplers: dict[str | None, ActionSampler] = field(default_factory=dict)
    per_segment: _SegmentDraws | None = None
    artworks: tuple[str, ...] = ()  # the title's artworks the samplers were computed for


Draws = tuple[tuple[str, float], ...]


@dataclass
class _SegmentDraws:
    """A title's Thompson draw for every segment at once, under one counters snapshot.

    Segments without data of their own share a sampler, so only the distinct ones are drawn
    from; the draws of each combination of their arms, and the text the decide script reads
    for them, are made once per snapshot (which serves many requests).
    """

    samplers: tuple[ActionSampler, ...]  # distinct, in order of first use by SEGMENTS
    of_segment: tuple[int, ...]  # SEGMENTS position -> index into samplers
    artworks: tuple[str, ...]
    made: dict[object, tuple[Draws, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, per_segment: Sequence[ActionSampler], artworks: tuple[str, ...]) -> _SegmentDraws:
        distinct: list[ActionSampler] = []
        of_segment = []
        for sampler in per_segment:
            index = next((i for i, s in enumerate(distinct) if s is sampler), None)
            if index is None:
                index = len(distinct)
                distinct.append(sampler)
            of_segment.append(index)
        return cls(tuple(distinct), tuple(of_segment), artworks)

    def draw(self, u: float) -> tuple[Draws, str]:
        """Each segment's (artwork, propensity) for the uniform number ``u``, and their text."""
        samplers = self.samplers
        key = samplers[0].pick(u) if len(samplers) == 1 else tuple([s.pick(u) for s in samplers])
        made = self.made.get(key)
        if made is None:
            arms = (key,) if len(samplers) == 1 else key
            draws = tuple((self.artworks[arms[i]], samplers[i].probabilities[arms[i]]) for i in self.of_segment)
            made = self.made[key] = (draws, encode_draws(draws))
        return made


class _PmfCache:
    """TS action distributions by posterior, shared by the worker's snapshots (bounded, oldest
    out first): a title or segment whose counters did not move since the last refresh gets its
    distribution back without the quadrature (``ts_propensities``, the costliest step of a
    refresh). The posterior's exact bits are the key, so the result is the one computing gives."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._pmfs: dict[tuple[bytes, bytes], ActionSampler] = {}

    def get(self, alpha: np.ndarray, beta: np.ndarray, compute: Callable[[], ActionSampler]) -> ActionSampler:
        key = (alpha.tobytes(), beta.tobytes())
        sampler = self._pmfs.get(key)
        if sampler is None:
            if len(self._pmfs) >= self.size:
                del self._pmfs[next(iter(self._pmfs))]
            sampler = self._pmfs[key] = compute()
        return sampler


class CountsCache:
    """Short-lived copies of titles' arm counters, with the TS action distribution per segment."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._snapshots: dict[str, _Snapshot] = {}

    def missing(self, titles: Sequence[str]) -> bool:
        """True if any of ``titles`` has never been read by this worker."""
        return any(t not in self._snapshots for t in titles)

    def stale(self, titles: Sequence[str]) -> list[str]:
        now = self.clock()
        return [t for t in titles if (s := self._snapshots.get(t)) is None or now - s.fetched_at >= self.ttl_s]

    def put(self, counts: Mapping[str, ArmCounts]) -> None:
        now = self.clock()
        for title, c in counts.items():
            self._snapshots[title] = _Snapshot(c, now)

    def snapshot(self, title: str) -> _Snapshot:
        return self._snapshots[title]

    def clear(self, title: str | None = None) -> None:
        if title is None:
            self._snapshots.clear()
        else:
            self._snapshots.pop(title, None)


class DecisionEngine:
    """Chooses artworks for a profile and a batch of titles; logs each decision."""

    def __init__(self, store: RedisStore, settings: Settings, rng: np.random.Generator):
        self.store = store
        self.settings = settings
        self.rng = rng
        self.catalog = CatalogCache(store, settings)
        self.counts = CountsCache(settings.stats_cache_s)
        self.pmfs = _PmfCache()
        self.thompson = ThompsonSampling(
            segment_strength=settings.ts_segment_strength, uniform_mix=settings.ts_uniform_mix
        )
        # policy name -> chooser(title, segment, profile_id, profile, context) -> Choice
        self.choosers: dict[str, Callable[..., Choice]] = {
            "thompson": self._choose_thompson,
            "fixed": self._choose_fixed,
            "ab": self._choose_ab,
            "vw": self._choose_vw,
        }
        # Policies whose choice depends on the profile's segment: drawn once per segment when the
        # segment is only known inside the decide script.
        self.per_segment: dict[str, Callable[[Title], tuple[Draws, str]]] = {
            "thompson": self._thompson_per_segment
        }
        self.models = ModelCache(ModelStore(store.client, store.keys))
        self.on_fallback: Callable[[str, str], None] = lambda title, reason: None

    def titles_for(self, title_ids: Sequence[str]) -> list[Title]:
        catalog = self.catalog.get()
        missing = [t for t in title_ids if t not in catalog]
        if missing:
            raise UnknownTitle(f"unknown title: {missing[0]}", field="title")
        return [catalog[t] for t in title_ids]

    def decide(
        self, profile_id: str, title_ids: Sequence[str], context: dict[str, str], deferred: bool = False
    ) -> list[Decision]:
        """Decisions for ``title_ids`` (in order), logged; default artworks when Redis fails.
        ``deferred``: counted, logged and rewardable only once activated (``RedisStore.activate``).

        One round trip on a single Redis when every title's counters are cached and none is a
        ``vw`` title: the artwork is drawn for each segment and the decide script keeps the
        draw of the profile's segment. Otherwise the profile is read first (two round trips).
        """
        titles = self.titles_for(title_ids)
        unique = {t.id: t for t in titles}
        ts_titles = [t for t, title in unique.items() if title.policy == "thompson"]
        stale = self.counts.stale(ts_titles)
        vw_titles = [t for t, title in unique.items() if title.policy == "vw"]
        sticky_titles = [t for t, title in unique.items() if title.sticky_s]
        # a sticky title's remembered decision is read with the profile: two round trips
        one_trip = not (self.store.cluster or vw_titles or sticky_titles or self.counts.missing(ts_titles))
        try:
            profile: Profile | None = None
            segment: str | None = None
            sticky: dict[str, tuple[str, float, str]] = {}
            if not one_trip:
                profile, fresh, versions, sticky = self.store.read_state_with_models(profile_id, stale, vw_titles, sticky_titles)
                self.counts.put(fresh)
                self.models.observe(versions)
                segment = profile.derived_segment if profile is not None else "new"
            now = time.time()
            event_ids = new_event_ids([t.id for t in titles])
            records = [
                self._record(title, segment, profile_id, profile, context, now, event_id, sticky.get(title.id), deferred)
                for title, event_id in zip(titles, event_ids, strict=True)
            ]
            decided, refreshed = self.store.record_decisions(records, segment, stale if one_trip else ())
            self.counts.put(refreshed)
        except STORE_ERRORS as exc:
            log.warning("store unavailable, serving default artworks: %s", exc)
            for t in titles:
                self.on_fallback(t.id, type(exc).__name__)
            return [self.fallback(profile_id, t) for t in titles]
        i = SEGMENT_ORDER.index(decided) if decided in SEGMENT_ORDER else 0  # DecisionRecord.draw_for, once
        decisions = []
        for r in records:
            artwork, propensity = r.draws[i]
            decisions.append(Decision(profile_id, r.title, artwork, r.event_id, propensity, r.policy, False))
        return decisions

    def _record(
        self,
        title: Title,
        segment: str | None,
        profile_id: str,
        profile: Profile | None,
        context: dict,
        now: float,
        event_id: str,
        first: tuple[str, float, str] | None = None,
        deferred: bool = False,
    ) -> DecisionRecord:
        """The decision for ``title``; with ``segment`` None, one draw per segment. ``first``: the
        profile's remembered first decision of a sticky title, repeated (its artwork and its
        propensity: the randomization unit is that decision; the record names it in
        ``context.repeat_of``)."""
        sticky_s = title.sticky_s
        if first is not None and first[0] in title.artwork_ids:
            draws, draws_text = ((first[0], first[1]),) * len(SEGMENTS), None
            logged_context = {**context, "repeat_of": first[2]}
            sticky_s = 0
        elif segment is None and title.policy in self.per_segment:
            draws, draws_text = self.per_segment[title.policy](title)
            logged_context = context
        else:
            choice = self.choosers[title.policy](title, segment or "new", profile_id, profile, context)
            draws, draws_text = ((choice.artwork, choice.propensity),) * len(SEGMENTS), None
            logged_context = choice.context if choice.context is not None else context
        if deferred:  # never remembered as a sticky first decision: it may never be displayed
            sticky_s = 0
        # event_id, token, timestamp, profile, title, policy, candidates, context, draws, draws_text, half_life_s,
        # sticky_s, deferred
        return DecisionRecord(
            event_id, event_id[-32:], now, profile_id, title.id, title.policy, title.artwork_ids, logged_context, draws, draws_text,
            title.half_life_s, sticky_s, deferred,
        )

    @staticmethod
    def fallback(profile_id: str, title: Title) -> Decision:
        return Decision(profile_id, title.id, title.default, None, None, title.policy, fallback=True)

    # -- serving policies
    def _snapshot(self, title: Title) -> _Snapshot:
        """The title's counters snapshot; what was derived from it for another artwork list
        (the catalog changed since) is dropped."""
        snap = self.counts.snapshot(title.id)
        if snap.artworks != title.artwork_ids:
            snap.samplers.clear()
            snap.per_segment = None
            snap.artworks = title.artwork_ids
        return snap

    def action_sampler(self, title: Title, segment: str) -> ActionSampler:
        """TS action distribution of ``title`` for ``segment`` under the cached snapshot."""
        snap = self._snapshot(title)
        sampler = snap.samplers.get(segment)
        if sampler is None:
            # Segments without data of their own have the same counters (zeros), so the same
            # posterior: it is computed once per snapshot, under the key None.
            own = segment if segment in snap.counts.segments else None
            sampler = snap.samplers.get(own)
            if sampler is None:
                counts = snap.counts.decayed(time.time(), title.half_life_s) if title.half_life_s else snap.counts
                n_t, s_t = counts.title_arrays(title.artwork_ids)
                n_g, s_g = counts.segment_arrays(segment, title.artwork_ids)
                posterior = self.thompson.segment_posterior(n_t, s_t, n_g, s_g)
                sampler = snap.samplers[own] = self.pmfs.get(
                    posterior.alpha, posterior.beta, lambda: ActionSampler.of(self.thompson.action_probabilities(posterior))
                )
            snap.samplers[segment] = sampler
        return sampler

    def _choose_thompson(self, title: Title, segment: str, profile_id: str, profile: Profile | None, context) -> Choice:
        sampler = self.action_sampler(title, segment)
        arm = sampler.draw(self.rng)
        return Choice(title.artwork_ids[arm], sampler.probabilities[arm])

    def _thompson_per_segment(self, title: Title) -> tuple[Draws, str]:
        """(artwork, propensity) drawn for each segment, and their text for the decide script.
        Only the profile's segment's draw is served, so one uniform number serves all four
        (each keeps its segment's distribution)."""
        snap = self._snapshot(title)
        table = snap.per_segment
        if table is None:
            samplers = [self.action_sampler(title, seg) for seg in SEGMENTS]
            table = snap.per_segment = _SegmentDraws.of(samplers, title.artwork_ids)
        return table.draw(self.rng.random())

    def _choose_fixed(self, title: Title, *_args) -> Choice:
        return Choice(title.default, 1.0)

    def _choose_ab(self, title: Title, segment: str, profile_id: str, *_args) -> Choice:
        config = title.ab_split()
        a = assign(ABSplit(title.artwork_ids, config.weights, config.salt), profile_id)
        return Choice(a.arm, a.propensity)

    def _choose_vw(self, title: Title, segment: str, profile_id: str, profile: Profile | None, context) -> Choice:
        c = self.models.choose(title, segment, profile, context, self.rng)
        return Choice(c.artwork, c.propensity, c.context)
