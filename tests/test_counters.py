"""32-bit counter unwrapping: softnet_stat, interrupts and softirqs wrap at 2^32."""

import pytest

from lxcwatch.counters import EMPTY, advance, delta32


@pytest.mark.parametrize(
    "old,new,expected",
    [(5, 9, 4), (0xFFFFFFF0, 0x10, 0x20), (0xFFFFFFFF, 0, 1), (7, 7, 0)],
    ids=["plain", "wrap", "wrap-to-zero", "still"],
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
