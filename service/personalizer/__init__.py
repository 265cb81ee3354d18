"""Azure Personalizer-compatible surface: rank, rewards, activation, configuration, model, logs.

``install(app, settings, client)`` (called by the app factory) adds the routes and the worker's
ranking engine; ``service.personalizer.trainer`` learns the logged events."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from service.keys import Keys
from service.personalizer import api
from service.personalizer.ranker import PersonalizerEngine
from service.personalizer.store import PersonalizerStore


def install(app, settings, client) -> None:
    store = PersonalizerStore(client, Keys(settings.key_prefix), settings.personalizer_log_maxlen)
    engine = PersonalizerEngine(store, np.random.default_rng(settings.rng_seed), settings.personalizer_refresh_s)
    metrics = app.extensions["metrics"]
    engine.on_fallback = lambda: metrics.observe_fallback("(personalizer)", "store_unavailable")
    app.extensions["personalizer"] = SimpleNamespace(store=store, engine=engine)
    api.register(app)
