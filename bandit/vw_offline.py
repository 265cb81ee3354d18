"""Learning a VW model from logged decisions (offline warm start and replay). Pure.

Each logged decision is learned once, in the order given, as the trainer learns it online:
cost = -reward, with the logged propensity, features from the logged context
(``bandit.vw_features.log_context``: decisions of other policies count too, with fewer features).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bandit.vw_features import FeatureError, has_features, logged_example
from bandit.vw_policy import VWModel, cost_of, learning_probability


@dataclass(frozen=True)
class LoggedDecision:
    context: Mapping | None
    segment: str | None
    candidates: Sequence[str]
    artwork: str
    propensity: float
    reward: float


@dataclass(frozen=True)
class OfflineReport:
    learned: int
    with_features: int  # learned rows that carried the full VW featurization (policy vw)
    skipped: int
    first_skip: str | None  # why the first skipped row was skipped
    reward_sum: float


def learn_logged(model: VWModel, decisions: Iterable[LoggedDecision], min_learn_p: float = 0.2) -> OfflineReport:
    """Learn every usable decision; a row whose artwork is not among its candidates is skipped."""
    learned = full = skipped = 0
    first_skip: str | None = None
    reward_sum = 0.0
    for i, d in enumerate(decisions):
        try:
            if d.artwork not in d.candidates:
                raise FeatureError(f"artwork {d.artwork!r} is not among the candidates")
            example = logged_example(d.context, d.segment, list(d.candidates))
            model.learn(example.lines((list(d.candidates).index(d.artwork), cost_of(d.reward),
                                      learning_probability(d.propensity, min_learn_p))))
        except FeatureError as exc:
            skipped += 1
            first_skip = first_skip or f"row {i + 1}: {exc}"
            continue
        learned += 1
        full += has_features(d.context)
        reward_sum += float(d.reward)
    return OfflineReport(learned, full, skipped, first_skip, reward_sum)
