"""The VW learner of every simulation and of replay's ``vw``: ``bandit.vw_policy``'s model on
``bandit.vw_features``' examples.

``VWLearner``: the model's pmf for an example, and learning from one served artwork with the
service's rule (cost of the reward, the propensity floored by ``learning_probability``);
``replay.vw_replay`` replays it on logs. ``VWOnline`` serves and learns online in ``replay.simulation.online.run_online``, one impression
at a time (no reward delay). An impression with a ``profile`` context is featurized as the
service does (``decision_context``, artwork tags included), so VW can learn profile x artwork
weights; without features (``contexts == ()``) every decision shares one cold-start context and
VW learns one value per artwork, as a context-free bandit would. It declares no winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bandit import vw_features
from bandit import vw_policy as vw_model

if TYPE_CHECKING:
    from replay.simulation.environments import Impressions


class VWLearner:
    """A VW model (new, or given) with the config whose ``min_learn_p`` it learns with."""

    def __init__(self, config: vw_model.VWConfig | None = None, model: vw_model.VWModel | None = None):
        self.config = config or vw_model.VWConfig()
        self.model = model or vw_model.VWModel.new(self.config)

    def pmf(self, example: vw_features.ADFExample) -> np.ndarray:
        return np.asarray(self.model.pmf(example.lines()), dtype=float)

    def learn(self, example: vw_features.ADFExample, slot: int, reward: float, propensity: float) -> None:
        p = vw_model.learning_probability(propensity, self.config.min_learn_p)
        self.model.learn(example.lines((int(slot), vw_model.cost_of(float(reward)), p)))


class VWOnline:
    def __init__(self, arms: Sequence[str], tags: dict[str, Sequence[str]] | None = None,
                 config: vw_model.VWConfig | None = None, model: vw_model.VWModel | None = None):
        self.name = "vw"
        self.arms = list(arms)
        self.tags = {a: list((tags or {}).get(a, ())) for a in arms}
        self.learner = VWLearner(config, model)
        self.cold = vw_features.to_example(vw_features.decision_context(None, {}, "new", self.tags), self.arms)
        self._example = self.cold  # the example of the decision being rewarded

    def steady(self, traffic: Impressions, start: int, stop: int) -> int:
        return 1

    def pmf(self, traffic: Impressions, start: int, stop: int) -> np.ndarray:
        self._example = self.cold
        if traffic.contexts:
            c = traffic.contexts[start]
            ctx = vw_features.decision_context(c["profile"], c.get("request", {}), c.get("segment", "new"), self.tags)
            self._example = vw_features.to_example(ctx, self.arms)
        return self.learner.pmf(self._example)[None, :]

    def learn(self, traffic, start, stop, action, reward, propensity) -> None:
        self.learner.learn(self._example, int(action[0]), float(reward[0]), float(propensity[0]))

    def decision(self) -> int | None:
        return None  # VW exposes no posterior
