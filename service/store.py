"""Redis store: every read and write of shared state, in as few round trips as possible.

One ``/artwork`` request, whatever the number of titles:
- Steady state on a single Redis: ONE round trip. The worker has a recent copy of each
  title's counters, so it draws each title's artwork for all four segments beforehand; the
  ``decide`` script reads the profile's segment, keeps the matching draw, counts the impression,
  stores the decision awaiting its reward (the attribution window as TTL), appends the decision
  record to the title's capped stream, takes the minute's traffic snapshot when the worker
  asks (its first decision of the title in a minute), and returns the counters of titles whose copy is due for a refresh.
- Otherwise (a title never seen by this worker, a ``vw`` title, whose features need the
  profile, or a Redis Cluster, where the profile lives in another slot): TWO round trips,
  ``read_state_with_models`` (profile, counters, model versions) and then the same script with the
  segment given.
A reward is one ``reward`` script: atomic and idempotent (counted once, logged once).
All of a title's keys share one hash tag, so both scripts run unchanged on a Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import redis

from bandit.decay import REBASE_HALF_LIVES, decayed
from bandit.segments import SEGMENTS
from service.catalog import Profile, Title, profile_from_json, title_from_json, with_salt
from service.keys import Keys

# Counter fields in a title's arms hash: "s|<artwork>" reward sum, "r|<artwork>" rewards
# received; the same with "|<segment>" after the letter per segment, and "n|<segment>|<artwork>"
# impressions. A title's impressions are the sum of its segments' (``ArmCounts.from_hash``): a
# decision is one increment, which is a sixth of the decide script's Redis calls on a batch.
# (Hashes written before kept an "n|<artwork>" total too; it is ignored.)
SEGMENT_ORDER = SEGMENTS  # the order of the per-segment draws (spelled out again in DECIDE_LUA)

# Shared by DECIDE_LUA and ACTIVATE_LUA (an impression of a title whose counters decay).
WEIGHT_FUNCTION_LUA = """
-- Decaying counters (bandit.decay): "dn|..." and "ds|..." grow by 2^((t - e) / h), e the epoch
-- in field "e"; moved forward (the sums rescaled once) after REBASE_HALF_LIVES half-lives.
-- (t_text: t as the caller has it, stored as the new epoch.)
local function weight(arms, t, h, t_text)
  local e = tonumber(redis.call('HGET', arms, 'e'))
  if not e then redis.call('HSET', arms, 'e', t_text); return 1 end
  local x = (t - e) / h
  if x <= REBASE_HALF_LIVES then return 2 ^ x end
  local flat, scale = redis.call('HGETALL', arms), 2 ^ -x
  for j = 1, #flat, 2 do
    if string.sub(flat[j], 1, 1) == 'd' then redis.call('HSET', arms, flat[j], string.format('%.17g', tonumber(flat[j + 1]) * scale)) end
  end
  redis.call('HSET', arms, 'e', t_text)
  return 1
end
""".replace("REBASE_HALF_LIVES", repr(REBASE_HALF_LIVES))

# Traffic history (the dashboard's, /stats' recent shares) costs no call per decision: a
# title's impressions per artwork at the start of each minute, as the minute's first increment
# found them, in a small hash per minute (``Keys.traffic``, expiring; its field "|" makes it
# exist even when taken before any impression). A worker asks for it with the first decision it makes of a title in
# a minute (the decide script's flag), ACTIVATE_LUA on every activation: either way the
# snapshot is taken before the minute's first increment, so the impressions of minutes a..b are
# exactly C(b + 1) - C(a), C(m) being the first snapshot of a minute >= m, or the counters now
# (TRAFFIC_SUM_LUA). Impressions are counted per segment ("n|<segment>|<artwork>", see above).
SNAPSHOT_LUA = r"""
local function impressions(flat)
  local sums = {}
  for j = 1, #flat, 2 do
    local art = string.match(flat[j], '^n|[^|]*|(.*)$')
    if art then sums[art] = (sums[art] or 0) + tonumber(flat[j + 1]) end
  end
  return sums
