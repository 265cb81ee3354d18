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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

FEATURE_VERSION = 1
TAGS_KEY = "vw.tags"
VERSION_KEY = "vw.v"
_PROFILE = "p."
_UNSAFE = re.compile(r"[\s|:]")  # VW text separators


class FeatureError(ValueError):
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


@lru_cache(maxsize=65_536)
def _token(text: object) -> str:
    # Cached: ids, tags and context values repeat endlessly; the trainer featurizes 10k+ events/s.
    return _UNSAFE.sub("_", str(text))[:64] or "_"


@lru_cache(maxsize=65_536)
def _action_line(artwork: str, tags: tuple[str, ...]) -> str:
    return "|A " + " ".join([f"art={_token(artwork)}", *(f"tag={_token(t)}" for t in tags)])


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


def _profile_namespace(context: Mapping) -> str:
    parts = [f"seg={_token(context.get('segment', 'new'))}"]
    if context.get("p.cold"):
        parts.append("cold")
    for key, value in context.items():
        if key[:2] != _PROFILE or key == "p.cold":
            continue
        name = key[2:]
        x = float(value)
        if name == "tenure_days" or name == "weekly_hours":
            # Heavy-tailed counts: log scale keeps one weight meaningful from new to veteran.
            x = math.log1p(max(x, 0.0))
        if math.isfinite(x):
            parts.append(f"{_token(name)}:{x:.4g}")
    return "|U " + " ".join(parts)


def _context_namespace(context: Mapping) -> str:
    parts = []
    for key, value in context.items():
        if "." in key or key == "segment" or isinstance(value, dict | list):
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
    tags = context.get(TAGS_KEY) or {}
    shared = f"shared {_profile_namespace(context)} {_context_namespace(context)}"
    actions = tuple(_action_line(a, tuple(tags.get(a, ()))) for a in candidates)
    return ADFExample(shared, actions)


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
