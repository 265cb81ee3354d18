"""The Redis key builder: no id can reach another title's or profile's keys (property tests).

Pure tests (no Redis): every key is a string built from a validated id, so the properties are
about strings and Redis Cluster hash slots (``redis.crc.key_slot``, what the cluster uses).
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from service.errors import InvalidInput
from service.ids import EVENT_PATTERN, ID_PATTERN, new_event_id, parse_event_id
from service.keys import Keys

KEYS = Keys("aw")
ID_ALPHABET = string.ascii_letters + string.digits + "_-.:"
VALID_IDS = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=128)
# Characters that would matter in a key: hash-tag braces, glob patterns, separators, whitespace.
HOSTILE_CHARS = st.sampled_from(list("*?[]{}~|/\\ \t\n\r\x00'\"%$#@!") + ["é", "ß", "标题", "🎬", "\u202e", "\ufeff"])
INVALID_IDS = st.one_of(
    # valid text with at least one hostile character spliced in
    st.tuples(st.text(alphabet=ID_ALPHABET, max_size=40), HOSTILE_CHARS, st.text(alphabet=ID_ALPHABET, max_size=40)).map(
        lambda parts: "".join(parts)
    ),
    st.text(min_size=1, max_size=200).filter(lambda s: ID_PATTERN.fullmatch(s) is None),
    st.just(""),
    st.text(alphabet=ID_ALPHABET, min_size=129, max_size=300),
)
TOKENS = st.binary(min_size=16, max_size=16).map(bytes.hex)
BUCKETS = st.integers(min_value=0, max_value=2**40)


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the first ``{...}`` with something inside."""
    start = key.index("{")
    end = key.index("}", start + 1)
    assert end > start + 1
    return key[start + 1 : end]


def title_keys(keys: Keys, title: str, token: str, bucket: int) -> list[str]:
    return [keys.arms(title), keys.pending(title, token), keys.log(title), keys.traffic(title, bucket), keys.model(title)]


def catalog_keys(keys: Keys) -> list[str]:
    return [keys.catalog, keys.catalog_version, keys.retired_titles]


@settings(max_examples=300)
@given(title=VALID_IDS, token=TOKENS, bucket=BUCKETS)
def test_every_key_of_a_title_is_inside_its_own_hash_tag(title, token, bucket):
    keys = title_keys(KEYS, title, token, bucket)
    # The tag is exactly "t:<title>": an id has no braces, so it cannot close the tag early
    # or open a second one, and it is the first brace pair of every key (the prefix has none).
    assert {hash_tag(k) for k in keys} == {f"t:{title}"}
    assert len({key_slot(k.encode()) for k in keys}) == 1  # one slot: scripts stay atomic on a cluster
    assert key_slot(keys[0].encode()) == key_slot(f"t:{title}".encode())
    assert all(k.startswith(f"aw:{{t:{title}}}:") for k in keys)


@settings(max_examples=300)
@given(a=VALID_IDS, b=VALID_IDS, token=TOKENS, bucket=BUCKETS)
def test_distinct_ids_never_share_a_key(a, b, token, bucket):
    """Titles, profiles and the catalog live under disjoint hash tags, so under disjoint keys."""
    if a == b:
        b = a + "x" if len(a) < 128 else a[:-1]
    title_a, title_b = set(title_keys(KEYS, a, token, bucket)), set(title_keys(KEYS, b, token, bucket))
    profiles = {KEYS.profile(a), KEYS.profile(b)}
    catalog = set(catalog_keys(KEYS))
    assert len(profiles) == 2
    assert not title_a & title_b
    assert not (title_a | title_b) & (profiles | catalog)
    assert not profiles & catalog
    # Same id as a title and as a profile: still different tags (t: vs p:).
    assert hash_tag(KEYS.profile(a)) == f"p:{a}" != hash_tag(KEYS.arms(a))


@pytest.mark.parametrize("title", ["a:arms", "t:x", "x}", ":", "catalog", "{catalog}", "p:bob"])
def test_lookalike_ids_stay_in_their_own_tag(title):
    """Ids that look like parts of keys (':' is a legal id character) change nothing."""
    if ID_PATTERN.fullmatch(title) is None:
        with pytest.raises(InvalidInput):
            KEYS.arms(title)
        return
    assert hash_tag(KEYS.arms(title)) == f"t:{title}"
    assert KEYS.arms(title) not in catalog_keys(KEYS) and KEYS.arms(title) != KEYS.profile(title)


