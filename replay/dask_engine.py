"""Run ``replay.partitioned``'s passes on a Dask cluster: one task per partition.

Without a scheduler address a ``distributed.LocalCluster`` is started, sized to the machine
(one single-threaded worker process per core, the machine's memory shared among them); with
one (``tcp://host:8786``) the client connects to a running cluster, whose workers must be able
to import ``replay`` (install the project on them) and read the Parquet paths (shared storage).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from replay.errors import ReplayError


class DaskEngineError(ReplayError):
    """The cluster cannot be started or reached; the message names the address."""


@contextlib.contextmanager
def client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator:
    """A ``distributed.Client``: to ``scheduler``, or to a new LocalCluster (closed on exit)."""
    from distributed import Client, LocalCluster

    for name in ("distributed", "tornado"):  # the cluster's own chatter is not the command's output
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        try:
            c = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise DaskEngineError(f"--scheduler {scheduler}: cannot connect ({exc})", "--scheduler") from None
        try:
            yield c
        finally:
            c.close()
        return
    workers = n_workers or os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


def runner(c) -> Callable:
    """A ``replay.partitioned`` runner submitting one task per item to client ``c``; with
    ``combine``, results are merged pairwise on the workers as they complete (a tree reduction)."""
    from distributed import as_completed

    where: dict[str, str] = {}  # partition -> the worker that ran its first pass (and caches it)

    def run(fn: Callable, paths: Sequence, args: tuple, on_done: Callable[[int, int], None] | None = None,
            combine: Callable | None = None):
        futures = [c.submit(fn, p, *args, pure=False,
                            **({"workers": [where[str(p)]], "allow_other_workers": True} if str(p) in where else {}))
                   for p in paths]
        first = {f.key for f in futures}
        done, carry = 0, None
        pending = as_completed(futures)
        for f in pending:
            if f.key in first:
                done += 1
                if on_done is not None:
                    on_done(done, len(futures))
            if combine is not None:
                if carry is None:
                    carry = f
                else:
                    pending.add(c.submit(combine, carry, f, pure=False))
                    carry = None
        holders = c.who_has(futures)
        for p, f in zip(paths, futures, strict=True):
            if holders.get(f.key):
                where.setdefault(str(p), holders[f.key][0])
        return c.gather(futures) if combine is None else carry.result()

    return run
