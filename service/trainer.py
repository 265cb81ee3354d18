"""The VW trainer worker: learns each title's decisions from its log, publishes model snapshots.

``python -m service.trainer [--title T ...] [--once]`` (Procfile ``worker:``). Settings come
from the same environment as the service (``ATTRIBUTION_WINDOW_S``, ``VW_*``, ``TRAINER_*``).

Per title whose policy is ``vw`` (or each ``--title``), the trainer reads the title's stream in
order. A decision of policy ``vw`` (its context carries the VW features) waits in memory until
its attribution window has closed, i.e. until the trainer has read the stream past
``decision time + ATTRIBUTION_WINDOW_S + TRAINER_GRACE_S``: by then every reward it can get is
in the stream (the reward script only logs rewards inside the window), so it is learned once,
with cost = -reward (the aggregated reward of its title's ``reward_aggregation``, 0 without a
reward) and the logged propensity. Decisions are learned in log order. A deferred decision
enters the stream when it is activated (and its window is then still open), so one never
activated is never learned.

Exactly once across restarts: the model is published together with ``position`` (every VW
decision up to that stream id is in the model) in one script, fenced on the version the trainer
last saw. A restarted trainer loads the model and reads from its position; what it had learned
after the last publish is learned again into the published model, which never had it. A
second trainer, or a warm start published meanwhile, makes the publish fail: the trainer then
reloads the published model and goes on from its position.

Memory: the decisions of one attribution window per title wait in memory (by default 10 minutes
of a title's VW traffic; up to days if the window is set so), featurized as they are read: ~0.6 KB a decision (ids, shared line, label;
its action lines are shared by the title's decisions). If the capped stream drops decisions
before the trainer reads them (``DECISION_LOG_MAXLEN`` too small for the window), they are lost
to learning.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import orjson
import redis

from bandit.vw_features import FeatureError, has_features, logged_example
from bandit.vw_policy import VWConfig, VWModel, cost_of, learning_probability
from service.config import Settings, load_settings
from service.json_logging import configure_logging
from service.keys import Keys
from service.models import ModelConflict, ModelStore, add_to_digest
from service.personalizer.store import PersonalizerStore
from service.personalizer.trainer import PersonalizerReport, PersonalizerTrainer
from service.redis_conn import connect
from service.store import RedisStore

log = logging.getLogger("service.trainer")


def _loads(data: bytes) -> object:
    # orjson: ~3x faster than json on a ~1 KB record, the biggest per-event cost after VW's.
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # NaN or Infinity: orjson refuses what json.dumps may have written


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


@dataclass(frozen=True)
class StepReport:
    """What one pass over a title did."""

    title: str
    read: int
    learned: int
    published: int | None  # new version, if any
    buffered: int


# A decision waiting for its window, already featurized: a plain tuple (ms, entry id, event id,
# shared line, action lines, logged artwork's index, learning probability).
# - Featurized when read, not when learned: its strings are shared with every decision of the
#   same title (and profile and request context while ``bandit.vw_features`` caches them), so
#   it costs ~0.6 KB instead of its decoded record's ~4.7 KB (a window of a title's decisions waits).
# - A tuple of strings and numbers, and rewards in a str -> float dict: CPython's garbage
#   collector stops tracking such objects, where a class instance stays tracked and every full
#   collection walks all the waiting ones (it halved the trainer's throughput).
_Pending = tuple[int, str, str, str, tuple[str, ...], int, float]


class TitleTrainer:
    """One title's model, stream position and decisions awaiting their window."""

    def __init__(self, title: str, store: RedisStore, models: ModelStore, settings: Settings,
                 config: VWConfig, clock: Callable[[], float] = time.monotonic, batch: int = 2_000):
        self.title = title
        self.store = store
        self.models = models
        self.settings = settings
        self.config = config
        self.clock = clock
        self.batch = batch
        self.wait_ms = int(1000 * (settings.attribution_window_s + settings.trainer_grace_s))
        self._reset_from_published()

    def _reset_from_published(self) -> None:
        published = self.models.load(self.title)
        if published is None:
            self.model = VWModel.new(self.config)
            self.version, self.position, self.learned, self.digest = 0, "0-0", 0, 0
            log.info("trainer: title=%s starts a new model (%s)", self.title, self.config.arguments())
        else:
            self.model = VWModel.from_bytes(published.data)
            self.version, self.position = published.version, published.position
            self.learned, self.digest = published.learned, published.digest
            log.info("trainer: title=%s resumes version=%d learned=%d position=%s (%s)", self.title,
                     self.version, self.learned, self.position, published.source)
        self.cursor = self.position  # read position (ahead of ``position`` by the waiting decisions)
        self.waiting: deque[_Pending] = deque()
        self.rewards: dict[str, float] = {}  # event id of each waiting decision -> its reward so far
        self.unpublished = 0
        self.first_unpublished_at: float | None = None
        self.seen_until_ms = 0

    def step(self) -> StepReport:
        """Read the next page of the log, learn every decision whose window closed, maybe publish."""
        now_s, now_us = self.store.client.time()
        now_ms = now_s * 1000 + now_us // 1000
        # Raw XRANGE (bytes): the record JSON is parsed straight from bytes, nothing decoded twice.
        entries = self.store.client.xrange(self.store.keys.log(self.title), min=f"({self.cursor}", count=self.batch)
        take, last = self._take, None
        try:
            for raw_id, fields in entries:
                take(raw_id, fields)
                last = raw_id
        finally:  # the cursor passes exactly what was taken, even if an entry raised
            if last is not None:
                self.cursor = last.decode() if isinstance(last, bytes) else last
        # A short page means we have read everything up to ``now_ms``; a full one, up to its end.
        self.seen_until_ms = now_ms - 1 if len(entries) < self.batch else _ms(self.cursor)
        learned = self._learn_closed()
        version = self._maybe_publish()
        return StepReport(self.title, len(entries), learned, version, len(self.waiting))

    def _take(self, raw_id: bytes | str, fields: dict) -> None:
        kind = fields.get(b"type")
        if kind == b"decision":
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            try:
                record = _loads(fields[b"record"])
            except (KeyError, ValueError) as exc:
                # Skipped rather than raised: the trainer would stop on this entry at every restart.
                log.warning("trainer: title=%s skips unreadable decision entry %s: %s", self.title, entry_id, exc)
                return
            if not isinstance(record, dict) or record.get("policy") != "vw" \
                    or not has_features(context := record.get("context")):
                return
            try:
                candidates = record["candidates"]
                index = candidates.index(record["artwork"])
                prob = learning_probability(record["propensity"], self.config.min_learn_p)
                if not 0 < prob <= 1:
                    raise FeatureError(f"label probability must be in (0, 1], got {prob}")
                event_id = str(record["event_id"])
                example = logged_example(context, record.get("segment"), candidates)
            except (KeyError, ValueError, TypeError, AttributeError, FeatureError) as exc:
                # Never learnable: skipped now (``position`` passes it with the decisions after it).
                log.warning("trainer: title=%s skips malformed decision %s: %s", self.title,
                            record.get("event_id"), exc)
                return
            if event_id in self.rewards:  # event ids are unique: a copy of a waiting decision is not learned twice
                log.warning("trainer: title=%s skips a second decision %s", self.title, event_id)
                return
            self.waiting.append((_ms(entry_id), entry_id, event_id, example.shared, example.actions, index, prob))
            self.rewards[event_id] = 0.0
        elif kind == b"reward":
            event_id = fields.get(b"event_id", b"").decode()
            if event_id in self.rewards:  # else: a reward of a decision learned before our position, or not VW
                # The record holds the aggregated reward so far (``sum``/``max`` never lower it).
                self.rewards[event_id] = max(self.rewards[event_id], float(fields[b"reward"]))

    def _learn_closed(self) -> int:
        n = 0
        waiting, rewards, learn = self.waiting, self.rewards, self.model.learn_text
        closed_ms = self.seen_until_ms - self.wait_ms
        digest = self.digest
        try:
            while waiting and waiting[0][0] <= closed_ms:
                _ms_, entry_id, event_id, shared, actions, index, prob = waiting[0]
                lines = [shared, *actions]
                # The label as ``ADFExample.lines(label)`` writes it (checked when the decision was read).
                lines[index + 1] = f"0:{cost_of(rewards[event_id])!r}:{prob!r} {actions[index]}"
                learn("\n".join(lines))
                waiting.popleft()
                del rewards[event_id]  # (present: the decision was taken with its reward entry)
                digest = add_to_digest(digest, event_id)
                n += 1
                self.position = entry_id
        finally:  # locals for speed, stored even if VW raises: the model has exactly what they count
            self.digest = digest
            self.learned += n
            if n:
                self.unpublished += n
                if self.first_unpublished_at is None:
                    self.first_unpublished_at = self.clock()
        if not self.waiting:
            # Nothing waits: everything read is done (rewards of learned decisions, other policies).
            self.position = self.cursor
        return n

    def _maybe_publish(self, force: bool = False) -> int | None:
        if self.unpublished == 0:
            return None
        due = self.unpublished >= self.settings.trainer_publish_every or (
            self.clock() - (self.first_unpublished_at or 0.0) >= self.settings.trainer_publish_s
        )
        if not (due or force):
            return None
        return self.publish()

    def publish(self) -> int | None:
        """Publish the model if it learned something since the last publish; the new version."""
        if self.unpublished == 0:  # a new version must mean a changed model
            return None
        started = time.perf_counter()
        data = self.model.to_bytes()
        try:
            version = self.models.publish(
                self.title, data, position=self.position, learned=self.learned, digest=self.digest,
                expected_version=self.version,
            )
        except ModelConflict as exc:
            log.warning("trainer: %s; reloading the published model", exc)
            self.model.close()
            self._reset_from_published()
            return None
        log.info(
            "trainer: title=%s published version=%d learned=%d (+%d) position=%s waiting=%d bytes=%d in %.1f ms",
            self.title, version, self.learned, self.unpublished, self.position, len(self.waiting), len(data),
            (time.perf_counter() - started) * 1000,
        )
        self.version = version
        self.unpublished = 0
        self.first_unpublished_at = None
        return version

    def close(self) -> None:
        self.model.close()


