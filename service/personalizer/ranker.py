"""A web worker's Personalizer ranking: configuration and model copies, exploration, the rank script.

The worker keeps a copy of the service configuration and of the published model, checked every
``PERSONALIZER_REFRESH_S`` (one pipelined read); a rank is then ONE Redis round trip (the rank
script). Serving follows the learning mode:

- ``Online``: epsilon-greedy over the non-excluded actions with epsilon =
  ``explorationPercentage``: the model's greedy action (VW's highest-probability action under
  the policy's arguments) has 1 - eps + eps/K, every other eps/K; uniform until the first model;
- ``Apprentice`` and ``LoggingOnly``: the baseline (first non-excluded action, or the slot's
  ``baselineAction``) with probability 1.

Multi-slot: slots are filled in order, each from the actions that are neither excluded for it
nor placed in an earlier slot, with the slot's features as one more context object.
When Redis does not answer, rank still answers 201: the baseline, with uniform probabilities
over the non-excluded actions (nothing is logged, so no reward can count for it).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import orjson
import vowpalwabbit

from bandit.vw_policy import VWModel
from service.personalizer.configuration import DEFAULT_ARGUMENTS, ServiceConfiguration
from service.personalizer.errors import BadRequest
from service.personalizer.features import Action, action_line, shared_line, slot_object
from service.personalizer.parsing import RankRequest
from service.personalizer.store import PersonalizerStore, Snapshot
from service.redis_conn import STORE_ERRORS

log = logging.getLogger(__name__)


def new_model(arguments: str) -> VWModel:
    return VWModel(vowpalwabbit.Workspace(f"{arguments} --quiet"))


class PersonalizerEngine:
    def __init__(self, store: PersonalizerStore, rng: np.random.Generator, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.rng = rng
        self.refresh_s = refresh_s
        self.clock = clock
        self.snapshot = Snapshot(ServiceConfiguration(), DEFAULT_ARGUMENTS, -1, 0)
        self.model: VWModel | None = None
        self.model_version = 0
        self._checked_at = float("-inf")
        self.on_fallback: Callable[[], None] = lambda: None

    # state
    def refresh(self, force: bool = False) -> Snapshot:
        """The configuration (and model) this worker ranks with; re-read when due. Raises store errors."""
        now = self.clock()
        if force or now - self._checked_at >= self.refresh_s:
            snap = self.store.snapshot()
            if snap.model_version != self.model_version:
                stored = self.store.load_model()
                # Swapped by assignment, never closed here: a request thread may still be predicting
                # with the old one (VW's workspace finishes itself when the last reference goes).
                self.model = VWModel.from_bytes(stored.data) if stored.data else None
                self.model_version = stored.version
            self.snapshot = snap
            self._checked_at = now
        return self.snapshot

    def _state(self) -> Snapshot:
        try:
            return self.refresh()
        except STORE_ERRORS as exc:  # rank on what this worker last saw (its rank script will tell)
            log.warning("personalizer: configuration refresh failed: %s", exc)
            self._checked_at = self.clock()
            return self.snapshot

    # ranking
    def _pmf(self, config: ServiceConfiguration, shared: str, candidates: Sequence[Action], baseline: int) -> np.ndarray:
        k = len(candidates)
        if config.learning_mode != "Online":
            pmf = np.zeros(k)
            pmf[baseline] = 1.0
            return pmf
        model = self.model
        if model is None:
            return np.full(k, 1.0 / k)
        scores = model.pmf([shared, *(action_line(a) for a in candidates)])
        eps = config.exploration
        pmf = np.full(k, eps / k)
        pmf[int(np.argmax(scores))] += 1.0 - eps
        return pmf

    def _draw(self, pmf: np.ndarray) -> int:
        index = int(np.searchsorted(np.cumsum(pmf), self.rng.random() * pmf.sum(), side="right"))
        index = min(index, len(pmf) - 1)
        while pmf[index] <= 0:  # float edge: never a zero-probability action
            index -= 1
        return index

    def rank(self, request: RankRequest) -> dict:
        snap = self._state()
        config = snap.config
        excluded = set(request.excluded)
        candidates = [a for a in request.actions if a.id not in excluded]
        event_id = request.event_id or uuid.uuid4().hex
        shared = shared_line(request.context)
        pmf = self._pmf(config, shared, candidates, 0)
        chosen = self._draw(pmf)
        order = [chosen, *sorted((i for i in range(len(candidates)) if i != chosen), key=lambda i: -pmf[i])]
        ranking = [{"id": candidates[i].id, "probability": float(pmf[i])} for i in order]
        ranking += [{"id": a.id, "probability": 0.0} for a in request.actions if a.id in excluded]
        response = {"ranking": ranking, "eventId": event_id, "rewardActionId": candidates[chosen].id}
        record = {
            "eventId": event_id, "wait": config.reward_wait_s, "mode": config.learning_mode,
            "deferred": request.defer, "model": self.model_version, "context": list(request.context),
            "actions": [{"id": a.id, "features": list(a.features)} for a in candidates],
            "excluded": [a.id for a in request.actions if a.id in excluded],
            "a": order, "p": [float(pmf[i]) for i in order],
        }
        return self._record(event_id, response, record, config, lambda: self._fallback_single(request, event_id))

    def rank_multislot(self, request: RankRequest) -> dict:
        snap = self._state()
        config = snap.config
        event_id = request.event_id or uuid.uuid4().hex
        excluded = set(request.excluded)
        index_of = {a.id: i for i, a in enumerate(request.actions)}
        used: set[str] = set()
        slots_out, slots_rec = [], []
        for slot in request.slots:
            cands = [i for i, a in enumerate(request.actions)
                     if a.id not in excluded and a.id not in slot.excluded and a.id not in used]
            if not cands:
                raise BadRequest(f"slot {slot.id!r} has no action left (excluded or placed in earlier slots)",
                                 target="slots")
            base = index_of.get(slot.baseline) if slot.baseline is not None else None
            baseline = cands.index(base) if base in cands else 0
            shared = shared_line(request.context, slot_object(slot.id, slot.features))
            pmf = self._pmf(config, shared, [request.actions[i] for i in cands], baseline)
            chosen = self._draw(pmf)
            action = request.actions[cands[chosen]]
            used.add(action.id)
            slots_out.append({"id": slot.id, "rewardActionId": action.id})
            slots_rec.append({"id": slot.id, "features": list(slot.features), "candidates": cands,
                              "chosen": chosen, "p": [float(x) for x in pmf], "baseline": baseline})
        response = {"eventId": event_id, "slots": slots_out}
        record = {
            "eventId": event_id, "wait": config.reward_wait_s, "mode": config.learning_mode,
            "deferred": request.defer, "model": self.model_version, "context": list(request.context),
            "actions": [{"id": a.id, "features": list(a.features)} for a in request.actions],
            "excluded": sorted(excluded), "slots": slots_rec,
        }
        return self._record(event_id, response, record, config, lambda: self._fallback_multi(request, event_id))

    def _record(self, event_id: str, response: dict, record: dict, config: ServiceConfiguration, fallback) -> dict:
        try:
            prior = self.store.record_rank(event_id, orjson.dumps(response).decode(), orjson.dumps(record).decode(),
                                           config.reward_wait_s)
        except STORE_ERRORS as exc:
            log.warning("personalizer: rank answered without the store: %s", exc)
            self.on_fallback()
            return fallback()
        return response if prior is None else orjson.loads(prior)

    @staticmethod
    def _fallback_single(request: RankRequest, event_id: str) -> dict:
        excluded = set(request.excluded)
        candidates = [a for a in request.actions if a.id not in excluded]
        p = 1.0 / len(candidates)
        ranking = [{"id": a.id, "probability": p} for a in candidates]
        ranking += [{"id": a.id, "probability": 0.0} for a in request.actions if a.id in excluded]
        return {"ranking": ranking, "eventId": event_id, "rewardActionId": candidates[0].id}

    @staticmethod
    def _fallback_multi(request: RankRequest, event_id: str) -> dict:
        excluded, used, slots = set(request.excluded), set(), []
        for slot in request.slots:
            cands = [a.id for a in request.actions if a.id not in excluded | slot.excluded | used]
            pick = slot.baseline if slot.baseline in cands else cands[0]
            used.add(pick)
            slots.append({"id": slot.id, "rewardActionId": pick})
        return {"eventId": event_id, "slots": slots}

