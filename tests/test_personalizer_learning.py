"""Learning through the new SDK: two contexts preferring different actions, real server, real
Redis, the trainer running with Personalizer's default VW arguments and exploration."""

from __future__ import annotations

import threading
import time

import numpy as np
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.core.credentials import AzureKeyCredential

from service.config import load_settings
from service.trainer import Trainer
from tests.personalizer_server import API_KEY, serve

ACTIONS = [{"id": f"article-{k}", "features": [{"topic": k}]} for k in ("news", "sports", "culture")]
BEST = {"morning": "article-news", "evening": "article-culture"}  # click rate 0.9, others 0.1


def click_rate(context: str, action: str) -> float:
    return 0.9 if BEST[context] == action else 0.1


def test_learns_a_context_dependent_preference_to_80_percent_of_the_oracle(make_app, key_prefix):
    app = make_app(personalizer_api_key=API_KEY, personalizer_refresh_s=0.2)
    settings = load_settings({}, redis_url=app.config["SETTINGS"].redis_url, key_prefix=key_prefix,
                             trainer_grace_s=0.5, trainer_poll_s=0.2)
    stop = threading.Event()
    rng = np.random.default_rng(2026)
    with serve(app) as url:
        cred = AzureKeyCredential(API_KEY)
        admin = PersonalizerAdministrationClient(url, cred)
        client = PersonalizerClient(url, cred)
        config = admin.update_service_configuration(
            {**admin.get_service_configuration(), "rewardWaitTime": "PT5S", "modelExportFrequency": "PT5S"})
        assert config["rewardWaitTime"] == "PT5S"
        trainer = Trainer(settings, app.extensions["personalizer"].store.client)
        thread = threading.Thread(target=trainer.run, args=(stop,), daemon=True)
        thread.start()
        try:
            n, seconds = 3_000, 24.0  # paced: models come every 5 s, after a 5 s reward wait
            start = time.monotonic()
            expected = []
            for i in range(n):
                lag = start + i * seconds / n - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
                context = "morning" if rng.random() < 0.5 else "evening"
                answer = client.rank({"contextFeatures": [{"time": {"of_day": context}}], "actions": ACTIONS})
                p = click_rate(context, answer["rewardActionId"])
                expected.append(p)
                if rng.random() < p:  # no reward call otherwise: defaultReward (0) applies
                    client.reward(answer["eventId"], {"value": 1.0})
        finally:
            stop.set()
            thread.join(30)
        last = np.asarray(expected[-1_000:])
        ratio = last.sum() / (0.9 * last.size)
        print(f"learning: last 1,000 ranks reach {ratio:.1%} of the oracle's expected reward "
              f"(first 1,000: {np.mean(expected[:1_000]) / 0.9:.1%}); model version {app.extensions['personalizer'].store.model_version()}")
        assert ratio >= 0.8
        assert admin.get_model_properties()["lastModifiedTime"]
