"""Catalog and profile models: parsed and validated once, at the boundary (HTTP body or file)."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from bandit.segments import SEGMENTS
from service.errors import InvalidInput
from service.ids import check_id
from service.inputs import number

POLICIES: tuple[str, ...] = ("thompson", "vw", "ab", "fixed")
# How several reports of one signal of one decision combine (``REWARD_LUA``): the first one only,
# their sum (clipped to 1), or the largest (a click rewarded 0.3 upgraded to 1 by a later play).
REWARD_AGGREGATIONS: tuple[str, ...] = ("earliest", "sum", "max")
MAX_ARTWORKS = 32
_TAG = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# Reward signal names ("click", "play", ...): a Redis hash field part, so no "|".
SIGNAL = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_GUARDRAILS = 8
MAX_STICKY_S = 30 * 86_400


@dataclass(frozen=True)
class Artwork:
    id: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ABConfig:
    """Fixed split of policy ``ab``: each artwork's weight, and a salt when the admin chose one."""

    salt: str | None
    weights: tuple[float, ...]


@dataclass(frozen=True)
class Title:
    id: str
    artworks: tuple[Artwork, ...]
    default: str
    policy: str = "thompson"
    ab: ABConfig | None = None
    # Secret salt of the A/B hash unless ``ab.salt`` is given: random, set when the title is
    # first stored and kept across edits (see ``with_salt``). Never in public answers: with it
    # anyone could compute which arm a profile gets.
    salt: str = ""
    reward_aggregation: str = "earliest"
    # The signal the bandit learns from, and the signals only tracked (counted once each per
    # decision, shown by /stats; "play" after "click" gives the play-through guardrail).
    reward_signal: str = "click"
    guardrails: tuple[str, ...] = ("play",)
    # Counters that forget (discounted Thompson sampling): an observation counts half as much
    # after this many seconds. 0: never forget.
    half_life_s: float = 0.0
    # Sticky artwork: a profile keeps the artwork of its first decision for this many seconds
    # (repeats are logged with that decision's propensity and "repeat_of"). 0: off.
    sticky_s: int = 0

    @cached_property
    def artwork_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.artworks)

    def ab_split(self) -> ABConfig:
        """The configured split (equal by default), salted with ``ab.salt`` or the title's secret.

        (A title stored before titles had a secret falls back to its id.)
        """
        k = len(self.artworks)
        weights = self.ab.weights if self.ab is not None else tuple(1.0 / k for _ in range(k))
        chosen = self.ab.salt if self.ab is not None else None
        return ABConfig(salt=chosen or self.salt or self.id, weights=weights)

    def to_json(self, private: bool = False) -> dict:
        """The title as the API shows it; ``private``: with its salts, as it is stored."""
        body: dict = {
            "id": self.id,
            "artworks": [{"id": a.id, "tags": list(a.tags)} for a in self.artworks],
            "default": self.default,
            "policy": self.policy,
        }
        if self.reward_aggregation != "earliest":
            body["reward_aggregation"] = self.reward_aggregation
        if (self.reward_signal, self.guardrails) != ("click", ("play",)):
            body["reward_signal"] = self.reward_signal
            body["guardrails"] = list(self.guardrails)
        if self.half_life_s:
            body["half_life_s"] = self.half_life_s
        if self.sticky_s:
            body["sticky_s"] = self.sticky_s
        if self.ab is not None:
            body["ab"] = {"weights": dict(zip(self.artwork_ids, self.ab.weights, strict=True))}
            if private and self.ab.salt is not None:
                body["ab"]["salt"] = self.ab.salt
        if private and self.salt:
            body["salt"] = self.salt
        return body

    @property
    def signals(self) -> tuple[str, ...]:
        """Every signal a reward may name for this title, the bandit's first."""
        return (self.reward_signal, *(g for g in self.guardrails if g != self.reward_signal))


def new_salt() -> str:
    return secrets.token_hex(16)


def with_salt(title: Title, previous: Title | None) -> Title:
    """``title`` with a secret salt: its own, else the stored title's (an edit must not reshuffle
    the split), else a new random one."""
    if title.salt:
        return title
    return replace(title, salt=previous.salt if previous is not None and previous.salt else new_salt())


