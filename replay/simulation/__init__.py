"""The simulation core: simulated environments, one online runner, the learners it plays.

Modules (one idea each):

- ``environments``: the ``Environment`` protocol, ``Impressions`` (one run's traffic with the
  truth) and every scenario; add a scenario there (and to its ``SCENARIOS`` for ``compare``).
- ``personalized``: the comedy/action catalog, its profiles and request traffic.
- ``online``: ``run_online``, the one loop that plays a policy on impressions (the policy
  chooses with its exact propensity, the environment rewards, the policy learns when its
  distribution is due a refresh), the ``OnlinePolicy`` protocol and fixed policies. The one
  refresh default is ``replay.policy_base.REFRESH``.
- ``thompson``: the Thompson learner (``bandit.thompson``'s exact propensities, refreshed every
  ``refresh`` impressions of a title) and its online policy; replay's ``thompson`` uses it too.
- ``vw``: the VW learner (``bandit.vw_policy`` on ``bandit.vw_features``), learning online.
- ``simulated_logs``: ``simulate_logs``, logs in the SPEC schema from a logging policy.
- ``comparison``: ``compare_policies``, an A/B test vs Thompson sampling vs VW on shared traffic.
- ``product``: the product features' simulations (clickbait signals, drift with forgetting
  counters, IPS on sticky logs) on the environments above, ``run_online`` and the Thompson learner.

Names most callers need are importable from here (``from replay.simulation import simulate_logs``);
they are loaded on first use so that ``replay --help`` imports no pandas or scipy.
"""

from __future__ import annotations

import importlib

from replay.errors import ReplayError


class SimulationError(ReplayError):
    """A simulation argument is malformed; the message names it."""


_EXPORTS = {
    "CatalogEnvironment": "environments", "Environment": "environments", "Impressions": "environments",
    "BernoulliArms": "environments", "PersonalizedArms": "environments", "SCENARIOS": "environments",
    "ClickbaitArms": "environments", "DriftArms": "environments", "StickyVisits": "environments",
    "PRODUCT_SCENARIOS": "environments",
    "two_artworks": "environments", "segmented_titles": "environments",
    "run_online": "online", "OnlineRun": "online", "FixedPolicy": "online",
    "simulate_logs": "simulated_logs", "to_logs": "simulated_logs", "table_array": "simulated_logs",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"replay.simulation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'replay.simulation' has no attribute {name!r}")
