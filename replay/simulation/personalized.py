"""A simulated personalized catalog: comedy fans and action fans prefer different artworks.

One title with five tagged artworks. Each profile is a comedy fan or an action fan (with genre
affinities that say so, plus noise and an unrelated genre); comedy fans click the comedic
artwork 30% of the time and the action still 15%, action fans the reverse, and the other three
artworks 10% for everybody. Request context (device, country, hour) is noise. The oracle
knows each profile's group and always shows its best artwork: CTR 0.30.

``impressions`` turns profiles and traffic into ``Impressions`` for ``run_online``: policies run
on them see the same profiles, contexts and per-event uniform draws deciding clicks, so their
CTRs compare like for like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay.simulation import SimulationError

if TYPE_CHECKING:
    from replay.simulation.environments import Impressions

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


def impressions(profiles: tuple[SimProfile, ...], traffic: Traffic, who: np.ndarray | None = None) -> Impressions:
    """The traffic as ``Impressions``: viewer ``who[t]`` (default ``traffic.profile``), the
    request of event t, its click draw ``traffic.u[t]``; contexts as the service featurizes them."""
    from replay.simulation.environments import Impressions

    who = traffic.profile if who is None else who
    groups = np.array([p.group for p in profiles])
    segments = [segment_of(p.features) for p in profiles]
    contexts = tuple(
        {"profile": profiles[i].features, "request": request, "segment": segments[i]}
        for i, request in zip(who.tolist(), traffic.requests, strict=True)
    )
    ctr = CTR[groups[who]]
    return Impressions.draw(None, ctr, profile=who, contexts=contexts, u=traffic.u)
