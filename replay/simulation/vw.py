"""The VW learner of every simulation: ``bandit.vw_policy``'s model on ``bandit.vw_features``' examples.

``VWOnline`` serves and learns online in ``replay.simulation.online.run_online``, one impression
at a time (no reward delay). An impression with a ``profile`` context is featurized as the
service does (``decision_context``, artwork tags included), so VW can learn profile x artwork
weights; without features (``contexts == ()``) every decision shares one cold-start context and
VW learns one value per artwork, as a context-free bandit would. It learns with
``learning_probability`` (the service's floor on the propensity), and declares no winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bandit import vw_features
from bandit import vw_policy as vw_model

if TYPE_CHECKING:
    from replay.simulation.environments import Impressions


class VWOnline:
    def __init__(self, arms: Sequence[str], tags: dict[str, Sequence[str]] | None = None,
                 config: vw_model.VWConfig | None = None, model: vw_model.VWModel | None = None):
        self.name = "vw"
        self.arms = list(arms)
        self.tags = {a: list((tags or {}).get(a, ())) for a in arms}
        self.config = config or vw_model.VWConfig()
        self.model = model or vw_model.VWModel.new(self.config)
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
        return np.asarray(self.model.pmf(self._example.lines()), dtype=float)[None, :]

    def learn(self, traffic, start, stop, action, reward, propensity) -> None:
        p = vw_model.learning_probability(float(propensity[0]), self.config.min_learn_p)
        self.model.learn(self._example.lines((int(action[0]), vw_model.cost_of(float(reward[0])), p)))

    def decision(self) -> int | None:
        return None  # VW exposes no posterior
