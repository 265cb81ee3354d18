"""Redis clients: a server, a primary found through Sentinel, a cluster, or the embedded fallback."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.connection import HIREDIS_AVAILABLE, HiredisRespSerializer
from redis.retry import Retry

from service.config import Settings

if HIREDIS_AVAILABLE:
    import hiredis

log = logging.getLogger(__name__)

# Errors that mean "the store did not answer": callers degrade (fallback artwork, 503), never 500.
# (Sentinel's MasterNotFoundError, during a failover, is a ConnectionError.)
STORE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


class FastPacker(HiredisRespSerializer):
    """redis-py's hiredis packer, minus its per-argument pass that turns bytearray and
    memoryview into bytes: hiredis packs the str, bytes and numbers this service sends as they
    are (a 40-title decide call has ~330 arguments: that pass was 2/3 of its packing time). An
    argument hiredis refuses (a bytearray...) sends the command through redis-py's pack, as before."""

    def pack(self, *args):
        command = args
        # the command name as redis-py reads it ("SCRIPT LOAD" is two words)
        if isinstance(command[0], str):
            command = tuple(command[0].encode().split()) + command[1:]
        elif b" " in command[0]:
            command = tuple(command[0].split()) + command[1:]
        try:
            return [hiredis.pack_command(command)]
        except TypeError:
            return super().pack(*args)


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
    # (the cluster client refuses connection arguments it does not know)
    packer = {"command_packer": FastPacker()} if HIREDIS_AVAILABLE and not cluster else {}
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
        return sentinel.master_for(sentinel_master, retry=Retry(NoBackoff(), 0), **primary, **common, **packer)
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common, **packer)
