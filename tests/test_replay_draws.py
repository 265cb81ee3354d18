"""Counter-based draws (replay.draws): Poisson(1) bootstrap weights and replay's uniforms have the
right distribution (against closed forms, with tolerances from the sample size), are independent
across replicates and neighbouring rows, and are pure functions of each row's key."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from replay.draws import ACCEPT_STREAM, event_key, poisson_weights, splitmix64, uniforms


def _keys(n: int, salt: int = 7) -> np.ndarray:
    """Draw keys of rows with sequential event ids (the simulator's e0, e1, ...): the worst case
    for a weak hash."""
    return splitmix64(event_key([f"e{i}" for i in range(n)]), salt)


def test_poisson_weights_have_poisson1_mean_variance_and_frequencies():
    n, b = 20_000, 50
    w = poisson_weights(_keys(n), b)
    assert w.shape == (b, n)
    cells = w.size
    # mean 1 (sd 1), variance 1 (the sample variance's sd is sqrt((mu4 - sigma^4) / N) = sqrt(3 / N))
    assert abs(w.mean() - 1.0) <= 4 * math.sqrt(1.0 / cells)
    assert abs(w.var() - 1.0) <= 4 * math.sqrt(3.0 / cells)
    for k in range(7):
        p = math.exp(-1) / math.factorial(k)
        assert abs(np.mean(w == k) - p) <= 4 * math.sqrt(p * (1 - p) / cells) + 1e-12, k
    assert np.all(w == np.round(w)) and w.min() >= 0


def test_poisson_table_is_the_cdf_scaled_to_64_bits():
    from scipy.stats import poisson

    from replay.draws import _POISSON1

    cdf = _POISSON1.astype(float) / 2.0**64
    np.testing.assert_allclose(cdf, poisson.cdf(np.arange(cdf.size), 1.0), rtol=1e-15, atol=2.0**-60)
    assert poisson.sf(cdf.size - 1, 1.0) < 2.0**-60  # the last bucket's tail is below the uniforms' resolution


def test_replicates_rows_and_streams_are_uncorrelated():
    n, b = 40_000, 4
    keys = _keys(n)
    w = poisson_weights(keys, b)
    u = uniforms(keys, ACCEPT_STREAM)
    bound = 4 / math.sqrt(n)  # correlation of n independent pairs: sd about 1 / sqrt(n)
    corr = np.corrcoef(np.vstack([w, u]))
    off = corr[~np.eye(b + 1, dtype=bool)]
    assert np.abs(off).max() <= bound
    assert abs(np.corrcoef(w[0, :-1], w[0, 1:])[0, 1]) <= bound  # neighbouring rows (ids e{i}, e{i+1})
    other_salt = poisson_weights(_keys(n, salt=8), 1)[0]
    assert abs(np.corrcoef(w[0], other_salt)[0, 1]) <= bound  # another seed: other draws


def test_uniforms_are_uniform():
    n = 100_000
    u = uniforms(_keys(n), ACCEPT_STREAM)
    assert u.min() >= 0 and u.max() < 1
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert np.all(np.abs(counts / n - 0.1) <= 4 * math.sqrt(0.1 * 0.9 / n))


def test_draws_are_pure_functions_of_each_rows_key():
    """A row's weights do not depend on the other rows drawn with it (chunks, partitions)."""
    keys = _keys(1_000)
    whole = poisson_weights(keys, 30)
    np.testing.assert_array_equal(np.hstack([poisson_weights(keys[:321], 30), poisson_weights(keys[321:], 30)]),
                                  whole)
    np.testing.assert_array_equal(poisson_weights(keys[::-1], 30), whole[:, ::-1])
    np.testing.assert_array_equal(uniforms(keys[5:6], ACCEPT_STREAM), uniforms(keys, ACCEPT_STREAM)[5:6])


@pytest.mark.parametrize("make", [
    lambda ids: pa.array(ids), lambda ids: pa.array(ids, pa.large_string()),
    lambda ids: pa.array(ids).dictionary_encode(), lambda ids: pa.array(["pad", *ids]).slice(1),
    lambda ids: np.array(ids, dtype=object),
])
def test_event_key_depends_on_the_id_alone(make):
    ids = ["a", "ab", "abcdefgh", "abcdefghi", "", "e1", "e10", "6f1c0d5e-2c4b-4a8e-9d0f-3b2a1c0e9f7d"]
    expected = np.array([event_key([i])[0] for i in ids], dtype=np.uint64)  # each hashed alone
    np.testing.assert_array_equal(event_key(make(ids)), expected)
    assert len(set(expected.tolist())) == len(ids)


def test_event_keys_of_a_million_ids_do_not_collide():
    keys = event_key([f"e{i}" for i in range(1_000_000)])
    assert np.unique(keys).size == keys.size
