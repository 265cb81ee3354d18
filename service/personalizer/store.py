"""Personalizer state in Redis (all in the slot ``{pz}``, see ``service.keys``).

- A rank is ONE script: if the event id is already known (a client retry) it returns the stored
  answer and logs nothing; otherwise it stores the answer for the reward wait time and appends
  the rank record to the log.
- A reward or an activation is ONE script: logged if the event is inside its wait time, else
  ignored (as Personalizer ignores late rewards); either way the client gets 204.
- The model hash is published by the trainer fenced on the version it last saw (as
  ``service.models``); an import or a reset overrides it, and the trainer then reloads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from service.keys import Keys
from service.personalizer.configuration import DEFAULT_ARGUMENTS, ServiceConfiguration

RANK_LUA = """
local prior = redis.call('HGET', KEYS[1], 'response')
if prior then return prior end
redis.call('HSET', KEYS[1], 'response', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', 'rank', 'event', ARGV[5], 'record', ARGV[2])
return false
"""

EVENT_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', ARGV[2], 'event', ARGV[3], 'value', ARGV[4])
return 1
"""

PUBLISH_LUA = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '*' and current ~= tonumber(ARGV[1]) then return {-1, current} end
local v = current + 1
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'position', ARGV[3], 'learned', ARGV[4]) end
if not redis.call('HGET', KEYS[1], 'created') then redis.call('HSET', KEYS[1], 'created', ARGV[5]) end
redis.call('HSET', KEYS[1], 'version', v, 'model', ARGV[2], 'modified', ARGV[5], 'source', ARGV[6],
           'agree', ARGV[7], 'compared', ARGV[8])
return {v, current}
"""


@dataclass(frozen=True)
class Snapshot:
    """What a web worker needs to rank: the configuration and the model's version."""

    config: ServiceConfiguration
    arguments: str
    config_version: int
    model_version: int


@dataclass(frozen=True)
class StoredModel:
    version: int
    data: bytes  # empty: no model yet (or reset)
    position: str
    learned: int
    created: float
    modified: float
    agree: int
    compared: int


class PersonalizerStore:
    def __init__(self, client: redis.Redis, keys: Keys, log_maxlen: int):
        self.client = client
        self.keys = keys
        self.log_maxlen = log_maxlen
        self._rank = client.register_script(RANK_LUA)
        self._event = client.register_script(EVENT_LUA)
        self._publish = client.register_script(PUBLISH_LUA)

    # configuration
    def snapshot(self) -> Snapshot:
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.pz_config, "service", "policy", "version")
        pipe.hget(self.keys.pz_model, "version")
        (service, policy, version), model_version = pipe.execute()
        config = ServiceConfiguration.from_stored(json.loads(service)) if service else ServiceConfiguration()
        arguments = json.loads(policy)["arguments"] if policy else DEFAULT_ARGUMENTS
        return Snapshot(config, arguments, int(version or 0), int(model_version or 0))

    def policy(self) -> dict:
        raw = self.client.hget(self.keys.pz_config, "policy")
        return json.loads(raw) if raw else {"name": "default", "arguments": DEFAULT_ARGUMENTS}

    def put_service(self, config: ServiceConfiguration) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.pz_config, "service", json.dumps(config.stored()))
        pipe.hincrby(self.keys.pz_config, "version", 1)
        pipe.execute()

    def put_policy(self, policy: dict) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.pz_config, "policy", json.dumps(policy))
        pipe.hincrby(self.keys.pz_config, "version", 1)
        pipe.execute()

    # events
    def record_rank(self, event_id: str, response: str, record: str, wait_s: float) -> str | None:
        """Store a new event; returns the stored answer instead when the event id is known."""
        prior = self._rank(keys=[self.keys.pz_event(event_id), self.keys.pz_log],
                           args=[response, record, max(1, int(round(wait_s))), self.log_maxlen, event_id])
        if prior is None:
            return None
        return prior.decode() if isinstance(prior, bytes) else prior

    def record_event(self, kind: str, event_id: str, value: str = "") -> bool:
        """Log a reward (``value``: JSON list of [slot id or null, reward]) or an activation."""
        return bool(self._event(keys=[self.keys.pz_event(event_id), self.keys.pz_log],
                                args=[self.log_maxlen, kind, event_id, value]))

    def log_range(self) -> tuple[float, float] | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.xrange(self.keys.pz_log, count=1)
        pipe.xrevrange(self.keys.pz_log, count=1)
        first, last = pipe.execute()
        if not first:
            return None
        return _entry_ms(first[0][0]) / 1000.0, _entry_ms(last[0][0]) / 1000.0

    def trim_log(self, before_ms: int) -> int:
        """Drop log entries older than ``before_ms`` (``logRetentionDays``); returns how many."""
        return int(self.client.xtrim(self.keys.pz_log, minid=f"{int(before_ms)}-0", approximate=False))

    def delete_logs(self) -> None:
        self.client.delete(self.keys.pz_log)

    def read_log(self, after: str = "0-0", count: int = 10_000) -> list:
        return self.client.xrange(self.keys.pz_log, min=f"({after}", count=count)

    # model
    def model_version(self) -> int:
        return int(self.client.hget(self.keys.pz_model, "version") or 0)

    def load_model(self) -> StoredModel:
        raw = {k.decode(): v for k, v in self.client.hgetall(self.keys.pz_model).items()}
        return StoredModel(
            version=int(raw.get("version", 0)),
            data=bytes(raw.get("model", b"")),
            position=raw.get("position", b"0-0").decode(),
            learned=int(raw.get("learned", 0)),
            created=float(raw.get("created", 0)),
            modified=float(raw.get("modified", 0)),
            agree=int(raw.get("agree", 0)),
            compared=int(raw.get("compared", 0)),
        )

    def publish(self, data: bytes, *, expected_version: int | None, position: str = "", learned: int = 0,
                source: str = "trainer", agree: int = 0, compared: int = 0) -> int | None:
        """Publish a model (``expected_version=None``: override, for imports and resets).

        Returns the new version, or None when somebody published since ``expected_version``."""
        expected = "*" if expected_version is None else str(int(expected_version))
        version, _current = self._publish(
            keys=[self.keys.pz_model],
            args=[expected, data, position, int(learned), repr(time.time()), source, int(agree), int(compared)],
        )
        return None if int(version) < 0 else int(version)


def _entry_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])
