"""Counter-based random draws: every draw a pure function of (row key, salt, stream).

Why: replay's rejection sampling and the Poisson bootstrap draw something for every row. Drawn
from one Generator in log order, a row's draw would depend on every row before it, and an engine
that sees the log in partitions (``replay.partitioned``) could not make the in-memory engine's
draws. Here a row's draws depend only on its own key (the hash of its unique ``event_id``,
``event_key``), the evaluation's salt (one draw from the seeded Generator) and the stream number
(0: replay's acceptance; 1 + b: bootstrap replicate b), so any engine, any partitioning and any
chunking give the same draws.

The generator is SplitMix64 (Steele, Lea, Flood 2014): the draw key is ``splitmix64(key ^ salt)``,
and stream s of a row is the (s + 1)-th output of a SplitMix64 generator seeded with its draw key.
Poisson(1) weights come from the uniform 64-bit output by inverse CDF against a table of the
CDF scaled to 2**64.
"""

from __future__ import annotations

import math

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
ACCEPT_STREAM = 0  # replay's acceptance; bootstrap replicate b uses stream 1 + b
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _finalize(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, in place on a uint64 array (and returned)."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def splitmix64(key: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64(key ^ salt): a fresh uint64 array (what folds and draw keys hash rows with)."""
    z = np.asarray(key, dtype=np.uint64) ^ np.uint64(salt)
    z += GOLDEN
    return _finalize(z)


def streams(draw_key: np.ndarray, first: int, count: int) -> np.ndarray:
    """(count, n) uint64: streams first .. first + count - 1 of every row."""
    steps = (np.arange(first, first + count, dtype=np.uint64) + np.uint64(1)) * GOLDEN
    z = steps[:, None] + np.asarray(draw_key, dtype=np.uint64)[None, :]
    return _finalize(z)


def uniforms(draw_key: np.ndarray, stream: int) -> np.ndarray:
    """(n,) uniforms in [0, 1) from one stream (53 random bits each)."""
    z = streams(draw_key, stream, 1)[0]
    z >>= np.uint64(11)
    return z * 2.0**-53


def _poisson_table(mean: float = 1.0) -> np.ndarray:
    """Thresholds t_k = floor(2**64 * P(X <= k)) for X ~ Poisson(mean), while below 2**64: a
    uniform 64-bit u gives X = #{k: t_k <= u}. Tail probabilities are summed from the far end so
    that they keep full relative precision."""
    terms = [math.exp(-mean)]
    while terms[-1] * 2.0**64 >= 1e-3:
        terms.append(terms[-1] * mean / len(terms))
    out = []
    for k in range(len(terms)):
        tail = math.fsum(terms[k + 1:])  # P(X > k), up to the terms below 2**-64 * 1e-3
        t = 2**64 - math.ceil(tail * 2.0**64)
        if t >= 2**64:
            break
        out.append(t)
    return np.array(out, dtype=np.uint64)


_POISSON1 = _poisson_table()


def poisson_weights(draw_key: np.ndarray, replicates: int) -> np.ndarray:
    """(replicates, n) Poisson(1) bootstrap weights (float): replicate b from stream 1 + b."""
    z = streams(draw_key, ACCEPT_STREAM + 1, replicates)
    counts = np.searchsorted(_POISSON1, z, side="right")
    del z
    return counts.astype(float)


def event_key(ids) -> np.ndarray:
    """(n,) uint64 hash of each event id (a pyarrow string array, or anything ``pa.array`` takes):
    the row's key for draws, as unique as the ids (64 bits: a collision among a billion rows has
    probability about 3%, among a million 3e-8). Computed on the Arrow buffers, eight bytes at a
    time: no Python object per row."""
    import pyarrow as pa

    arr = ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    n = len(arr)
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=off_type, count=n + 1, offset=arr.offset * np.dtype(off_type).itemsize)
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    padded = np.zeros(data.size + 8, dtype=np.uint8)
    padded[: data.size] = data
    # Every byte position read as a little-endian uint64 (unaligned, overlapping): a row's j-th
    # word is one gather.
    words = np.ndarray(shape=(data.size + 1,), dtype="<u8", buffer=padded, offset=0, strides=(1,))
    start, length = offsets[:-1], offsets[1:] - offsets[:-1]
    masks = np.array([(1 << (8 * r)) - 1 for r in range(9)], dtype=np.uint64)  # a word's first r bytes
    h = length.astype(np.uint64)
    _finalize(h)
    for j in range(0, max(int(length.max(initial=0)), 1), 8):  # the first word even of an empty id
        w = words[np.minimum(start + j, data.size)]
        w &= masks[np.clip(length - j, 0, 8)]
        w ^= h
        w += GOLDEN
        _finalize(w)
        h = w if j == 0 else np.where(length > j, w, h)  # a word only for ids that reach it
    return h