def test_title_slots_differ_from_the_catalog_slot_except_by_chance():
    """A title's slot is chosen by its id alone: about 1 title in 16,384 shares the catalog's."""
    catalog_slot = key_slot(KEYS.catalog.encode())
    assert {key_slot(k.encode()) for k in catalog_keys(KEYS)} == {catalog_slot}
    rng = random.Random(7)
    titles = ["".join(rng.choices(ID_ALPHABET, k=rng.randint(1, 40))) for _ in range(5_000)]
    same = [t for t in titles if key_slot(KEYS.arms(t).encode()) == catalog_slot]
    assert len(same) <= 5  # expected 5000/16384 ~ 0.3; a systematic overlap would be thousands
    assert all(key_slot(f"t:{t}".encode()) == catalog_slot for t in same)  # collisions are CRC16 chance
    spread = {key_slot(KEYS.arms(t).encode()) for t in titles}
    assert len(spread) > 4_000  # titles spread over the cluster's slots


@settings(max_examples=400)
@given(bad=INVALID_IDS)
def test_invalid_ids_are_rejected_with_the_typed_error(bad):
    for build, name in [(KEYS.arms, "title"), (KEYS.log, "title"), (KEYS.model, "title"), (KEYS.profile, "profile")]:
        with pytest.raises(InvalidInput) as info:
            build(bad)
        assert info.value.field == name and info.value.status == 400


@pytest.mark.parametrize(
    "bad",
    [
        "*", "title*", "a{b", "a}b", "{t:other}", "}{", "a~b", "tïtle", "标题", "🎬", "a b", "a\nb", "a/b",
        "x" * 129, "x" * 10_240, "", " ", "\x00",
    ],
    ids=lambda s: repr(s[:12]) + (f"..{len(s)}" if len(s) > 12 else ""),
)
def test_examples_of_rejected_ids(bad):
    with pytest.raises(InvalidInput):
        KEYS.arms(bad)
    with pytest.raises(InvalidInput):
        KEYS.profile(bad)


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a"], {"a": 1}])
def test_non_string_ids_are_rejected(value):
    with pytest.raises(InvalidInput):
        KEYS.arms(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "0" * 31, "0" * 33, "G" * 32, "A" * 32, "*" * 32, "0" * 31 + "}", "../" * 11])
def test_pending_keys_need_a_32_hex_digit_token(token):
    with pytest.raises(ValueError):
        KEYS.pending("stranger-lights", token)


@pytest.mark.parametrize("prefix", ["", "a{b}", "a b", "x" * 65, "*", "é"])
def test_key_prefix_is_checked(prefix):
    with pytest.raises(ValueError):
        Keys(prefix)


@settings(max_examples=300)
@given(title=VALID_IDS)
def test_event_ids_round_trip_to_their_title(title):
    event_id = new_event_id(title)
    parsed_title, token = parse_event_id(event_id)
    assert parsed_title == title and EVENT_PATTERN.fullmatch(event_id)
    assert hash_tag(KEYS.pending(parsed_title, token)) == f"t:{title}"


@settings(max_examples=300)
@given(title=st.one_of(INVALID_IDS, VALID_IDS), token=st.text(max_size=40))
def test_forged_event_ids_cannot_name_keys_outside_a_title(title, token):
    """Whatever a client sends as event_id, it parses to a valid title and a hex token, or 400."""
    try:
        parsed_title, parsed_token = parse_event_id(f"{title}~{token}")
    except InvalidInput as exc:
        assert exc.field == "event_id"
        return
    assert parsed_title == title and ID_PATTERN.fullmatch(parsed_title)
    assert hash_tag(KEYS.pending(parsed_title, parsed_token)) == f"t:{title}"



@given(title=st.from_regex(r"[A-Za-z0-9_.:\-]{1,128}", fullmatch=True), bucket=st.integers(0, 10**9))
def test_decision_keys_are_the_single_key_methods(title, bucket):
    token = "0123456789abcdef" * 2
    assert KEYS.decision(title, token, bucket) == (
        KEYS.arms(title), KEYS.pending(title, token), KEYS.log(title), KEYS.traffic(title, bucket)
    )
