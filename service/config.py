"""Configuration: environment variables, read once into a frozen Settings.

Every variable is listed in ``VARIABLES`` (the README's configuration table is this table).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = PROJECT_ROOT / "data" / "demo_catalog.json"


class ConfigError(ValueError):
    """An environment variable has a value we cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    redis_embedded: bool = False
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_wait_replicas: int = 0
    redis_wait_timeout_s: float = 0.1
    redis_timeout_s: float = 0.25
    key_prefix: str = "aw"
    admin_token: str = ""
    ops_token: str = ""
    cors_origins: tuple[str, ...] = ("*",)
    attribution_window_s: int = 600
    decision_log_maxlen: int = 1_000_000
    decision_log_max_age_s: int = 86_400
    stats_cache_s: float = 1.0
    catalog_refresh_s: float = 0.5
    catalog_path: str = str(DEMO_CATALOG)
    load_catalog: bool = True
    ts_segment_strength: float = 200.0
    ts_uniform_mix: float = 0.01
    max_batch_titles: int = 50
    max_body_bytes: int = 64 * 1024
    recent_traffic_minutes: int = 5
    rng_seed: int | None = None
    vw_exploration: str = "squarecb"
    vw_epsilon: float = 0.05
    vw_gamma_scale: float = 10.0
    vw_min_learn_p: float = 0.2
    trainer_publish_every: int = 1_000
    trainer_publish_s: float = 10.0
    trainer_poll_s: float = 0.5
    trainer_grace_s: float = 1.0
    log_level: str = "INFO"
    log_format: str = "json"
    prometheus_multiproc_dir: str = ""
    personalizer_api_key: str = ""
    personalizer_refresh_s: float = 0.5
    personalizer_log_maxlen: int = 1_000_000


# env var -> (field, parser, description). Order is the README's order.
def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {text!r}")


def _origins(text: str) -> tuple[str, ...]:
    items = tuple(o.strip() for o in text.split(",") if o.strip())
    return items or ("*",)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"expected a non-negative number, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return value


def _host_ports(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (IPv6 hosts in brackets: ``[::1]:26379``)."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected comma-separated host:port, got {item!r}")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def _log_format(text: str) -> str:
    if text.strip().lower() not in ("json", "text"):
        raise ValueError(f"expected json or text, got {text!r}")
    return text.strip().lower()


def _optional_int(text: str) -> int | None:
    return int(text) if text.strip() else None


def _vw_exploration(text: str) -> str:
    from bandit.vw_policy import EXPLORATIONS  # noqa: PLC0415 - keeps VW out of config imports

    if text.strip() not in EXPLORATIONS:
        raise ValueError(f"expected one of {', '.join(EXPLORATIONS)}, got {text!r}")
    return text.strip()


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"expected a number in [0, 1], got {text!r}")
    return value


