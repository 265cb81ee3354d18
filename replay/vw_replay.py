"""Policy ``vw`` for ``replay evaluate`` (``bandit.vw_policy`` is the model itself): VW ``cb_explore_adf`` learning as it replays, or a saved model.

- ``vw``: a new model (``VW_EXPLORATION``... defaults, see ``bandit.vw_policy``) that replays the
  log in order (Li et al. 2011, rejection bound 1/min propensity as ``ThompsonPolicy``) and
  learns from the rows it accepts, with its own probability of the logged artwork (the learner
  of ``replay.simulation.vw``, which simulations run online).
- ``vw:MODEL``: a model saved by ``replay train-vw`` (or exported from the service), evaluated as
  a fixed policy: its pmf for every row, no learning.

Features: each row's example is ``bandit.vw_features.logged_example`` of its logged context,
segment and candidates (in logged order), the function the trainer and ``train-vw`` use, so a
model is evaluated on the features it was trained on (tags, device, country, profile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bandit.vw_features import FeatureError, logged_example
from bandit.vw_policy import VWConfig, VWModel
from replay.logs import UNKNOWN_SEGMENT, LogArrays
from replay.policy_base import PolicyError, PolicyOptions, PolicyOutput
from replay.simulation.vw import VWLearner


def _examples(logs: LogArrays):
    """Per row: the candidate slots (in logged order) and the VW example over them."""
    contexts = logs.contexts if logs.contexts is not None else [None] * logs.n
    for i in range(logs.n):
        arms = logs.arms[logs.title[i]]
        slots = logs.combo_slots[logs.combo[i]]
        segment = logs.segments[logs.segment[i]] if logs.has_segment else None
        yield np.asarray(slots), logged_example(contexts[i], None if segment == UNKNOWN_SEGMENT else segment,
                                                [arms[j] for j in slots])


@dataclass(frozen=True)
class VWReplayPolicy:
    """See the module doc; ``model_bytes`` None: learn while replaying."""

    config: VWConfig = VWConfig()
    model_bytes: bytes | None = None
    name: str = "vw"

    def evaluate(self, logs: LogArrays, rng: np.random.Generator,
                 on_progress: Callable[[int], None] | None = None) -> PolicyOutput:
        learning = self.model_bytes is None
        learner = VWLearner(self.config, None if learning else VWModel.from_bytes(self.model_bytes))
        pi = np.zeros((logs.n, logs.k))
        accepted = np.zeros(logs.n, dtype=bool) if learning else None
        u = rng.random(logs.n)
        ratio_scale = logs.propensity.min() / logs.propensity
        try:
            for i, (slots, example) in enumerate(_examples(logs)):
                pmf = learner.pmf(example)
                pi[i, slots] = pmf
                if learning:
                    hit = np.flatnonzero(slots == logs.action[i])
                    if hit.size and u[i] < pmf[hit[0]] * ratio_scale[i]:
                        accepted[i] = True  # type: ignore[index]
                        learner.learn(example, int(hit[0]), logs.reward[i], pmf[hit[0]])
                if on_progress is not None and (i + 1) % 4096 == 0:
                    on_progress(i + 1)
        except FeatureError as exc:
            raise PolicyError(f"policy {self.name}: {exc}") from None
        finally:
            learner.model.close()
        return PolicyOutput(pi, pi[np.arange(logs.n), logs.action], accepted=accepted)


def make_policy(arg: str | None, options: PolicyOptions) -> VWReplayPolicy:
    """``vw`` (learn while replaying) or ``vw:MODEL_PATH`` (a saved model, fixed)."""
    if not arg:
        return VWReplayPolicy()
    try:
        with open(arg, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PolicyError(f"policy vw:{arg}: cannot read the model: {exc.strerror}") from None
    try:
        VWModel.from_bytes(data).close()  # fail here, with the path, rather than mid-evaluation
    except Exception as exc:  # noqa: BLE001 - VW raises plain RuntimeError/ValueError on bad files
        raise PolicyError(f"policy vw:{arg}: not a VW model ({exc})") from None
    return VWReplayPolicy(model_bytes=data, name=f"vw:{arg}")
