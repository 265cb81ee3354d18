"""Redis clients: a server, a primary found through Sentinel, a cluster, or the embedded fallback."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.config import Settings

log = logging.getLogger(__name__)

# Errors that mean "the store did not answer": callers degrade (fallback artwork, 503), never 500.
# (Sentinel's MasterNotFoundError, during a failover, is a ConnectionError.)
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
    return open_client(
        settings.redis_url,
        cluster=settings.redis_cluster,
        sentinels=settings.redis_sentinels,
        sentinel_master=settings.redis_sentinel_master,
        timeout_s=settings.redis_timeout_s,
        health_check_interval=30,
    )


def open_client(
    url: str,
    *,
    cluster: bool = False,
    sentinels: Sequence[tuple[str, int]] = (),
    sentinel_master: str = "mymaster",
    timeout_s: float = 10.0,
    **kwargs,
) -> redis.Redis:
    """The service's, the trainer's and the tools' one way to reach Redis.

    With ``sentinels`` the primary is whatever the Sentinels name: each new connection asks them,
    and a connection to a demoted or dead primary fails and is dropped, so the next one follows
    the failover. ``url`` then contributes only credentials, database and TLS.
    """
    common = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **kwargs)
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, **common)
    if sentinels:
        from redis.sentinel import Sentinel

        params = redis.connection.parse_url(url)
        primary = {k: params[k] for k in ("db", "username", "password") if k in params}
        if params.get("connection_class") is redis.connection.SSLConnection:
            primary["ssl"] = True
        timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        sentinel = Sentinel(list(sentinels), sentinel_kwargs=timeouts)
        return sentinel.master_for(sentinel_master, retry=Retry(NoBackoff(), 0), **primary, **common)
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)
