"""The outcome join cache: bounded by size and age, same answers as a plain ordered dict."""

from __future__ import annotations

import gc
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metasignal.stream.join import JoinCache

MEMBERS = ("a", "b", "c")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def remember(
    cache: JoinCache, event_id: str, value: float, members: tuple[str, ...] = MEMBERS
) -> None:
    cache.remember(
        event_id,
        ts_ms=int(value * 1000),
        votes=np.full(len(members), value),
        score=value,
        decision=int(value > 0.5),
        model_version=len(members),
        members=members,
    )


def test_match_returns_what_was_remembered_and_removes_it() -> None:
    cache = JoinCache(max_entries=4, ttl_s=60)
    remember(cache, "e1", 0.7)
    hit = cache.match("e1")
    assert hit is not None
    assert (hit.id, hit.ts_ms, hit.score, hit.decision, hit.model_version) == ("e1", 700, 0.7, 1, 3)
    assert hit.members == MEMBERS
    assert hit.votes.tolist() == [0.7, 0.7, 0.7]
    assert cache.match("e1") is None
    assert len(cache) == 0


def test_size_bound_evicts_oldest_across_many_wraps() -> None:
    evicted: list[tuple[str, int]] = []
    cache = JoinCache(max_entries=3, ttl_s=60, on_evict=lambda *args: evicted.append(args))
    for i in range(10):
        remember(cache, f"e{i}", i / 10)
    assert len(cache) == 3
    assert cache.evictions["size"] == 7 and evicted == [("size", 1)] * 7
    assert [cache.match(f"e{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3


def test_ttl_expires_in_age_order_and_skips_matched_holes() -> None:
    clock = FakeClock()
    cache = JoinCache(max_entries=10, ttl_s=5, clock=clock)
    for i in range(4):
        clock.now = float(i)
        remember(cache, f"e{i}", 0.1)
    assert cache.match("e1") is not None  # a hole in the ring
    clock.now = 7.5  # cut-off 2.5: e0 and e2 expire, e1 was matched, e3 stays
    cache.expire()
    assert cache.evictions["ttl"] == 2
    assert cache.match("e2") is None and cache.match("e3") is not None


def test_replayed_vote_refreshes_its_entry() -> None:
    cache = JoinCache(max_entries=2, ttl_s=60)
    remember(cache, "e1", 0.2)
    remember(cache, "e1", 0.9)
    remember(cache, "e2", 0.3)
    assert len(cache) == 2 and cache.evictions["size"] == 0
    hit = cache.match("e1")
    assert hit is not None and hit.score == 0.9


def test_entries_keep_the_member_order_of_the_model_that_scored_them() -> None:
    cache = JoinCache(max_entries=4, ttl_s=60)
    remember(cache, "old", 0.4, members=("a", "b"))
    remember(cache, "new", 0.6, members=("a", "b", "c", "d"))  # the votes columns widen
    old, new = cache.match("old"), cache.match("new")
    assert old is not None and new is not None
    assert old.members == ("a", "b") and old.votes.tolist() == [0.4, 0.4]
    assert new.members == ("a", "b", "c", "d") and new.votes.tolist() == [0.6] * 4


def test_early_outcomes_are_bounded_and_counted() -> None:
    cache = JoinCache(max_entries=2, ttl_s=60)
    for i in range(3):
        cache.park(f"o{i}", 1)
    assert cache.evictions["early"] == 1
    assert cache.claim("o0") is None and cache.claim("o2") == 1


def test_a_full_cache_gives_the_garbage_collector_nothing_to_walk() -> None:
    cache = JoinCache(max_entries=50_000, ttl_s=60)
    for i in range(60_000):
        remember(cache, f"event-{i:08d}", 0.5)
    assert not gc.is_tracked(cache._slot_of)  # str -> int only


@pytest.mark.parametrize(("max_entries", "ttl_s"), [(0, 1.0), (1, 0.0)])
def test_invalid_bounds_are_refused(max_entries: int, ttl_s: float) -> None:
    with pytest.raises(ValueError):
        JoinCache(max_entries=max_entries, ttl_s=ttl_s)


def remember_batch(cache: JoinCache, event_ids: list[str], values: list[float]) -> None:
    cache.remember_batch(
        event_ids,
        ts_ms=np.array([int(v * 1000) for v in values]),
        votes=np.array([[v] * 3 for v in values]).reshape(len(values), 3),
        scores=np.array(values),
        decisions=np.array([int(v > 0.5) for v in values]),
        model_version=1,
        members=MEMBERS,
    )


def test_a_batch_behaves_like_its_votes_one_by_one() -> None:
    cache = JoinCache(max_entries=3, ttl_s=60)
    remember(cache, "a", 0.1)
    remember_batch(cache, ["b", "a", "c", "b", "d"], [0.2, 0.3, 0.4, 0.5, 0.6])
    # One by one: a refreshed after b, b refreshed after c, then d pushes out the oldest (a).
    assert len(cache) == 3 and cache.evictions["size"] == 1
    assert cache.match("a") is None
    assert [cache.match(e).score for e in ("c", "b", "d")] == [0.4, 0.5, 0.6]  # type: ignore[union-attr]


def test_a_batch_larger_than_the_cache_keeps_its_newest_votes() -> None:
    cache = JoinCache(max_entries=2, ttl_s=60)
    remember_batch(cache, ["a", "b", "c", "d"], [0.1, 0.2, 0.3, 0.4])
    assert cache.evictions["size"] == 2 and len(cache) == 2
    assert cache.match("c") is not None and cache.match("d") is not None


operations = st.lists(
    st.tuples(
        st.sampled_from(["remember", "batch", "match", "tick"]),
        st.integers(min_value=0, max_value=12),
        st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=9),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops=operations, max_entries=st.integers(min_value=1, max_value=6))
def test_same_answers_as_an_ordered_dict(
    ops: list[tuple[str, int, list[int]]], max_entries: int
) -> None:
    """The ring agrees with the obvious implementation: an ordered dict trimmed by size and age."""
    clock = FakeClock()
    ttl = 5.0
    cache = JoinCache(max_entries=max_entries, ttl_s=ttl, clock=clock)
    reference: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (value, born)

    def trim() -> None:
        while len(reference) > max_entries:
            reference.popitem(last=False)
        while reference and next(iter(reference.values()))[1] < clock.now - ttl:
            reference.popitem(last=False)

    for op, n, batch in ops:
        event_id = f"e{n}"
        if op == "remember":
            value = n / 13 + clock.now / 1000
            remember(cache, event_id, value)
            reference.pop(event_id, None)
            reference[event_id] = (value, clock.now)
            trim()
        elif op == "batch":
            values = [k / 13 + clock.now / 1000 for k in batch]
            remember_batch(cache, [f"e{k}" for k in batch], values)
            for k, value in zip(batch, values, strict=True):
                reference.pop(f"e{k}", None)
                reference[f"e{k}"] = (value, clock.now)
                trim()
        elif op == "match":
            hit = cache.match(event_id)
            expected = reference.pop(event_id, None)
            assert (hit is None) == (expected is None)
            if hit is not None and expected is not None:
                assert hit.score == expected[0]
        else:
            clock.now += n / 4
            cache.expire()
            trim()
        assert len(cache) == len(reference)
