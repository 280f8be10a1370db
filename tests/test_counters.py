"""32-bit counter unwrapping: softnet_stat, interrupts and softirqs wrap at 2^32."""

import pytest

from lxcwatch.core.counters import EMPTY, advance, delta32


@pytest.mark.parametrize(
    "old,new,expected",
    [(5, 9, 4), (0xFFFFFFF0, 0x10, 0x20), (0xFFFFFFFF, 0, 1), (7, 7, 0), (1_000_000, 500, 500),
     (1, 0x80000000, 0x7FFFFFFF), (1, 0x80000001, 0x80000001)],
    ids=["plain", "wrap", "wrap-to-zero", "still", "reset", "just-below-2^31", "2^31-is-a-reset"],
)
def test_delta32(old, new, expected):
    assert delta32(old, new) == expected


def test_first_reading_starts_at_raw_value():
    c = advance(EMPTY, {"a": 42})
    assert c.total == {"a": 42}


def test_totals_keep_growing_across_a_wrap():
    c = advance(EMPTY, {"a": 0xFFFFFF00})
    c = advance(c, {"a": 0x00000100})
    assert c.total["a"] == 0xFFFFFF00 + 0x200
    c = advance(c, {"a": 0x00000300})
    assert c.total["a"] == 0xFFFFFF00 + 0x400


def test_keys_gone_are_dropped():
    c = advance(EMPTY, {"a": 10, "b": 50})
    assert advance(c, {"a": 12}).total == {"a": 12}


def test_a_reset_counts_from_zero():
    c = advance(EMPTY, {"a": 5_000_000})
    c = advance(c, {"a": 700})  # a replayed trace started over: no 4-billion jump
    assert c.total["a"] == 5_000_700


@pytest.mark.parametrize("old,new,expected", [(10, 15, 5), (2**40, 2**40 + 1, 1), (900, 100, 100)])
def test_increase64(old, new, expected):
    from lxcwatch.core.counters import increase

    assert increase(old, new) == expected
