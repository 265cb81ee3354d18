"""Features of one artwork decision, as a logged context and as a VW ``cb_explore_adf`` example.

A decision's *context* is a flat JSON object: it is what the service logs (the SPEC's
``context`` column) and all that the trainer and the offline tools need to rebuild the exact VW
example, so serving, online training and offline warm start share one featurization:

- request context: the request's extra query parameters as given (``device``, ``country``,
  ``hour``, ...), and ``segment``;
- profile features under ``p.`` (request parameter names cannot contain a dot, so they never
  collide): ``p.tenure_days``, ``p.weekly_hours``, ``p.aff.<genre>``, or ``p.cold: true`` when the
  profile is unknown (cold start is a feature, never an error);
- ``vw.tags``: each candidate artwork's tags; ``vw.v``: the featurization version.

VW namespaces (interactions key on the first letter): ``U`` profile, ``C`` request context,
``A`` artwork (one line per candidate: its id and its tags). ``-q UA -q CA`` (see
``bandit.vw_policy``) give profile x artwork and context x artwork weights, e.g.
"comedy affinity x comedic tag", which is where personalization comes from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from bandit.errors import BanditError

FEATURE_VERSION = 1
TAGS_KEY = "vw.tags"
VERSION_KEY = "vw.v"
_PROFILE = "p."
_UNSAFE = re.compile(r"[\s|:]")  # VW text separators


class FeatureError(BanditError):
    """A decision context cannot be turned into VW features; the message names the argument."""


@dataclass(frozen=True)
class ADFExample:
    """One decision as VW multiline text: the shared line, then one line per candidate."""

    shared: str
    actions: tuple[str, ...]

    def lines(self, label: tuple[int, float, float] | None = None) -> list[str]:
        """VW lines; ``label`` = (chosen index, cost, logged probability) marks the chosen action."""
        lines = [self.shared, *self.actions]
        if label is not None:
            index, cost, prob = int(label[0]), float(label[1]), float(label[2])  # numpy scalars repr as np.float64(...)
            if not 0 <= index < len(self.actions):
                raise FeatureError(f"label index must be in [0, {len(self.actions)}), got {index}")
            if not 0 < prob <= 1:
                raise FeatureError(f"label probability must be in (0, 1], got {prob}")
            lines[index + 1] = f"0:{cost!r}:{prob!r} {self.actions[index]}"
        return lines


@lru_cache(maxsize=65_536, typed=True)  # typed: 1, 1.0 and True are equal keys but distinct tokens
def _token(text: object) -> str:
    # Cached: ids, tags and context values repeat endlessly; the trainer featurizes 10k+ events/s.
    return _UNSAFE.sub("_", str(text))[:64] or "_"


@lru_cache(maxsize=65_536)
def _action_line(artwork: str, tags: tuple[str, ...]) -> str:
    return "|A " + " ".join([f"art={_token(artwork)}", *(f"tag={_token(t)}" for t in tags)])


# Featurization caches. The trainer featurizes every logged decision (its budget is VW's own
# learning speed, ~10 µs an example) and every request featurizes once, but the inputs repeat:
# a title's candidates and tags are the same for every decision until its catalog changes, and a
# profile's features and a device/country/hour combination recur across its decisions. The
# caches are plain dicts (get/set are atomic under the GIL: web threads share them safely),
# emptied when full rather than LRU-ordered (bookkeeping would cost more than a rebuild).
# Sizes: a profile entry costs ~600 bytes (key and line), so 8,192 of them ~5 MB per process
# (every web worker has its own); request contexts and titles are far fewer.
_CACHE_MAX = 8_192
# tuple(candidates) -> (tags as given, action lines): checked against the tags on every hit.
_ACTIONS: dict[tuple, tuple[Mapping, tuple[str, ...]]] = {}
# the namespaces' items (see ``_shared_line``) -> namespace text
_PROFILE_NS: dict[tuple, str] = {}
_CONTEXT_NS: dict[tuple, str] = {}


def decision_context(
    profile: Mapping | None,
    request: Mapping[str, str],
    segment: str,
    artwork_tags: Mapping[str, Sequence[str]],
) -> dict:
    """The logged context of a decision.

    profile: ``{"tenure_days", "weekly_hours", "affinities"}`` (any may be missing) or None.
    request: the request's context parameters; artwork_tags: candidate id -> tags, in order.
    """
    if not isinstance(request, Mapping):
        raise FeatureError("request must be a mapping of context parameters")
    if not isinstance(artwork_tags, Mapping) or not artwork_tags:
        raise FeatureError("artwork_tags must map at least one candidate artwork to its tags")
    ctx: dict = {k: v for k, v in request.items() if "." not in k}
    ctx["segment"] = segment
    if profile is None:
        ctx["p.cold"] = True
    else:
        for name in ("tenure_days", "weekly_hours"):
            value = profile.get(name)
            if value is not None:
                ctx[_PROFILE + name] = float(value)
        for genre, value in sorted((profile.get("affinities") or {}).items()):
            ctx[f"{_PROFILE}aff.{genre}"] = float(value)
    ctx[TAGS_KEY] = {a: list(tags) for a, tags in artwork_tags.items()}
    ctx[VERSION_KEY] = FEATURE_VERSION
    return ctx


def has_features(context: object) -> bool:
    """Whether a logged context carries this featurization (decisions of policy ``vw`` do)."""
    return isinstance(context, Mapping) and context.get(VERSION_KEY) == FEATURE_VERSION


def _profile_namespace(segment: object, items: Sequence[tuple[str, object]]) -> str:
    parts = [f"seg={_token(segment)}"]
    features = []
    for key, value in items:  # the "p." items, in order
        if key == "p.cold":
            if value:
                parts.append("cold")
            continue
        name = key[2:]
        x = float(value)
        if name == "tenure_days" or name == "weekly_hours":
            # Heavy-tailed counts: log scale keeps one weight meaningful from new to veteran.
            x = math.log1p(max(x, 0.0))
        if math.isfinite(x):
            features.append(f"{_token(name)}:{x:.4g}")
    return "|U " + " ".join(parts + features)


def _context_namespace(items: Sequence[tuple[str, object, type]]) -> str:
    parts = []
    for key, value, _type in items:  # the undotted items but segment, in order
        if isinstance(value, dict | list):
            continue
        if key == "hour" and str(value).isdigit():
            # Dayparts generalize across neighbouring hours better than 24 one-hot hours alone.
            parts.append(f"daypart={('night', 'morning', 'afternoon', 'evening')[int(value) % 24 // 6]}")
        parts.append(f"{_token(key)}={_token(value)}")
    return "|C " + " ".join(parts) if parts else "|C"


def to_example(context: Mapping, candidates: Sequence[str]) -> ADFExample:
    """The VW example of a decision among ``candidates`` (in order), from its logged context."""
    if not has_features(context):
        raise FeatureError(f"context must be a decision context of feature version {FEATURE_VERSION}")
    if not candidates:
        raise FeatureError("candidates must name at least one artwork")
    return ADFExample(_shared_line(context), _action_lines(context.get(TAGS_KEY) or {}, candidates))


def _shared_line(context: Mapping) -> str:
    # One pass splits the items into the two namespaces' inputs, each the key of its own cache:
    # a profile's features recur across its decisions, device/country/hour combinations recur
    # across everybody's (caching whole lines would rarely hit: their product hardly repeats).
    # Profile values only matter through float() and truthiness, which equal values share (1,
    # 1.0, True); request values become text, so their types are part of the key.
    profile: list = []
    request: list = []
    for item in context.items():
        key = item[0]
        if key[:2] == "p.":
            profile.append(item)
        elif "." not in key and key != "segment":
            request.append((key, item[1], item[1].__class__))
    segment = context.get("segment", "new")
    user = _cached(_PROFILE_NS, (segment, segment.__class__, *profile), lambda: _profile_namespace(segment, profile))
    return f"shared {user} {_cached(_CONTEXT_NS, tuple(request), lambda: _context_namespace(request))}"


def _cached(cache: dict[tuple, str], key: tuple, build: Callable[[], str]) -> str:
    try:
        value = cache.get(key)
    except TypeError:  # an unhashable value (a list, say): built every time
        return build()
    if value is None:
        value = build()
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value
    return value


def _action_lines(tags: Mapping, candidates: Sequence[str]) -> tuple[str, ...]:
    try:
        key = tuple(candidates)
        hit = _ACTIONS.get(key)
    except TypeError:
        key, hit = None, None
    # Equal tags (same ids, same tag lists) give the same lines. The lists are compared as
    # given, so a JSON-decoded context (lists) and a catalog's (tuples) do not share an entry.
    if hit is not None and hit[0] == tags:
        return hit[1]
    actions = tuple(_action_line(a, tuple(tags.get(a, ()))) for a in candidates)
    if key is not None:
        if len(_ACTIONS) >= _CACHE_MAX:
            _ACTIONS.clear()
        # A snapshot of the tags: the caller's mapping may change after it is cached.
        _ACTIONS[key] = ({a: list(t) if isinstance(t, list) else t for a, t in tags.items()}, actions)
    return actions


def log_context(context: Mapping | None, segment: str | None = None) -> dict:
    """The featurized context of any logged decision.

    A ``vw`` decision's context is returned as logged. Other decisions (policies that log only
    the request context and segment) get the same layout without profile features or tags, so
    offline training can learn from them too (profile and tag weights then start at zero).
    """
    if has_features(context):
        return dict(context)  # type: ignore[arg-type]
    ctx = {k: v for k, v in (context or {}).items() if isinstance(k, str) and "." not in k}
    if segment is not None or "segment" not in ctx:
        ctx["segment"] = segment or "new"
    ctx[VERSION_KEY] = FEATURE_VERSION
    return ctx


def logged_example(context: Mapping | None, segment: str | None, candidates: Sequence[str]) -> ADFExample:
    """The VW example of a logged decision: the one featurization the trainer, ``train-vw`` and
    replay all use (``log_context`` then ``to_example``; a ``vw`` decision's context as logged)."""
    return to_example(log_context(context, segment), candidates)
