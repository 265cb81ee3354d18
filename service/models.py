"""VW models published through Redis, and each web worker's copy of them.

A title's model is one hash (``Keys.model(title)``, in the title's slot) with fields
``version`` (incremented by every publish), ``model`` (VW's saved bytes), ``position`` (the
trainer's place in the title's log: every VW decision up to it is in this model), ``learned``
(examples in the model), ``digest`` (sum of the learned events' hashes: lets tests and ops check
that the set learned is exactly the set logged), ``published_at`` and ``source``
(``trainer`` or ``warm-start``). A publish writes all fields in one script, fenced on the
version the publisher last saw: two trainers (or a trainer and a warm start) can never both
extend the same model, and the model and its position can never disagree.

Web workers: ``ModelCache.observe`` gets the versions read in round trip 1; a newer version is
loaded by one background thread (VW loads in ~5-20 ms) and swapped in by assignment, so requests
never wait for a load; until a title has a model, it is served uniformly (exploration).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import redis

from bandit.vw_features import decision_context, to_example
from bandit.vw_policy import VWModel, sample_action, uniform_pmf
from service.catalog import Profile, Title
from service.keys import Keys

log = logging.getLogger(__name__)

PUBLISH_LUA = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '*' and current ~= tonumber(ARGV[1]) then return {-1, current} end
local v = current + 1
redis.call('HSET', KEYS[1], 'version', v, 'model', ARGV[2], 'position', ARGV[3], 'learned', ARGV[4],
           'digest', ARGV[5], 'published_at', ARGV[6], 'source', ARGV[7])
return {v, current}
"""

DIGEST_MOD = (1 << 61) - 1


class ModelConflict(RuntimeError):
    """Somebody else published a model since the version this publisher started from."""


@dataclass(frozen=True)
class PublishedModel:
    title: str
    version: int
    data: bytes
    position: str
    learned: int
    digest: int
    published_at: float
    source: str


def event_digest(event_ids) -> int:
    """Order-free digest of a multiset of event ids: sum of 61-bit hashes (a duplicate changes it)."""
    total = 0
    for e in event_ids:
        total = (total + int.from_bytes(hashlib.blake2b(e.encode(), digest_size=8).digest(), "big")) % DIGEST_MOD
    return total


def add_to_digest(digest: int, event_id: str) -> int:
    return (digest + event_digest([event_id])) % DIGEST_MOD


class ModelStore:
    """Reads and publishes titles' models (I/O only)."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys
        self._publish = client.register_script(PUBLISH_LUA)

    def version(self, title: str) -> int:
        return int(self.client.hget(self.keys.model(title), "version") or 0)

    def load(self, title: str) -> PublishedModel | None:
        raw = self.client.hgetall(self.keys.model(title))
        if not raw or b"model" not in raw:
            return None
        f = {k.decode(): v for k, v in raw.items()}
        return PublishedModel(
            title=title,
            version=int(f["version"]),
            data=bytes(f["model"]),
            position=f.get("position", b"0-0").decode(),
            learned=int(f.get("learned", 0)),
            digest=int(f.get("digest", 0)),
            published_at=float(f.get("published_at", 0)),
            source=f.get("source", b"").decode(),
        )

    def publish(
        self, title: str, data: bytes, *, position: str, learned: int, digest: int, expected_version: int | None,
        source: str = "trainer",
    ) -> int:
        """Publish atomically; returns the new version. ``expected_version=None`` overrides any model."""
        expected = "*" if expected_version is None else str(int(expected_version))
        version, current = self._publish(
            keys=[self.keys.model(title)],
            args=[expected, data, position, int(learned), int(digest), repr(time.time()), source],
        )
        if int(version) < 0:
            raise ModelConflict(f"title {title}: model version is {current}, expected {expected_version}")
        return int(version)

    def log_end(self, title: str) -> str:
        """Id of the last entry of the title's log ("0-0" when empty)."""
        last = self.client.xrevrange(self.keys.log(title), count=1)
        if not last:
            return "0-0"
        entry_id = last[0][0]
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


@dataclass(frozen=True)
class VWChoice:
    artwork: str
    propensity: float
    pmf: np.ndarray
    context: dict
    model_version: int


class ModelCache:
    """A web worker's models, by title; see the module doc."""

    def __init__(self, models: ModelStore):
        self.models = models
        self._current: dict[str, tuple[int, VWModel]] = {}
        self._loading: set[str] = set()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None  # created lazily: gunicorn forks after import
        self.on_loaded: Callable[[str, int], None] = lambda title, version: None  # e.g. a metrics gauge

    def version(self, title: str) -> int:
        entry = self._current.get(title)
        return entry[0] if entry else 0

    def get(self, title: str) -> tuple[int, VWModel] | None:
        return self._current.get(title)

    def observe(self, versions: dict[str, int], wait: bool = False) -> None:
        """Schedule loading every title whose published version is newer than ours."""
        for title, version in versions.items():
            if version <= self.version(title):
                continue
            with self._lock:
                if title in self._loading:
                    continue
                self._loading.add(title)
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vw-model-loader")
            future = self._executor.submit(self._load, title)
            if wait:
                future.result()

    def _load(self, title: str) -> None:
        try:
            published = self.models.load(title)
            if published is not None and published.version > self.version(title):
                started = time.perf_counter()
                model = VWModel.from_bytes(published.data)
                old = self._current.get(title)
                self._current[title] = (published.version, model)  # one assignment: requests see old or new
                self.on_loaded(title, published.version)
                log.info(
                    "vw model loaded: title=%s version=%d learned=%d bytes=%d in %.1f ms",
                    title, published.version, published.learned, len(published.data),
                    (time.perf_counter() - started) * 1000,
                )
                del old  # freed when the last request using it is done
        except Exception:  # noqa: BLE001 - a failed load must not kill the loader; the next request retries
            log.exception("vw model load failed for title %s; serving the previous model", title)
        finally:
            with self._lock:
                self._loading.discard(title)

    def choose(
        self, title: Title, segment: str, profile: Profile | None, request: dict[str, str], rng: np.random.Generator
    ) -> VWChoice:
        """Predict the pmf (uniform without a model), sample the artwork, keep the features for the log."""
        tags = {a.id: a.tags for a in title.artworks}
        context = decision_context(None if profile is None else profile.to_json(), request, segment, tags)
        entry = self._current.get(title.id)
        pmf, version = uniform_pmf(len(title.artworks)), 0
        if entry is not None:
            version, model = entry
            try:
                pmf = model.pmf(to_example(context, title.artwork_ids).lines())
            except Exception:  # noqa: BLE001 - never fail a request on the model; explore instead
                log.exception("vw predict failed for title %s; serving uniformly", title.id)
                pmf, version = uniform_pmf(len(title.artworks)), 0
        d = sample_action(pmf, rng)
        context["vw.model"] = version  # which model decided (0: none yet, uniform)
        return VWChoice(title.artwork_ids[d.arm], d.propensity, pmf, context, version)
