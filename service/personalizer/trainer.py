"""Learning the Personalizer events (run by ``service.trainer``'s worker, next to the VW titles).

The trainer reads the event log in order. A rank waits in memory until its reward wait time
(recorded with it) plus ``TRAINER_GRACE_S`` has passed, i.e. until the trainer has read the log
past that moment: every reward it can get is then in the log (the reward script ignores rewards
once the event has expired). It is then learned once, with the configured VW arguments:

- reward: the aggregation of its rewards (``earliest``: the first; ``sum``), or
  ``defaultReward`` when none came; VW's cost is minus the reward;
- an event ranked with ``deferActivation`` is learned only if it was activated in time;
- ``Online``: labelled with the logged probability of the served action; ``Apprentice``: the
  baseline was served with probability 1, and before learning it the trainer counts whether the
  model's greedy choice agrees with it (``model/properties`` reports the rate); ``LoggingOnly``:
  nothing is learned;
- multi-slot: one example per slot (its candidates, its features in the context).

Log entries older than ``logRetentionDays`` are trimmed (checked once a minute).

The model is published with the log position it covers, at most every
``modelExportFrequency``, fenced on the version the trainer last saw: an import, a reset or a
policy change meanwhile makes the trainer reload the published model (or start a new one with
the policy's arguments) and go on from that model's position.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from bandit.vw_policy import VWModel
from service.personalizer.features import Action, action_line, shared_line, slot_object
from service.personalizer.ranker import new_model
from service.personalizer.store import PersonalizerStore, _entry_ms

log = logging.getLogger("service.trainer")


@dataclass(frozen=True)
class PersonalizerReport:
    title: str
    read: int
    learned: int
    published: int | None
    buffered: int


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def aggregate(values: list[float], rule: str) -> float:
    return sum(values) if rule == "sum" else values[0]


def examples(record: dict, rewards: list[tuple[str | None, float]], rule: str, default: float) -> list[tuple[str, int]]:
    """The labelled VW examples of one event (text, served action's index) for its slots."""
    context = record.get("context") or []
    actions = [Action(a["id"], tuple(a.get("features") or ())) for a in record["actions"]]
    out = []
    if "slots" not in record:  # single slot
        values = [v for _slot, v in rewards]
        reward = aggregate(values, rule) if values else default
        chosen, prob = record["a"][0], record["p"][0]
        out.append((_labelled(shared_line(context), [action_line(a) for a in actions], chosen, reward, prob), chosen))
        return out
    slots = record["slots"]
    for n, slot in enumerate(slots):
        values = [v for sid, v in rewards if sid == slot["id"] or (sid is None and n == 0)]
        reward = aggregate(values, rule) if values else default
        shared = shared_line(context, slot_object(slot["id"], slot.get("features") or ()))
        lines = [action_line(actions[i]) for i in slot["candidates"]]
        chosen = slot["chosen"]
        out.append((_labelled(shared, lines, chosen, reward, slot["p"][chosen]), chosen))
    return out


def _labelled(shared: str, lines: list[str], chosen: int, reward: float, prob: float) -> str:
    lines = list(lines)
    lines[chosen] = f"0:{-float(reward)!r}:{float(prob)!r} {lines[chosen]}"
    return "\n".join([shared, *lines])


class PersonalizerTrainer:
    name = "(personalizer)"

    def __init__(self, store: PersonalizerStore, grace_s: float, clock: Callable[[], float] = time.monotonic,
                 batch: int = 2_000):
        self.store = store
        self.grace_ms = int(1000 * grace_s)
        self.clock = clock
        self.batch = batch
        self.model: VWModel | None = None
        self.version = -1  # nothing read yet: the first step loads the published model (Redis may be down now)

    def _reset_from_published(self) -> None:
        if self.model is not None:
            self.model.close()
        stored = self.store.load_model()
        self.arguments = self.store.policy()["arguments"]
        self.model = VWModel.from_bytes(stored.data) if stored.data else None  # None: a new one when needed
        self.version, self.position, self.learned = stored.version, stored.position, stored.learned
        self.agree, self.compared = stored.agree, stored.compared
        self.cursor = self.position
        self.waiting: deque[tuple[int, str, str, dict]] = deque()  # (learn at ms, entry id, event id, record)
        self.rewards: dict[str, list] = {}
        self.activated: set[str] = set()
        self.unpublished = 0
        self.last_publish = self.clock()
        self._trimmed_at = float("-inf")

    def step(self) -> PersonalizerReport:
        snap = self.store.snapshot()
        if self.version < 0:
            self._reset_from_published()
        elif snap.model_version != self.version:  # imported, reset or new policy: start from the published one
            log.info("trainer: personalizer model version %d published by another writer; reloading", snap.model_version)
            self._reset_from_published()
        now_s, now_us = self.store.client.time()
        now_ms = now_s * 1000 + now_us // 1000
        entries = self.store.read_log(self.cursor, self.batch)
        for raw_id, fields in entries:
            self._take(_text(raw_id), fields)
            self.cursor = _text(raw_id)
        seen_until = now_ms - 1 if len(entries) < self.batch else _entry_ms(self.cursor)
        learned = self._learn_closed(seen_until, snap.config.reward_aggregation, snap.config.default_reward)
        self._apply_retention(now_ms, snap.config)
        version = None
        if self.unpublished and self.clock() - self.last_publish >= snap.config.model_export_s:
            version = self.publish()
        return PersonalizerReport(self.name, len(entries), learned, version, len(self.waiting))

    def _apply_retention(self, now_ms: int, config) -> None:
        """``logRetentionDays`` (once a minute; <= 0 keeps everything): never an event still waiting."""
        if config.log_retention_days <= 0 or self.clock() - self._trimmed_at < 60:
            return
        self._trimmed_at = self.clock()
        keep_ms = max(config.log_retention_days * 86_400_000, int(1000 * config.reward_wait_s) + self.grace_ms + 60_000)
        oldest_waiting = _entry_ms(self.waiting[0][1]) if self.waiting else now_ms
        self.store.trim_log(min(now_ms - keep_ms, oldest_waiting))

    def _take(self, entry_id: str, fields: dict) -> None:
        kind = fields.get(b"type")
        event_id = _text(fields.get(b"event", b""))
        if kind == b"rank":
            if event_id in self.rewards:
                log.warning("trainer: personalizer event %s ranked again while waiting; the first is kept", event_id)
                return
            try:
                record = orjson.loads(fields[b"record"])
                learn_at = _entry_ms(entry_id) + int(1000 * float(record["wait"])) + self.grace_ms
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("trainer: skips unreadable personalizer entry %s: %s", entry_id, exc)
                return
            self.waiting.append((learn_at, entry_id, event_id, record))
            self.rewards[event_id] = []
        elif kind == b"reward" and event_id in self.rewards:
            try:
                self.rewards[event_id].extend((slot, float(v)) for slot, v in orjson.loads(fields[b"value"]))
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("trainer: skips unreadable personalizer reward %s: %s", entry_id, exc)
        elif kind == b"activate" and event_id in self.rewards:
            self.activated.add(event_id)

    def _learn_closed(self, seen_until: int, rule: str, default: float) -> int:
        n = 0
        while self.waiting and self.waiting[0][0] <= seen_until:
            _at, entry_id, event_id, record = self.waiting.popleft()
            rewards = self.rewards.pop(event_id, [])
            activated = event_id in self.activated
            self.activated.discard(event_id)
            self.position = entry_id
            if record.get("mode") == "LoggingOnly" or (record.get("deferred") and not activated):
                continue
            try:
                labelled = examples(record, rewards, rule, default)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                log.warning("trainer: skips malformed personalizer event %s: %s", event_id, exc)
                continue
            if self.model is None:
                self.model = new_model(self.arguments)
            for text, chosen in labelled:
                if record.get("mode") == "Apprentice":
                    unlabelled = text.split("\n")
                    unlabelled[chosen + 1] = unlabelled[chosen + 1].split(" ", 1)[1]
                    self.compared += 1
                    self.agree += int(np.argmax(self.model.pmf(unlabelled)) == chosen)
                self.model.learn_text(text)
            n += 1
        if not self.waiting:
            self.position = self.cursor
        self.learned += n
        self.unpublished += n
        return n

    def publish(self) -> int | None:
        if self.model is None:
            return None
        version = self.store.publish(self.model.to_bytes(), expected_version=self.version, position=self.position,
                                     learned=self.learned, agree=self.agree, compared=self.compared)
        if version is None:
            log.warning("trainer: personalizer model changed meanwhile; reloading the published one")
            self._reset_from_published()
            return None
        log.info("trainer: personalizer published version=%d learned=%d (+%d) position=%s", version,
                 self.learned, self.unpublished, self.position)
        self.version, self.unpublished, self.last_publish = version, 0, self.clock()
        return version

    def close(self, publish: bool = False) -> None:
        if publish and self.version >= 0 and self.unpublished:
            self.publish()
        if self.model is not None:
            self.model.close()
            self.model = None