class Trainer:
    """Trains every VW title of the catalog (or the given titles), one step each per pass."""

    def __init__(self, settings: Settings, client: redis.Redis, titles: Sequence[str] = (),
                 config: VWConfig | None = None):
        self.settings = settings
        keys = Keys(settings.key_prefix)
        self.store = RedisStore(client, keys, attribution_window_s=settings.attribution_window_s,
                                log_maxlen=settings.decision_log_maxlen)
        self.models = ModelStore(client, keys)
        self.fixed_titles = tuple(titles)
        self.config = config or VWConfig(settings.vw_exploration, epsilon=settings.vw_epsilon,
                                         gamma_scale=settings.vw_gamma_scale, min_learn_p=settings.vw_min_learn_p)
        self.trainers: dict[str, TitleTrainer] = {}
        # The Personalizer-compatible surface's events (``service.personalizer.trainer``).
        self.personalizer = PersonalizerTrainer(PersonalizerStore(client, keys, settings.personalizer_log_maxlen),
                                                settings.trainer_grace_s)

    def titles(self) -> list[str]:
        if self.fixed_titles:
            return list(self.fixed_titles)
        _version, catalog = self.store.load_catalog()
        return sorted(t.id for t in catalog.values() if t.policy == "vw")

    def step(self) -> list[StepReport | PersonalizerReport]:
        reports = []
        for title in self.titles():
            trainer = self.trainers.get(title)
            if trainer is None:
                trainer = self.trainers[title] = TitleTrainer(title, self.store, self.models, self.settings, self.config)
            reports.append(trainer.step())
        reports.append(self.personalizer.step())
        return reports

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; sleep ``TRAINER_POLL_S`` when caught up; publish on the way out."""
        while not stop.is_set():
            try:
                reports = self.step()
            except redis.RedisError as exc:
                log.warning("trainer: Redis error, retrying: %s", exc)
                stop.wait(max(self.settings.trainer_poll_s, 0.5))
                continue
            if not any(r.read for r in reports):
                stop.wait(self.settings.trainer_poll_s)
        self.close(publish=True)

    def close(self, publish: bool = False) -> None:
        for trainer in self.trainers.values():
            if publish:
                try:
                    trainer.publish()
                except redis.RedisError as exc:
                    log.warning("trainer: final publish of %s failed: %s", trainer.title, exc)
            trainer.close()
        self.trainers.clear()
        try:
            self.personalizer.close(publish=publish)
        except redis.RedisError as exc:
            log.warning("trainer: final publish of the personalizer model failed: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--title", action="append", default=[], help="train this title only (repeatable)")
    parser.add_argument("--once", action="store_true", help="one pass over the log, publish, exit")
    args = parser.parse_args(argv)
    settings = load_settings()
    # The web's short timeout is for requests; the trainer reads pages and writes models.
    settings = replace(settings, redis_timeout_s=max(settings.redis_timeout_s, 5.0))
    configure_logging(settings.log_level, settings.log_format)  # JSON lines, as the web workers write
    trainer = Trainer(settings, connect(settings), args.title)
    if args.once:
        while any(r.read for r in trainer.step()):
            pass
        trainer.close(publish=True)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("trainer: started (window %ss + grace %ss, publish every %d examples or %ss)",
             settings.attribution_window_s, settings.trainer_grace_s, settings.trainer_publish_every,
             settings.trainer_publish_s)
    trainer.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
