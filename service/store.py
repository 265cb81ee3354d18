"""Redis store: every read and write of shared state, in as few round trips as possible.

One ``/artwork`` request, whatever the number of titles:
- Steady state on a single Redis: ONE round trip. The worker has a recent copy of each
  title's counters, so it draws each title's artwork for all four segments beforehand; the
  ``decide`` script reads the profile's segment, keeps the matching draw, counts the impression,
  stores the decision awaiting its reward (the attribution window as TTL), appends the decision
  record to the title's capped stream, counts it in the title's per-minute traffic history,
  and returns the counters of titles whose copy is due for a refresh.
- Otherwise (a title never seen by this worker, a ``vw`` title, whose features need the
  profile, or a Redis Cluster, where the profile lives in another slot): TWO round trips,
  ``read_state_with_models`` (profile, counters, model versions) and then the same script with the
  segment given.
A reward is one ``reward`` script: atomic and idempotent (counted once, logged once).
All of a title's keys share one hash tag, so both scripts run unchanged on a Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis

from bandit.thompson import SEGMENTS
from service.catalog import Profile, Title, profile_from_json, title_from_json
from service.keys import Keys

# Counter fields in a title's arms hash: "n|<artwork>" impressions, "s|<artwork>" reward sum,
# "r|<artwork>" rewards received; the same with "|<segment>" after the letter per segment.
SEGMENT_ORDER = SEGMENTS  # the order of the per-segment draws (spelled out again in DECIDE_LUA)

# Decisions of one request. KEYS: the profile (read only when no segment is given; on a cluster
# another key of the title's slot stands in), then 4 per decision: arms, pending, log, traffic.
# ARGV: window, log cap, traffic retention, segment ('' = the profile's), profile id, timestamp;
# then 4 per decision: policy, record, refresh flag, draws. The draws are
# "artwork|propensity" per segment in SEGMENT_ORDER, joined by "|", or one pair when every
# segment drew the same (ids cannot contain "|"). The record is a string.format template with
# %s for the artwork, the propensity and (twice) the segment, which only this script knows for
# sure (string.format: a third of the cost of string.gsub here). Returns {segment, counters...}.
# On a single Redis one call carries the whole batch; on a cluster one call per title.
DECIDE_LUA = r"""
local call = redis.call
local window, maxlen, keep, seg, profile, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if seg == '' then seg = call('HGET', KEYS[1], 'segment') or 'new' end
local idx = ({new = 1, low = 2, regular = 3, power = 4})[seg]
if not idx then seg, idx = 'new', 1 end
local pick = '^' .. string.rep('[^|]*|[^|]*|', idx - 1) .. '([^|]*)|([^|]*)'
local out = {seg}
local n = (#KEYS - 1) / 4
for i = 0, n - 1 do
  local k, a = 1 + i * 4, 6 + i * 4
  local art, prop = string.match(ARGV[a + 4], pick)
  if not art then art, prop = string.match(ARGV[a + 4], '^([^|]*)|([^|]*)') end
  call('HINCRBY', KEYS[k + 1], 'n|' .. art, 1)
  call('HINCRBY', KEYS[k + 1], 'n|' .. seg .. '|' .. art, 1)
  call('HSET', KEYS[k + 2], 'artwork', art, 'segment', seg, 'profile', profile, 'policy', ARGV[a + 1],
       'propensity', prop, 'ts', ts)
  call('EXPIRE', KEYS[k + 2], window)
  call('XADD', KEYS[k + 3], 'MAXLEN', '~', maxlen, '*', 'type', 'decision',
       'record', string.format(ARGV[a + 2], art, prop, seg, seg))
  -- the traffic bucket's expiry is set when a field is created, not on every decision
  if call('HINCRBY', KEYS[k + 4], art, 1) == 1 then call('EXPIRE', KEYS[k + 4], keep) end
  if ARGV[a + 3] == '1' then out[#out + 1] = call('HGETALL', KEYS[k + 1]) end
end
return out
"""

REWARD_LUA = """
local ev = redis.call('HMGET', KEYS[1], 'artwork', 'segment', 'rewarded', 'ts', 'profile', 'policy')
if not ev[1] then return {'unknown'} end
if ev[3] then return {'duplicate', ev[1], ev[6]} end
local art, seg, r = ev[1], ev[2], ARGV[1]
redis.call('HSET', KEYS[1], 'rewarded', r)
redis.call('HINCRBYFLOAT', KEYS[2], 's|' .. art, r)
redis.call('HINCRBY', KEYS[2], 'r|' .. art, 1)
redis.call('HINCRBYFLOAT', KEYS[2], 's|' .. seg .. '|' .. art, r)
redis.call('HINCRBY', KEYS[2], 'r|' .. seg .. '|' .. art, 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'reward', 'event_id', ARGV[2], 'reward', r,
           'timestamp', ARGV[3], 'artwork', art, 'segment', seg, 'profile', ev[5], 'policy', ev[6],
           'decided_at', ev[4])
return {'recorded', art, ev[6]}
"""

# Traffic history for the dashboard: per title and minute, decisions per artwork (a small hash
# per bucket, expiring), written by the decide script itself so it costs no extra round trip.
TRAFFIC_BUCKET_S = 60
TRAFFIC_RETENTION_S = 2 * 86_400

SEED_CATALOG_LUA = """
local added = 0
for i = 1, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
if added > 0 then redis.call('INCR', KEYS[2]) end
return added
"""


@dataclass(frozen=True)
class ArmCounts:
    """A title's counters as read from Redis: impressions, reward sums and reward counts."""

    impressions: dict[str, int]
    reward_sums: dict[str, float]
    rewards: dict[str, int]
    segments: dict[str, dict[str, tuple[int, float, int]]]  # segment -> artwork -> (n, s, r)

    @classmethod
    def from_hash(cls, raw: dict) -> ArmCounts:
        n: dict[str, int] = {}
        s: dict[str, float] = {}
        r: dict[str, int] = {}
        seg: dict[str, dict[str, list]] = {}
        for k, v in raw.items():
            key = k.decode() if isinstance(k, bytes) else k
            parts = key.split("|")
            kind = parts[0]
            if kind not in ("n", "s", "r"):
                continue
            value = float(v) if kind == "s" else int(v)
            if len(parts) == 2:
                {"n": n, "s": s, "r": r}[kind][parts[1]] = value
            elif len(parts) == 3:
                slot = seg.setdefault(parts[1], {}).setdefault(parts[2], [0, 0.0, 0])
                slot["nsr".index(kind)] = value
        return cls(n, s, r, {g: {a: tuple(v) for a, v in arts.items()} for g, arts in seg.items()})

    def title_arrays(self, artworks: Sequence[str]) -> tuple[list[int], list[float]]:
        return [self.impressions.get(a, 0) for a in artworks], [self.reward_sums.get(a, 0.0) for a in artworks]

    def segment_arrays(self, segment: str, artworks: Sequence[str]) -> tuple[list[int], list[float]]:
        seg = self.segments.get(segment, {})
        return [seg.get(a, (0, 0.0, 0))[0] for a in artworks], [seg.get(a, (0, 0.0, 0))[1] for a in artworks]


@lru_cache(maxsize=4096)
def _candidates_json(candidates: tuple[str, ...]) -> str:
    return json.dumps(list(candidates), separators=(",", ":"))


def _context_template(context: dict) -> str:
    """The context as JSON with "segment" set to a %s placeholder, other % escaped."""
    try:
        return _context_template_of(tuple(context.items()))
    except TypeError:  # unhashable values (a VW context's lists): not cached
        return _context_template_of.__wrapped__(tuple(context.items()))


@lru_cache(maxsize=4096)
def _context_template_of(items: tuple) -> str:
    # \x01 cannot occur in a context value (validated printable), so it marks the placeholder.
    text = json.dumps({**dict(items), "segment": "\x01"}, separators=(",", ":"))
    return text.replace("%", "%%").replace('"\\u0001"', '"%s"')


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as logged (SPEC's log schema, without the reward).

    ``draws`` holds the (artwork, propensity) chosen for each segment of SEGMENT_ORDER: the
    same pair four times when the segment was known before choosing.
    """

    event_id: str
    token: str
    timestamp: float
    profile: str
    title: str
    policy: str
    candidates: tuple[str, ...]
    context: dict
    draws: tuple[tuple[str, float], ...]

    def template(self) -> str:
        """The record as a Lua string.format template: JSON with %s, in this order, for the
        artwork, the propensity, the context's segment and the segment.

        Built from cached pieces (ids are validated: no quotes, backslashes or %); equal to
        ``json.dumps`` of the record with those four filled in (tested).
        """
        return (
            f'{{"event_id":"{self.event_id}","timestamp":{self.timestamp!r},"profile":"{self.profile}",'
            f'"title":"{self.title}","artwork":"%s","propensity":%s,"policy":"{self.policy}",'
            f'"candidates":{_candidates_json(self.candidates)},"context":{_context_template(self.context)},'
            '"segment":"%s"}'
        )

    def draws_arg(self) -> str:
        """The draws as the decide script reads them: one pair when every segment drew the same."""
        first = self.draws[0]
        pairs = (first,) if all(d == first for d in self.draws) else self.draws
        return "|".join(f"{a}|{p!r}" for a, p in pairs)

    def draw_for(self, segment: str) -> tuple[str, float]:
        return self.draws[SEGMENT_ORDER.index(segment) if segment in SEGMENT_ORDER else 0]


@dataclass(frozen=True)
class RewardOutcome:
    status: str  # recorded | duplicate | unknown
    artwork: str | None = None
    policy: str | None = None  # policy that made the rewarded decision


class RedisStore:
    def __init__(self, client: redis.Redis, keys: Keys, *, attribution_window_s: int, log_maxlen: int):
        self.client = client
        self.keys = keys
        self.window = int(attribution_window_s)
        self.log_maxlen = int(log_maxlen)
        self.cluster = _is_cluster(client)
        self._decide = client.register_script(DECIDE_LUA)
        self._reward = client.register_script(REWARD_LUA)
        self._seed = client.register_script(SEED_CATALOG_LUA)

    # -- health
    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- catalog
    def catalog_version(self) -> int:
        return int(self.client.get(self.keys.catalog_version) or 0)

    def load_catalog(self) -> tuple[int, dict[str, Title]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.catalog_version)
        pipe.hgetall(self.keys.catalog)
        version, raw = pipe.execute()
        titles = {}
        for _k, v in raw.items():
            title = title_from_json(v)
            titles[title.id] = title
        return int(version or 0), titles

    def seed_catalog(self, titles: Iterable[Title]) -> int:
        """Add titles that are not in Redis yet (admin edits win); returns how many were added."""
        argv: list[str] = []
        for t in titles:
            argv += [t.id, json.dumps(t.to_json())]
        if not argv:
            return 0
        return int(self._seed(keys=[self.keys.catalog, self.keys.catalog_version], args=argv))

    def put_title(self, title: Title) -> bool:
        """Create or replace; returns True if it was new."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.catalog, title.id, json.dumps(title.to_json()))
        pipe.srem(self.keys.retired_titles, title.id)
        pipe.incr(self.keys.catalog_version)
        created, _, _ = pipe.execute()
        return bool(created)

    def delete_title(self, title_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.catalog, title_id)
        pipe.sadd(self.keys.retired_titles, title_id)
        pipe.incr(self.keys.catalog_version)
        deleted, _, _ = pipe.execute()
        if not deleted:
            self.client.srem(self.keys.retired_titles, title_id)
        return bool(deleted)

    def logged_titles(self) -> list[str]:
        """Titles whose logs may hold records: the catalog plus deleted titles."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hkeys(self.keys.catalog)
        pipe.smembers(self.keys.retired_titles)
        live, retired = pipe.execute()
        return sorted({(t.decode() if isinstance(t, bytes) else t) for t in [*live, *retired]})

    # -- profiles
    def put_profile(self, profile_id: str, profile: Profile) -> None:
        """A hash: the features as JSON, and the derived segment for the decide script."""
        self.client.hset(
            self.keys.profile(profile_id), mapping={"json": json.dumps(profile.to_json()), "segment": profile.derived_segment}
        )

    def get_profile(self, profile_id: str) -> Profile | None:
        return profile_from_json(self.client.hget(self.keys.profile(profile_id), "json"))

    # -- decisions
    def read_state_with_models(
        self, profile_id: str, titles: Sequence[str], model_titles: Sequence[str]
    ) -> tuple[Profile | None, dict[str, ArmCounts], dict[str, int]]:
        """Round trip 1, plus the published VW model version of ``model_titles`` (0: none).

        One HGET per VW title rides along in the same pipeline, so workers notice a new model
        without an extra round trip (the model itself is loaded off the request path).
        """
        if not titles and not model_titles:  # counters cached: the profile alone, no pipeline
            return self.get_profile(profile_id), {}, {}
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.profile(profile_id), "json")
        for t in titles:
            pipe.hgetall(self.keys.arms(t))
        for t in model_titles:
            pipe.hget(self.keys.model(t), "version")
        raw_profile, *rest = pipe.execute()
        raw_counts, raw_versions = rest[: len(titles)], rest[len(titles) :]
        counts = {t: ArmCounts.from_hash(c) for t, c in zip(titles, raw_counts, strict=True)}
        versions = {t: int(v or 0) for t, v in zip(model_titles, raw_versions, strict=True)}
        return profile_from_json(raw_profile), counts, versions

    def read_counts(self, titles: Sequence[str]) -> dict[str, ArmCounts]:
        pipe = self.client.pipeline(transaction=False)
        for t in titles:
            pipe.hgetall(self.keys.arms(t))
        return {t: ArmCounts.from_hash(c) for t, c in zip(titles, pipe.execute(), strict=True)}

    def record_decisions(
        self, records: Sequence[DecisionRecord], segment: str | None, refresh: Sequence[str] = ()
    ) -> tuple[str, dict[str, ArmCounts]]:
        """Run the ``decide`` script for a request's decisions (they share profile and timestamp).

        ``segment`` None: the script reads the profile's (single Redis only). Titles in
        ``refresh`` get their counters back, read after this request's impressions. Returns the
        segment the decisions were made for and those counters.
        """
        if not records:
            return segment or "new", {}
        if segment is None and self.cluster:
            raise ValueError("on a Redis Cluster the segment must be known before the decide script")
        first = records[0]
        profile_key = self.keys.profile(first.profile)
        common = [self.window, self.log_maxlen, TRAFFIC_RETENTION_S, segment or "", first.profile, repr(first.timestamp)]
        bucket = int(first.timestamp // TRAFFIC_BUCKET_S)
        groups = [[rec] for rec in records] if self.cluster else [list(records)]

        def fill(pipe) -> None:
            # Per call: a NOSCRIPT retry (restarted Redis) fills the pipeline a second time.
            refresh_set = set(refresh)
            for group in groups:
                # On a cluster every key of a call must share the title's slot: its arms key stands
                # in for the profile, which is not read there (the segment is given).
                keys: list[str] = [self.keys.arms(group[0].title) if self.cluster else profile_key]
                args: list = list(common)
                for rec in group:
                    keys += self.keys.decision(rec.title, rec.token, bucket)
                    args += [rec.policy, rec.template(), "1" if rec.title in refresh_set else "0", rec.draws_arg()]
                    refresh_set.discard(rec.title)  # a title repeated in a batch: read it once
                # execute_command, not pipe.evalsha: redis-py's cluster pipeline refuses the
                # latter, while routing a raw EVALSHA by its first key works on both clients.
                pipe.execute_command("EVALSHA", self._decide.sha, len(keys), *keys, *args)

        results = self._execute_scripts(fill)
        decided = _text(results[0][0])
        refreshed_titles = [t for t in dict.fromkeys(r.title for r in records) if t in set(refresh)]
        raw_counts = [c for result in results for c in result[1:]]
        counts = {}
        for title, flat in zip(refreshed_titles, raw_counts, strict=True):
            counts[title] = ArmCounts.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        return decided, counts

    def _execute_scripts(self, fill) -> list:
        """Run a pipeline of EVALSHA calls, loading the scripts once if Redis lost them.

        redis-py's own pipeline support asks SCRIPT EXISTS before every execution: one extra
        round trip per request. We send EVALSHA directly; on NOSCRIPT (a restarted or flushed
        Redis) none of the scripts ran, so loading them and sending again is safe.
        """
        for attempt in (0, 1):
            pipe = self.client.pipeline(transaction=False)
            fill(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                for script in (self._decide, self._reward, self._seed):
                    self.client.script_load(script.script)
        return []

    def record_reward(self, title: str, token: str, event_id: str, reward: float, now: float) -> RewardOutcome:
        result = self._reward(
            keys=[self.keys.pending(title, token), self.keys.arms(title), self.keys.log(title)],
            args=[repr(float(reward)), event_id, repr(now), self.log_maxlen],
        )
        status, artwork, policy = ([v.decode() if isinstance(v, bytes) else v for v in result] + [None, None])[:3]
        return RewardOutcome(status=status, artwork=artwork, policy=policy)

    # -- stats and logs
    def recent_artworks(self, titles: Sequence[str], count: int) -> dict[str, list[str]]:
        """Artworks of (up to) the last ``count`` decisions of each title, newest first."""
        pipe = self.client.pipeline(transaction=False)
        for t in titles:
            # Rewards share the stream; read twice as many entries to see ~count decisions.
            pipe.xrevrange(self.keys.log(t), count=2 * count)
        out: dict[str, list[str]] = {}
        for t, entries in zip(titles, pipe.execute(), strict=True):
            arts = []
            for _id, fields in entries:
                rec = _decode_fields(fields)
                if rec.get("type") == "decision":
                    arts.append(json.loads(rec["record"])["artwork"])
            out[t] = arts[:count]
        return out

    def read_log(self, title: str, start: str = "-", count: int = 10_000) -> list[tuple[str, dict]]:
        """One page of a title's stream, oldest first: (entry id, decoded fields)."""
        entries = self.client.xrange(self.keys.log(title), min=start, max="+", count=count)
        return [((i.decode() if isinstance(i, bytes) else i), _decode_fields(f)) for i, f in entries]

    def traffic_history(self, titles: Sequence[str], buckets: int, now: float) -> dict[str, list[tuple[int, dict[str, int]]]]:
        """Per title, the last ``buckets`` minutes (oldest first): (bucket start epoch s, artwork -> decisions)."""
        last = int(now // TRAFFIC_BUCKET_S)
        span = range(last - buckets + 1, last + 1)
        pipe = self.client.pipeline(transaction=False)
        for t in titles:
            for b in span:
                pipe.hgetall(self.keys.traffic(t, b))
        raw = iter(pipe.execute())
        return {
            t: [(b * TRAFFIC_BUCKET_S, {k: int(v) for k, v in _decode_fields(next(raw)).items()}) for b in span]
            for t in titles
        }

    def reset_title_stats(self, title: str) -> None:
        self.client.delete(self.keys.arms(title))


def _decode_fields(fields: dict) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()
    }


def _is_cluster(client) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
