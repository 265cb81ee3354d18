"""Redis clients: a server, a cluster, or the embedded in-process fallback."""

from __future__ import annotations

import logging

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.config import Settings

log = logging.getLogger(__name__)

# Errors that mean "the store did not answer": callers degrade (fallback artwork, 503), never 500.
STORE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


def connect(settings: Settings) -> redis.Redis:
    """A client with short timeouts and no retries.

    No retries: a retried script could count an impression twice when the first attempt's
    reply was lost; we would rather answer with the fallback artwork.
    """
    if settings.redis_embedded:
        import fakeredis

        log.warning(
            "REDIS_EMBEDDED: state is kept in this process only (fakeredis): not shared between workers, "
            "not persisted. Use a real Redis for anything but a demo."
        )
        return fakeredis.FakeRedis()
    common = dict(
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
    )
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **common)
    return redis.Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0), **common)