@dataclass(frozen=True)
class Profile:
    segment: str | None = None
    tenure_days: float | None = None
    weekly_hours: float | None = None
    affinities: dict[str, float] = field(default_factory=dict)

    @property
    def derived_segment(self) -> str:
        """Explicit segment, else a rule on tenure and viewing hours; unknown profiles are 'new'."""
        if self.segment is not None:
            return self.segment
        if self.tenure_days is not None and self.tenure_days < 30:
            return "new"
        if self.weekly_hours is None:
            return "new" if self.tenure_days is None else "regular"
        if self.weekly_hours < 2:
            return "low"
        if self.weekly_hours >= 10:
            return "power"
        return "regular"

    def to_json(self) -> dict:
        body: dict = {}
        for name in ("segment", "tenure_days", "weekly_hours"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.affinities:
            body["affinities"] = dict(self.affinities)
        return body


def _object(body: object, name: str) -> dict:
    if not isinstance(body, dict):
        raise InvalidInput(f"{name} must be a JSON object", field=name)
    return body


def parse_title(title_id: str, body: object) -> Title:
    """A title from the admin body (``PUT /catalog/<title>``) or a catalog file entry."""
    check_id(title_id, "title")
    body = _object(body, "body")
    unknown = set(body) - {"id", "artworks", "default", "policy", "ab", "salt", "reward_signal", "guardrails", "half_life_s", "sticky_s",
                           "reward_aggregation"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    if "id" in body and body["id"] != title_id:
        raise InvalidInput("id in the body must match the title in the path", field="id")
    raw_artworks = body.get("artworks")
    if not isinstance(raw_artworks, list) or not 1 <= len(raw_artworks) <= MAX_ARTWORKS:
        raise InvalidInput(f"artworks must be a list of 1 to {MAX_ARTWORKS} artworks", field="artworks")
    artworks = []
    for i, raw in enumerate(raw_artworks):
        raw = _object(raw, f"artworks[{i}]")
        if set(raw) - {"id", "tags"}:
            raise InvalidInput(f"artworks[{i}] has unknown fields; allowed: id, tags", field=f"artworks[{i}]")
        art_id = check_id(raw.get("id"), f"artworks[{i}].id")
        tags = raw.get("tags", [])
        if not isinstance(tags, list) or len(tags) > 32 or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in tags):
            raise InvalidInput(
                f"artworks[{i}].tags must be a list of at most 32 tags (1-64 letters, digits, '_-.:')",
                field=f"artworks[{i}].tags",
            )
        artworks.append(Artwork(art_id, tuple(tags)))
    ids = [a.id for a in artworks]
    if len(set(ids)) != len(ids):
        raise InvalidInput("artwork ids must be distinct", field="artworks")
    default = body.get("default", ids[0])
    if default not in ids:
        raise InvalidInput("default must be one of the title's artwork ids", field="default")
    policy = body.get("policy", "thompson")
    if policy not in POLICIES:
        raise InvalidInput(f"policy must be one of {', '.join(POLICIES)}", field="policy")
    ab = None
    if body.get("ab") is not None:
        raw_ab = _object(body["ab"], "ab")
        salt = raw_ab.get("salt")
        if salt is not None and (not isinstance(salt, str) or not 1 <= len(salt) <= 128):
            raise InvalidInput("ab.salt must be a string of 1-128 characters", field="ab.salt")
        weights = _object(raw_ab.get("weights", {a: 1.0 for a in ids}), "ab.weights")
        if set(weights) - set(ids):
            raise InvalidInput("ab.weights names an artwork the title does not have", field="ab.weights")
        values = tuple(number(weights.get(a, 0.0), f"ab.weights.{a}", 0.0, 1e9) for a in ids)
        if sum(values) <= 0:
            raise InvalidInput("ab.weights must have a positive sum", field="ab.weights")
        ab = ABConfig(salt=salt, weights=tuple(v / sum(values) for v in values))
    salt = body.get("salt")
    if salt is not None and (not isinstance(salt, str) or not 1 <= len(salt) <= 128):
        raise InvalidInput("salt must be a string of 1-128 characters", field="salt")
    reward_signal = body.get("reward_signal", "click")
    if not isinstance(reward_signal, str) or not SIGNAL.fullmatch(reward_signal):
        raise InvalidInput(f"reward_signal must match {SIGNAL.pattern}", field="reward_signal")
    guardrails = body.get("guardrails", ["play"])
    if (
        not isinstance(guardrails, list) or len(guardrails) > MAX_GUARDRAILS
        or not all(isinstance(g, str) and SIGNAL.fullmatch(g) for g in guardrails)
    ):
        raise InvalidInput(f"guardrails must be a list of at most {MAX_GUARDRAILS} signal names matching {SIGNAL.pattern}", field="guardrails")
    half_life = number(body.get("half_life_s", 0), "half_life_s", 0, 1e9)
    if 0 < half_life < 1:
        raise InvalidInput("half_life_s must be 0 (never forget) or at least 1 second", field="half_life_s")
    sticky = body.get("sticky_s", 0)
    if isinstance(sticky, bool) or not isinstance(sticky, int) or not 0 <= sticky <= MAX_STICKY_S:
        raise InvalidInput(f"sticky_s must be an integer from 0 (off) to {MAX_STICKY_S} seconds", field="sticky_s")
    aggregation = body.get("reward_aggregation", "earliest")
    if aggregation not in REWARD_AGGREGATIONS:
        raise InvalidInput(f"reward_aggregation must be one of {', '.join(REWARD_AGGREGATIONS)}", field="reward_aggregation")
    return Title(
        id=title_id, artworks=tuple(artworks), default=default, policy=policy, ab=ab, salt=salt or "",
        reward_signal=reward_signal, guardrails=tuple(dict.fromkeys(guardrails)), half_life_s=half_life, sticky_s=sticky,
        reward_aggregation=aggregation,
    )


def parse_profile(body: object) -> Profile:
    body = _object(body, "body")
    unknown = set(body) - {"segment", "tenure_days", "weekly_hours", "affinities"}
    if unknown:
        raise InvalidInput(
            f"unknown fields: {', '.join(sorted(unknown))} (allowed: segment, tenure_days, weekly_hours, affinities)",
            field=sorted(unknown)[0],
        )
    segment = body.get("segment")
    if segment is not None and segment not in SEGMENTS:
        raise InvalidInput(f"segment must be one of {', '.join(SEGMENTS)}", field="segment")
    tenure = body.get("tenure_days")
    hours = body.get("weekly_hours")
    affinities = _object(body.get("affinities", {}), "affinities")
    if len(affinities) > 64:
        raise InvalidInput("affinities may name at most 64 genres", field="affinities")
    parsed_aff = {}
    for genre, value in affinities.items():
        if not _TAG.fullmatch(genre):
            raise InvalidInput("affinity names must be 1-64 letters, digits, '_-.:'", field="affinities")
        parsed_aff[genre] = number(value, f"affinities.{genre}", 0.0, 1.0)
    return Profile(
        segment=segment,
        tenure_days=None if tenure is None else number(tenure, "tenure_days", 0, 1e6),
        weekly_hours=None if hours is None else number(hours, "weekly_hours", 0, 168),
        affinities=parsed_aff,
    )


def profile_from_json(text: str | bytes | None) -> Profile | None:
    """A stored profile (already validated when written); None when absent or unreadable."""
    if not text:
        return None
    try:
        return parse_profile(json.loads(text))
    except (ValueError, InvalidInput):
        return None


def title_from_json(text: str | bytes) -> Title:
    body = json.loads(text)
    return parse_title(body["id"], body)


def load_catalog_file(path: str | Path) -> list[Title]:
    """Titles of a catalog file ``{"titles": [ {id, artworks, default, policy}, ... ]}``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read catalog file {path}: {exc.strerror}", field="catalog") from None
    except ValueError as exc:
        raise InvalidInput(f"catalog file {path} is not valid JSON: {exc}", field="catalog") from None
    entries = data.get("titles") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(f"catalog file {path} must hold {{\"titles\": [...]}}", field="catalog")
    titles = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidInput(f"catalog file {path}: titles[{i}] must be an object", field="catalog")
        try:
            titles.append(parse_title(entry.get("id"), entry))
        except InvalidInput as exc:
            raise InvalidInput(f"catalog file {path}: titles[{i}]: {exc.message}", field="catalog") from None
    return titles