end
local function snapshot(arms, bucket, keep)
  if redis.call('EXISTS', bucket) == 1 then return end
  local fields = {'|', 0}
  for art, n in pairs(impressions(redis.call('HGETALL', arms))) do fields[#fields + 1] = art; fields[#fields + 1] = n end
  redis.call('HSET', bucket, unpack(fields))
  redis.call('EXPIRE', bucket, keep)
end
"""

# Decisions of one request. KEYS: the profile (read only when no segment is given; on a cluster
# another key of the title's slot stands in), then 4 per decision: arms, pending, log, traffic snapshot.
# ARGV: window, log cap, traffic retention, segment ('' = the profile's), profile id, timestamp;
# then 4 per decision: policy, record, flag, draws. The flag: a digit, 1 to return the title's
# counters (refresh) + 2 when the decision is deferred (activated later) + 4 to take the
# minute's traffic snapshot first (SNAPSHOT_LUA), then "|<half-life s>" for a title whose
# counters decay. The draws are
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
local seg_n = 'n|' .. seg .. '|'  -- the segment's impressions field, less the artwork
local pending_mid, pending_tail = '|' .. seg .. '|' .. profile .. '|', '|' .. ts .. '|'  -- (PENDING_LUA's layout)
local n = (#KEYS - 1) / 4
WEIGHT_FUNCTIONSNAPSHOT_FUNCTIONfor i = 0, n - 1 do
  local k, a = 1 + i * 4, 6 + i * 4
  local art, prop = string.match(ARGV[a + 4], pick)
  if not art then art, prop = string.match(ARGV[a + 4], '^([^|]*)|([^|]*)') end
  local flag, half_life = ARGV[a + 3], ''  -- a half-life rides after '|' (decaying titles only)
  if #flag > 1 then flag, half_life = string.match(flag, '^(%d)|(.*)$') end
  local f = string.byte(flag) - 48
  if f >= 4 then snapshot(KEYS[k + 1], KEYS[k + 4], keep); f = f - 4 end
  if f < 2 then
    call('HINCRBY', KEYS[k + 1], seg_n .. art, 1)
    if half_life ~= '' then
      local w = string.format('%.17g', weight(KEYS[k + 1], tonumber(ts), tonumber(half_life), ts))
      call('HINCRBYFLOAT', KEYS[k + 1], 'd' .. seg_n .. art, w)
    end
    call('SET', KEYS[k + 2], art .. pending_mid .. ARGV[a + 1] .. '|' .. prop .. pending_tail, 'EX', window)
    call('XADD', KEYS[k + 3], 'MAXLEN', '~', maxlen, '*', 'type', 'decision',
         'record', string.format(ARGV[a + 2], art, prop, seg, seg))
  else  -- deferred: kept pending with its record; ACTIVATE_LUA counts and logs it
    call('SET', KEYS[k + 2], art .. pending_mid .. ARGV[a + 1] .. '|' .. prop .. pending_tail .. 'D\n'
         .. string.format(ARGV[a + 2], art, prop, seg, seg), 'EX', window)
  end
  if f % 2 == 1 then out[#out + 1] = call('HGETALL', KEYS[k + 1]) end
end
return out
""".replace("WEIGHT_FUNCTION", WEIGHT_FUNCTION_LUA).replace("SNAPSHOT_FUNCTION", SNAPSHOT_LUA)

# A pending decision (awaiting its reward for the attribution window) is one string, written
# with its expiry in one command: "artwork|segment|profile|policy|propensity|ts|" then its state:
# ";<signal>=<aggregate>" per signal rewarded so far, or, while deferred, "D", a newline and its
# log record. (Ids cannot contain "|", signals match [a-z][a-z0-9_]*.) ``pending`` reads one as
# a table; a decision a version before this one left as a hash is read from its fields, and the
# first write replaces it by the string (SET ... KEEPTTL), so an upgrade loses no reward.
# ``parse_pending`` reads the layout in Python (a test keeps the two equal).
PENDING_LUA = r"""
local function pending(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then  -- WRONGTYPE: the hash of an earlier version
    local h, f = redis.call('HGETALL', key), {}
    for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
    local state = ''
    if f.deferred == '1' then state = 'D\n' .. f.record
    else for name, x in pairs(f) do if string.sub(name, 1, 3) == 'rw|' then state = state .. ';' .. string.sub(name, 4) .. '=' .. x end end
    end
    v = f.artwork .. '|' .. f.segment .. '|' .. f.profile .. '|' .. f.policy .. '|' .. f.propensity .. '|' .. f.ts .. '|' .. state
  end
  if not v then return nil end
  local head, art, seg, profile, policy, prop, ts, state = string.match(v, '^(([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|)(.*)$')
  local ev = {head = head, artwork = art, segment = seg, profile = profile, policy = policy, ts = ts, state = state}
  if string.sub(state, 1, 2) == 'D\n' then ev.deferred, ev.record = true, string.sub(state, 3) end
  return ev
end
"""

# A reward names its signal (ARGV[5]); ARGV[6] is '1' when it is the title's reward signal, the
# one the bandit learns from; ARGV[7] the title's half-life ('' = counters never forget); ARGV[8]
# the title's aggregation. KEYS: pending, arms, log.
# Each signal counts once per decision: the pending decision's state holds that signal's
# aggregated value so far (PENDING_LUA). ``earliest`` keeps the first (a repeat is a ``duplicate``);
# ``sum`` adds (clipped to 1: Thompson's counters are Beta counts, one success at most per
# impression); ``max`` keeps the largest (a click's 0.3 upgraded to 1 by a later play). A
# report that changes the aggregate adds the difference to the sums: every signal's per artwork
# in "g|<signal>|<artwork>" (/stats' rates), the reward signal's also to the bandit's counters
# (the rewarded count moves once, at the first report); one that changes nothing is a
# ``duplicate``. Each change is logged with the value received (``value``) and the new
# aggregate (``reward``): as a "reward" record for the reward signal (the last one of a decision
# holds its final reward), as a "signal" record for the others, which learners and exports skip.
# A deferred decision not yet activated takes no reward (``inactive``).
REWARD_LUA = """
PENDING_FUNCTION
local ev = pending(KEYS[1])
if not ev then return {'unknown'} end
if ev.deferred then return {'inactive', ev.artwork, ev.policy} end
local art, seg, sig, value, agg = ev.artwork, ev.segment, ARGV[5], tonumber(ARGV[1]), ARGV[8]
local old, new = tonumber(string.match(ev.state, ';' .. sig .. '=([^;]*)')), nil
if not old then new = value
elseif agg == 'sum' then new = math.min(old + value, 1)
elseif agg == 'max' then new = math.max(old, value)
end
if new == nil or new == old then return {'duplicate', art, ev.policy} end
local r = string.format('%.17g', new)
local delta = new - (old or 0)
local d = string.format('%.17g', delta)
redis.call('SET', KEYS[1], ev.head .. string.gsub(ev.state, ';' .. sig .. '=[^;]*', '') .. ';' .. sig .. '=' .. r, 'KEEPTTL')
redis.call('HINCRBYFLOAT', KEYS[2], 'g|' .. sig .. '|' .. art, d)
local kind = 'signal'
if ARGV[6] == '1' then
  kind = 'reward'
  redis.call('HINCRBYFLOAT', KEYS[2], 's|' .. art, d)
  redis.call('HINCRBYFLOAT', KEYS[2], 's|' .. seg .. '|' .. art, d)
  if not old then
    redis.call('HINCRBY', KEYS[2], 'r|' .. art, 1)
    redis.call('HINCRBY', KEYS[2], 'r|' .. seg .. '|' .. art, 1)
  end
  if ARGV[7] ~= '' then  -- decaying counters: weighted by the decision's time (see DECIDE_LUA)
    local e = tonumber(redis.call('HGET', KEYS[2], 'e') or ev.ts)
    local w = string.format('%.17g', delta * 2 ^ ((tonumber(ev.ts) - e) / tonumber(ARGV[7])))
    redis.call('HINCRBYFLOAT', KEYS[2], 'ds|' .. art, w)
    redis.call('HINCRBYFLOAT', KEYS[2], 'ds|' .. seg .. '|' .. art, w)
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', kind, 'event_id', ARGV[2], 'reward', r,
           'value', ARGV[1], 'aggregation', agg, 'signal', sig, 'timestamp', ARGV[3], 'artwork', art,
           'segment', seg, 'profile', ev.profile, 'policy', ev.policy, 'decided_at', ev.ts)
return {'recorded', art, ev.policy}
""".replace("PENDING_FUNCTION", PENDING_LUA)

# Activation of a deferred decision (``/artwork`` with ``defer_activation``): the decide script
# stored it pending, deferred, with its log record, and counted nothing. KEYS: pending,
# arms, log, traffic snapshot (of the activation's minute, taken if missing: SNAPSHOT_LUA). ARGV: log cap, traffic retention, the
# title's half-life ('' = counters never forget). Counts the impression (a decaying one at the
# decision's time, as the reward script weighs its reward) and logs the decision, once; a repeat
# (or a decision that was never deferred) is a ``duplicate``.
ACTIVATE_LUA = """
WEIGHT_FUNCTION
PENDING_FUNCTION
SNAPSHOT_FUNCTION
local ev = pending(KEYS[1])
if not ev then return {'unknown'} end
if not ev.deferred then return {'duplicate', ev.artwork} end
local art, seg = ev.artwork, ev.segment
snapshot(KEYS[2], KEYS[4], ARGV[2])
redis.call('SET', KEYS[1], ev.head, 'KEEPTTL')  -- active: no record, no reward yet
redis.call('HINCRBY', KEYS[2], 'n|' .. seg .. '|' .. art, 1)
if ARGV[3] ~= '' then
  local w = string.format('%.17g', weight(KEYS[2], tonumber(ev.ts), tonumber(ARGV[3]), ev.ts))
  redis.call('HINCRBYFLOAT', KEYS[2], 'dn|' .. seg .. '|' .. art, w)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'type', 'decision', 'record', ev.record)
return {'activated', art}
""".replace("WEIGHT_FUNCTION", WEIGHT_FUNCTION_LUA).replace("PENDING_FUNCTION", PENDING_LUA).replace(
    "SNAPSHOT_FUNCTION", SNAPSHOT_LUA)

# Traffic snapshots (SNAPSHOT_LUA): one per title and minute, kept 48 h.
TRAFFIC_BUCKET_S = 60
TRAFFIC_RETENTION_S = 2 * 86_400

# A title's impressions per artwork over points (minute ranges), server-side, so a long span
# costs one call and a small reply. KEYS: the title's arms, then its snapshots of consecutive
# minutes, first .. now + 1 (a worker's clock may run ahead). ARGV: per point, its first and
# last minute as offsets from the first key's. C(m), the impressions at the start of minute m:
# the snapshot of the first minute >= m that has one (none: no impression since), else the
# counters now. Returns one flat {artwork, impressions, ...} list per point: C(last + 1) - C(first).
TRAFFIC_SUM_LUA = r"""
SNAPSHOT_FUNCTION
local m = #KEYS - 1
local C = {}
C[m + 1] = impressions(redis.call('HGETALL', KEYS[1]))
for i = m, 1, -1 do
  local flat = redis.call('HGETALL', KEYS[i + 1])
  if #flat == 0 then C[i] = C[i + 1] else
    local t = {}
    for j = 1, #flat, 2 do if flat[j] ~= '|' then t[flat[j]] = tonumber(flat[j + 1]) end end
    C[i] = t
  end
end
local out = {}
for p = 1, #ARGV, 2 do
  local from, to, point = C[tonumber(ARGV[p]) + 1], C[tonumber(ARGV[p + 1]) + 2], {}
  for art, n in pairs(to) do
    local d = n - (from[art] or 0)
    if d > 0 then point[#point + 1] = art; point[#point + 1] = d end
  end
  out[#out + 1] = point
end
return out
""".replace("SNAPSHOT_FUNCTION", SNAPSHOT_LUA)

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
    signals: dict[str, dict[str, float]] = field(default_factory=dict)  # signal -> artwork -> sum
    # Decaying counters (titles with a half-life): growth-weighted sums "dn|seg|art" (per segment
    # only, as impressions), "ds|art" and "ds|seg|art", and their epoch "e".
    growth: dict[str, float] = field(default_factory=dict)
    epoch: float | None = None

    @classmethod
    def from_hash(cls, raw: dict) -> ArmCounts:
        n: dict[str, int] = {}
        s: dict[str, float] = {}
        r: dict[str, int] = {}
        seg: dict[str, dict[str, list]] = {}
        signals: dict[str, dict[str, float]] = {}
        growth: dict[str, float] = {}
        epoch = None
        for k, v in raw.items():
            key = k.decode() if isinstance(k, bytes) else k
            parts = key.split("|")
            kind = parts[0]
            if kind == "g" and len(parts) == 3:
                signals.setdefault(parts[1], {})[parts[2]] = float(v)
                continue
            if kind in ("dn", "ds"):
                growth[key] = float(v)
                continue
            if kind == "e":
                epoch = float(v)
                continue
            if kind not in ("n", "s", "r"):
                continue
            value = float(v) if kind == "s" else int(v)
            if len(parts) == 2:
                if kind != "n":  # an old hash's impressions total: the segments' sum below
                    {"s": s, "r": r}[kind][parts[1]] = value
            elif len(parts) == 3:
                slot = seg.setdefault(parts[1], {}).setdefault(parts[2], [0, 0.0, 0])
                slot["nsr".index(kind)] = value
                if kind == "n":
                    n[parts[2]] = n.get(parts[2], 0) + value
        return cls(n, s, r, {g: {a: tuple(v) for a, v in arts.items()} for g, arts in seg.items()}, signals, growth, epoch)

    def decayed(self, now: float, half_life_s: float) -> ArmCounts:
        """The counters as the bandit sees them at ``now`` with a half-life: impressions and reward
        sums (overall and per segment) are the decayed sums; reward counts and signals stay raw."""
        scale = float(decayed(1.0, now, self.epoch, half_life_s)) if self.epoch is not None else 0.0
        n: dict[str, float] = {}
        s: dict[str, float] = {}
        seg: dict[str, dict[str, list]] = {}
        for key, v in self.growth.items():
            kind, *rest = key.split("|")
            if len(rest) == 1:
                if kind == "ds":  # (an old hash's "dn|art" total: the segments' sum below)
                    s[rest[0]] = v * scale
            else:
                slot = seg.setdefault(rest[0], {}).setdefault(rest[1], [0.0, 0.0, 0])
                slot[0 if kind == "dn" else 1] = v * scale
                if kind == "dn":
                    n[rest[1]] = n.get(rest[1], 0.0) + v * scale
        for g, arts in self.segments.items():
            for a, (_n, _s, r) in arts.items():
                seg.setdefault(g, {}).setdefault(a, [0.0, 0.0, 0])[2] = r
        return ArmCounts(n, s, dict(self.rewards), {g: {a: tuple(v) for a, v in arts.items()} for g, arts in seg.items()}, self.signals)

    def title_arrays(self, artworks: Sequence[str]) -> tuple[list[int], list[float]]:
        return [self.impressions.get(a, 0) for a in artworks], [self.reward_sums.get(a, 0.0) for a in artworks]

    def segment_arrays(self, segment: str, artworks: Sequence[str]) -> tuple[list[int], list[float]]:
        seg = self.segments.get(segment, {})
        return [seg.get(a, (0, 0.0, 0))[0] for a in artworks], [seg.get(a, (0, 0.0, 0))[1] for a in artworks]


@lru_cache(maxsize=4096)
def _title_part(title: str, policy: str, candidates: tuple[str, ...]) -> str:
    """The middle of a record template: what one title's records share."""
    return (
        f'"title":"{title}","artwork":"%s","propensity":%s,"policy":"{policy}",'
        f'"candidates":{json.dumps(list(candidates), separators=(",", ":"))},"context":'
    )


def _context_template(context: dict) -> str:
    """The context as JSON with "segment" set to a %s placeholder, other % escaped."""
    try:
        return _context_template_of(tuple(context.items()))
    except TypeError:  # unhashable values (a VW context's lists): not cached
        return _context_template_of.__wrapped__(tuple(context.items()))


@lru_cache(maxsize=4096)
def _context_template_of(items: tuple) -> str:
    # \x01 cannot occur in a context value (control characters are refused), so it marks the placeholder.
    text = json.dumps({**dict(items), "segment": "\x01"}, separators=(",", ":"))
    return text.replace("%", "%%").replace('"\\u0001"', '"%s"')


def _template(event_id: str, timestamp_text: str, profile: str, title_part: str, context_part: str) -> str:
    return (
        f'{{"event_id":"{event_id}","timestamp":{timestamp_text},"profile":"{profile}",'
        f'{title_part}{context_part},"segment":"%s"}}'
    )


def encode_draws(draws: Sequence[tuple[str, float]]) -> str:
    """Draws as the decide script reads them: "artwork|propensity" per segment joined by "|",
    or one pair when every segment drew the same."""
    first = draws[0]
    pairs = (first,) if all(d == first for d in draws) else draws
    return "|".join(f"{a}|{p!r}" for a, p in pairs)


class DecisionRecord(NamedTuple):
    """One decision as logged (SPEC's log schema, without the reward).

    ``draws`` holds the (artwork, propensity) chosen for each segment of SEGMENT_ORDER: the
    same pair four times when the segment was known before choosing. ``draws_text`` is
    ``encode_draws(draws)`` when the caller has it already. (A named tuple: one per title of a
    batch, built ~4x faster than a frozen dataclass.)
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
    draws_text: str | None = None
    half_life_s: float = 0.0  # > 0: the title's counters decay (DECIDE_LUA's decaying sums)
    sticky_s: int = 0  # > 0: a first decision of a sticky title, remembered for that long
    deferred: bool = False  # counted and logged only once activated (``RedisStore.activate``)

    def template(self) -> str:
        """The record as a Lua string.format template: JSON with %s, in this order, for the
        artwork, the propensity, the context's segment and the segment.

        Built from cached pieces (ids are validated: no quotes, backslashes or %); equal to
        ``json.dumps`` of the record with those four filled in (tested).
        """
        return _template(
            self.event_id, repr(self.timestamp), self.profile,
            _title_part(self.title, self.policy, self.candidates), _context_template(self.context),
        )

    def draws_arg(self) -> str:
        return self.draws_text if self.draws_text is not None else encode_draws(self.draws)

    def draw_for(self, segment: str) -> tuple[str, float]:
        return self.draws[SEGMENT_ORDER.index(segment) if segment in SEGMENT_ORDER else 0]


_FLAGS = tuple("01234567")  # the decide script's per-decision flag: refresh + 2 * deferred + 4 * snapshot


@dataclass(frozen=True)
class PendingDecision:
    """A decision awaiting its reward, as PENDING_LUA reads it."""

    artwork: str
    segment: str
    profile: str
    policy: str
    propensity: float
    timestamp: float
    rewards: dict[str, float]  # signal -> aggregate so far
    record: str | None = None  # the log record, while the decision is deferred


def parse_pending(raw: bytes | str) -> PendingDecision:
    """The string layout PENDING_LUA describes (not an earlier version's hash)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    art, seg, profile, policy, prop, ts, state = text.split("|", 6)
    if state.startswith("D\n"):
        return PendingDecision(art, seg, profile, policy, float(prop), float(ts), {}, state[2:])
    rewards = {name: float(value) for name, _, value in (part.partition("=") for part in state.split(";")[1:])}
    return PendingDecision(art, seg, profile, policy, float(prop), float(ts), rewards)


@dataclass(frozen=True)
class RewardOutcome:
    status: str  # recorded | duplicate | unknown | inactive (deferred, not activated)
    artwork: str | None = None
    policy: str | None = None  # policy that made the rewarded decision
    replicated: bool = True  # False: WAIT saw fewer replicas than asked within its timeout


class RedisStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, *, attribution_window_s: int, log_maxlen: int,
        wait_replicas: int = 0, wait_timeout_s: float = 0.1,
    ):
        self.client = client
        self.keys = keys
        self.window = int(attribution_window_s)
        self.log_maxlen = int(log_maxlen)
        self.wait_replicas = int(wait_replicas)
        self.wait_timeout_ms = max(1, round(wait_timeout_s * 1000))  # WAIT's 0 would block forever
        self.cluster = _is_cluster(client)
        self._decide = client.register_script(DECIDE_LUA)
        self._reward = client.register_script(REWARD_LUA)
        self._activate = client.register_script(ACTIVATE_LUA)
        self._seed = client.register_script(SEED_CATALOG_LUA)
        self._traffic_sum = client.register_script(TRAFFIC_SUM_LUA)
        self._snapshot_minute: dict[str, int] = {}  # title -> the last minute this worker asked for its snapshot

    # -- health
    def ping(self) -> bool:
        return bool(self.client.ping())

    def write_probe(self) -> None:
        """A small expiring write: raises what a decision's write would (OOM, READONLY, MISCONF...)."""
        self.client.set(self.keys.readiness_probe, "1", px=10_000)

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
        for t in titles:  # a salt for each, kept only by the titles this adds
            argv += [t.id, json.dumps(with_salt(t, None).to_json(private=True))]
        if not argv:
            return 0
        return int(self._seed(keys=[self.keys.catalog, self.keys.catalog_version], args=argv))

    def get_title(self, title_id: str) -> Title | None:
        raw = self.client.hget(self.keys.catalog, title_id)
        return None if raw is None else title_from_json(raw)

    def put_title(self, title: Title) -> bool:
        """Create or replace; returns True if it was new. A replaced title keeps its secret salt
        unless ``title`` brings one."""
        title = with_salt(title, None if title.salt else self.get_title(title.id))
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.catalog, title.id, json.dumps(title.to_json(private=True)))
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
        self, profile_id: str, titles: Sequence[str], model_titles: Sequence[str], sticky_titles: Sequence[str] = ()
    ) -> tuple[Profile | None, dict[str, ArmCounts], dict[str, int], dict[str, tuple[str, float, str]]]:
        """Round trip 1, plus the published VW model version of ``model_titles`` (0: none) and
        the profile's remembered first decisions of ``sticky_titles`` (artwork, propensity, event id).

        One HGET per VW title rides along in the same pipeline, so workers notice a new model
        without an extra round trip (the model itself is loaded off the request path); so does
        one GET per sticky title.
        """
        if not titles and not model_titles and not sticky_titles:  # counters cached: the profile alone, no pipeline
            return self.get_profile(profile_id), {}, {}, {}
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.profile(profile_id), "json")
        for t in titles:
            pipe.hgetall(self.keys.arms(t))
        for t in model_titles:
            pipe.hget(self.keys.model(t), "version")
        for t in sticky_titles:
            pipe.get(self.keys.sticky(t, profile_id))
        raw_profile, *rest = pipe.execute()
        raw_counts, raw_versions = rest[: len(titles)], rest[len(titles) : len(titles) + len(model_titles)]
        raw_sticky = rest[len(titles) + len(model_titles) :]
        counts = {t: ArmCounts.from_hash(c) for t, c in zip(titles, raw_counts, strict=True)}
        versions = {t: int(v or 0) for t, v in zip(model_titles, raw_versions, strict=True)}
        sticky = {}
        for t, raw in zip(sticky_titles, raw_sticky, strict=True):
            if raw is not None:
                art, prop, event_id = _text(raw).split("|")
                sticky[t] = (art, float(prop), event_id)
        return profile_from_json(raw_profile), counts, versions, sticky

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

        refresh_set = set(refresh)
        snapshot_due = {r.title for r in records if self._snapshot_minute.get(r.title) != bucket}
        timestamp_text = common[-1]
        contexts: dict[int, str] = {}  # id(context) -> its template: a batch's records share one
        calls = []
        for group in groups:
            # On a cluster every key of a call must share the title's slot: its arms key stands in
            # for the profile, which is not read there (the segment is given).
            keys: list[str] = [self.keys.arms(group[0].title) if self.cluster else profile_key]
            args: list = list(common)
            for rec in group:
                keys += self.keys.decision(rec.title, rec.token, bucket)
                context_part = contexts.get(id(rec.context))
                if context_part is None:
                    context_part = contexts[id(rec.context)] = _context_template(rec.context)
                title_part = _title_part(rec.title, rec.policy, rec.candidates)
                args += [
                    rec.policy,
                    _template(rec.event_id, timestamp_text, rec.profile, title_part, context_part),
                    # refresh + 2 * deferred + 4 * snapshot, then "|<half-life>" for decaying counters (DECIDE_LUA)
                    _FLAGS[(rec.title in refresh_set) + 2 * rec.deferred + 4 * (rec.title in snapshot_due)]
                    + (f"|{rec.half_life_s!r}" if rec.half_life_s else ""),
                    rec.draws_arg(),
                ]
                refresh_set.discard(rec.title)  # a title repeated in a batch: read it once
                snapshot_due.discard(rec.title)
            calls.append(("EVALSHA", self._decide.sha, len(keys), *keys, *args))
            for rec in group:
                if rec.sticky_s:  # a sticky title's first decision (the segment was given: one draw)
                    art, prop = rec.draws[0]
                    calls.append(("SET", self.keys.sticky(rec.title, rec.profile), f"{art}|{prop!r}|{rec.event_id}", "NX", "EX", rec.sticky_s))

        results = [r for r in self._run_scripts(calls) if isinstance(r, list)]  # not the SETs' replies
        for rec in records:  # (after the call: one that failed leaves the snapshot to the next)
            self._snapshot_minute[rec.title] = bucket
        decided = _text(results[0][0])
        wanted = set(refresh)  # (refresh_set was emptied above)
        refreshed_titles = [t for t in dict.fromkeys(r.title for r in records) if t in wanted] if wanted else []
        raw_counts = [c for result in results for c in result[1:]]
        counts = {}
        for title, flat in zip(refreshed_titles, raw_counts, strict=True):
            counts[title] = ArmCounts.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        return decided, counts

    def _run_scripts(self, commands: Sequence[tuple], client=None) -> list:
        """Send ``commands`` (each one command's arguments: ``EVALSHA sha numkeys *keys *args``,
        or ``WAIT``) in one round trip; loads the scripts once if Redis lost them (a restarted or
        flushed Redis: then none of them ran, so sending again is safe).

        One command (a single Redis: the whole batch) is a plain command, as cheap as redis-py
        gets; several (a cluster: one per title; a reward and its WAIT) go in a pipeline. Neither
        uses redis-py's Script objects, which ask SCRIPT EXISTS first (one more round trip per
        request), and a raw EVALSHA is routed by its first key on both clients (the cluster
        pipeline refuses evalsha). ``client``: another connection (a cluster node's, for WAIT).
        """
        client = client or self.client
        for attempt in (0, 1):
            try:
                if len(commands) == 1:
                    return [client.execute_command(*commands[0])]
                pipe = client.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                for script in (self._decide, self._reward, self._activate, self._seed, self._traffic_sum):
                    client.script_load(script.script)
        return []

    def record_reward(
        self, title: str, token: str, event_id: str, reward: float, now: float, signal: str = "click", learn: bool = True,
        half_life_s: float = 0.0, aggregation: str = "earliest",
    ) -> RewardOutcome:
        """The reward script; with ``wait_replicas``, then ``WAIT`` in the same round trip.

        ``signal`` counts once per decision; ``learn``: it is the title's reward signal.

        A reward (or a retry of it) that fewer replicas than asked confirmed in time comes back
        ``replicated=False``: it is on the primary, counted once. A retry WAITs again, and WAIT
        waits for the primary's replication offset as of the connection's last command (Redis
        records it after every command, writes or not), so it covers the first attempt's write
        whichever connection made it: the retry answers ``duplicate`` only once replicas have
        the reward, or ``recorded`` if a failover lost it.
        """
        keys = [self.keys.pending(title, token), self.keys.arms(title), self.keys.log(title)]
        args = [repr(float(reward)), event_id, repr(now), self.log_maxlen, signal, "1" if learn else "0",
                repr(half_life_s) if half_life_s else "", aggregation]
        if self.wait_replicas:
            result, replicas = self._reward_and_wait(keys, args)
        else:
            result, replicas = self._reward(keys=keys, args=args), 0
        status, artwork, policy = ([v.decode() if isinstance(v, bytes) else v for v in result] + [None, None])[:3]
        return RewardOutcome(status=status, artwork=artwork, policy=policy, replicated=replicas >= self.wait_replicas)

    def _reward_and_wait(self, keys: list[str], args: list) -> tuple[list, int]:
        commands = [("EVALSHA", self._reward.sha, len(keys), *keys, *args), ("WAIT", self.wait_replicas, self.wait_timeout_ms)]
        if not self.cluster:
            result, replicas = self._run_scripts(commands)
            return result, int(replicas)
        # WAIT answers for the node it is sent to, up to its connection's last command: it must
        # follow the script on the same connection to the title's primary (that node's client).
        node = self.client.get_node_from_key(keys[0])
        try:
            result, replicas = self._run_scripts(commands, self.client.get_redis_connection(node))
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.MovedError):
            # The node died or lost the slot (a failover): learn the new topology for the next call.
            self.client.nodes_manager.initialize()
            raise
        return result, int(replicas)

    def pending(self, title: str, token: str) -> PendingDecision | None:
        """The decision awaiting its reward, or None once its attribution window closed."""
        raw = self.client.get(self.keys.pending(title, token))
        return parse_pending(raw) if raw is not None else None

    def activate(self, title: str, token: str, now: float, half_life_s: float = 0.0) -> str:
        """Count and log a deferred decision (once): ``activated``, ``duplicate`` or ``unknown``."""
        arms, pending, log, traffic = self.keys.decision(title, token, int(now // TRAFFIC_BUCKET_S))
        args = [self.log_maxlen, TRAFFIC_RETENTION_S, repr(half_life_s) if half_life_s else ""]
        result = self._activate(keys=[pending, arms, log, traffic], args=args)
        return _text(result[0])

    # -- stats and logs
    def recent_traffic(self, titles: Sequence[str], minutes: int, now: float) -> dict[str, dict[str, int]]:
        """Per title, impressions per artwork in the last ``minutes`` minutes (the current,
        partial one included): from the traffic snapshots, never the log."""
        last = int(now // TRAFFIC_BUCKET_S)
        sums = self.traffic_sums({t: [range(last - minutes + 1, last + 1)] for t in titles}, now)
        return {t: points[0] for t, points in sums.items()}

    def traffic_sums(self, groups: Mapping[str, Sequence[range]], now: float) -> dict[str, list[dict[str, int]]]:
        """Per title, impressions per artwork over each range of minutes (minute = epoch s //
        TRAFFIC_BUCKET_S, none after ``now``'s): one script call per title (TRAFFIC_SUM_LUA)."""
        titles = [t for t, points in groups.items() if points]
        last = int(now // TRAFFIC_BUCKET_S)
        commands = []
        for t in titles:
            first = min(point.start for point in groups[t])
            keys = [self.keys.arms(t), *(self.keys.traffic(t, b) for b in range(first, last + 2))]
            offsets = [x for point in groups[t] for x in (point.start - first, point.stop - 1 - first)]
            commands.append(("EVALSHA", self._traffic_sum.sha, len(keys), *keys, *offsets))
        results = self._run_scripts(commands) if titles else []
        out: dict[str, list[dict[str, int]]] = {t: [] for t in groups}
        for t, points in zip(titles, results, strict=True):
            out[t] = [{_text(k): int(v) for k, v in zip(flat[::2], flat[1::2], strict=True)} for flat in points]
        return out

    def read_log(self, title: str, start: str = "-", count: int = 10_000) -> list[tuple[str, dict]]:
        """One page of a title's stream, oldest first: (entry id, decoded fields)."""
        entries = self.client.xrange(self.keys.log(title), min=start, max="+", count=count)
        return [((i.decode() if isinstance(i, bytes) else i), _decode_fields(f)) for i, f in entries]

    def trim_logs(self, older_than: float) -> None:
        """Drop log entries older than ``older_than`` (epoch s) from every title's log, deleted
        titles' included. Approximate (``~``): Redis drops whole stream nodes only, which is cheap."""
        min_id = f"{int(older_than * 1000)}-0"
        titles = self.logged_titles()
        pipe = self.client.pipeline(transaction=False)
        for t in titles:
            pipe.xtrim(self.keys.log(t), minid=min_id, approximate=True)
        pipe.execute()

    def reset_title_stats(self, title: str, now: float) -> None:
        """Forget what ``/stats`` shows of ``title``: its counters and its traffic history (recent
        shares). The catalog version is bumped so that workers drop their copies of the history."""
        last = int(now // TRAFFIC_BUCKET_S)
        buckets = range(last - TRAFFIC_RETENTION_S // TRAFFIC_BUCKET_S, last + 2)  # + the next, for clock skew
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.arms(title), *(self.keys.traffic(title, b) for b in buckets))
        # The minute's snapshot, taken again: none (workers took theirs) would hide its impressions.
        pipe.hset(self.keys.traffic(title, last), "|", 0)
        pipe.expire(self.keys.traffic(title, last), TRAFFIC_RETENTION_S)
        pipe.incr(self.keys.catalog_version)
        pipe.execute()


def _decode_fields(fields: dict) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()
    }


def _is_cluster(client) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