VARIABLES: dict[str, tuple[str, object, str]] = {
    "REDIS_URL": ("redis_url", str, "Redis to use (`redis://`, `rediss://`, `unix://`)."),
    "REDIS_CLUSTER": ("redis_cluster", _bool, "1: `REDIS_URL` names a node of a Redis Cluster."),
    "REDIS_EMBEDDED": ("redis_embedded", _bool, "1: in-process fakeredis (nothing shared, nothing persisted; demos only)."),
    "REDIS_SENTINELS": ("redis_sentinels", _host_ports, "Comma-separated `host:port` of Redis Sentinels: the primary is the one they name (followed across failovers); `REDIS_URL` then gives only password, database and TLS."),
    "REDIS_SENTINEL_MASTER": ("redis_sentinel_master", str, "Name the Sentinels monitor the primary under."),
    "REDIS_WAIT_REPLICAS": ("redis_wait_replicas", _non_negative_int, "A reward is acknowledged only once this many replicas have it (`WAIT`); otherwise 503, and the retry is counted once."),
    "REDIS_WAIT_TIMEOUT_MS": ("redis_wait_timeout_s", lambda t: _non_negative_float(t) / 1000.0, "How long a reward waits for those replicas (below `REDIS_TIMEOUT_MS`)."),
    "REDIS_TIMEOUT_MS": ("redis_timeout_s", lambda t: _non_negative_float(t) / 1000.0, "Socket connect/read timeout of every Redis call."),
    "KEY_PREFIX": ("key_prefix", str, "Prefix of every Redis key (several deployments or test runs can share one Redis)."),
    "ADMIN_TOKEN": ("admin_token", str, "Bearer token for catalog/profile writes and profile reads; empty disables them (403)."),
    "OPS_TOKEN": ("ops_token", str, "When set, `/stats`, `/dashboard` and `/metrics` need it (or `ADMIN_TOKEN`) as a bearer token (`?token=` for the dashboard page); empty: open."),
    "CORS_ORIGINS": ("cors_origins", _origins, "Comma-separated origins allowed to call `/artwork` and `/reward`."),
    "ATTRIBUTION_WINDOW_S": ("attribution_window_s", _positive_int, "Seconds a decision accepts its reward (every open decision holds Redis memory: see Redis memory)."),
    "DECISION_LOG_MAXLEN": ("decision_log_maxlen", _positive_int, "Approximate cap of each title's decision-log stream."),
    "DECISION_LOG_MAX_AGE_S": ("decision_log_max_age_s", _positive_int, "Log entries older than this are trimmed (about once a minute; more than `ATTRIBUTION_WINDOW_S`)."),
    "STATS_CACHE_S": ("stats_cache_s", _non_negative_float, "How stale a worker's copy of a title's arm counts, and of its `/stats` and `/dashboard/data` answers, may be (0: read every request)."),
    "CATALOG_REFRESH_S": ("catalog_refresh_s", _non_negative_float, "How often a worker checks the catalog version."),
    "CATALOG_PATH": ("catalog_path", str, "Catalog JSON loaded into Redis at start (titles already there are kept)."),
    "LOAD_CATALOG": ("load_catalog", _bool, "0: do not load `CATALOG_PATH` at start."),
    "TS_SEGMENT_STRENGTH": ("ts_segment_strength", _non_negative_float, "Pseudo-impressions a segment's prior borrows from the rest of its title."),
    "TS_UNIFORM_MIX": ("ts_uniform_mix", _non_negative_float, "Share of Thompson traffic spread uniformly (keeps propensities >= mix/K)."),
    "MAX_BATCH_TITLES": ("max_batch_titles", _positive_int, "Most titles in one `/artwork` request."),
    "MAX_BODY_BYTES": ("max_body_bytes", _positive_int, "Largest request body accepted (413 beyond)."),
    "RECENT_TRAFFIC_MINUTES": ("recent_traffic_minutes", _positive_int, "Minutes of traffic behind the 'recent traffic share' statistic (at most 2880)."),
    "RNG_SEED": ("rng_seed", _optional_int, "Seed of the worker's random generator (tests; unset in production)."),
    "VW_EXPLORATION": ("vw_exploration", _vw_exploration, "Exploration of new VW models: `squarecb` (default: adapts exploration to the predicted reward gaps), `epsilon`, `bag`, `cover`, `softmax`. A published model keeps the exploration it was trained with."),
    "VW_EPSILON": ("vw_epsilon", _unit_float, "Uniform share of `epsilon` (and `bag`/`cover`) exploration: every artwork keeps a propensity >= epsilon/K."),
    "VW_GAMMA_SCALE": ("vw_gamma_scale", _non_negative_float, "SquareCB greediness scale (larger: exploits sooner)."),
    "VW_MIN_LEARN_P": ("vw_min_learn_p", _unit_float, "Floor on logged propensities when the trainer learns (caps importance weights at 1/value; stabilizes learning from delayed, batched rewards)."),
    "TRAINER_PUBLISH_EVERY": ("trainer_publish_every", _positive_int, "The trainer publishes a model snapshot after this many new examples..."),
    "TRAINER_PUBLISH_S": ("trainer_publish_s", _non_negative_float, "...or this many seconds after the first unpublished example."),
    "TRAINER_POLL_S": ("trainer_poll_s", _non_negative_float, "How long the trainer sleeps when it has caught up with the logs."),
    "TRAINER_GRACE_S": ("trainer_grace_s", _non_negative_float, "Extra wait after a decision's attribution window before the trainer learns it (clock and expiry slack)."),
    "LOG_LEVEL": ("log_level", str, "Python logging level."),
    "LOG_FORMAT": ("log_format", _log_format, "`json`: one JSON object per line with the request id; `text`: plain lines."),
    "PROMETHEUS_MULTIPROC_DIR": ("prometheus_multiproc_dir", str, "Directory where gunicorn workers share `/metrics` samples (set by `gunicorn.conf.py`; empty: one process)."),
    "PERSONALIZER_API_KEY": ("personalizer_api_key", str, "Key the Personalizer-compatible surface requires in `Ocp-Apim-Subscription-Key` (empty: none for rank/reward/reads; configuration and model writes then need `ADMIN_TOKEN`)."),
    "PERSONALIZER_REFRESH_S": ("personalizer_refresh_s", _non_negative_float, "How often a worker re-reads the Personalizer configuration and model version."),
    "PERSONALIZER_LOG_MAXLEN": ("personalizer_log_maxlen", _positive_int, "Approximate cap of the Personalizer event log stream."),
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Read the environment once; ``overrides`` (field names) win, for tests and tools."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, (field_name, parse, _doc) in VARIABLES.items():
        if name in env:
            try:
                values[field_name] = parse(env[name])  # type: ignore[operator]
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.recent_traffic_minutes > 2_880:  # the traffic counters are kept for 48 h
        raise ConfigError(f"RECENT_TRAFFIC_MINUTES must be at most 2880, got {settings.recent_traffic_minutes}")
    if settings.decision_log_max_age_s <= settings.attribution_window_s:
        raise ConfigError("DECISION_LOG_MAX_AGE_S must exceed ATTRIBUTION_WINDOW_S (the trainer and export read decisions after their window)")
    if not 0 <= settings.ts_uniform_mix < 1:
        raise ConfigError(f"TS_UNIFORM_MIX must be in [0, 1), got {settings.ts_uniform_mix}")
    if settings.redis_sentinels and (settings.redis_cluster or settings.redis_embedded):
        raise ConfigError("REDIS_SENTINELS: not with REDIS_CLUSTER (a cluster fails over by itself) or REDIS_EMBEDDED")
    if settings.redis_wait_replicas and settings.redis_embedded:
        raise ConfigError("REDIS_WAIT_REPLICAS: the embedded fakeredis has no replicas")
    if settings.redis_wait_replicas and not 0 < settings.redis_wait_timeout_s < settings.redis_timeout_s:
        # WAIT 0 blocks forever, and a WAIT outliving the socket timeout is a connection error.
        raise ConfigError("REDIS_WAIT_TIMEOUT_MS must be above 0 and below REDIS_TIMEOUT_MS")
    return settings
