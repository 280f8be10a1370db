"""Unwrapping of the kernel's 32-bit per-CPU counters (softnet_stat, interrupts, softirqs) into totals that never wrap."""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

MASK32 = 0xFFFFFFFF


def delta32(old: int, new: int) -> int:
    """Increase of a 32-bit counter that may have wrapped once since `old`."""
    return (new - old) & MASK32


@dataclass(frozen=True, slots=True)
class Counter32:
    """Raw kernel values and the unwrapped totals derived from them, per key."""

    raw: Mapping[Hashable, int]
    total: Mapping[Hashable, int]


EMPTY = Counter32({}, {})


def advance(prev: Counter32, raw: Mapping[Hashable, int], carry: frozenset = frozenset()) -> Counter32:
    """Totals for a new reading. A key first seen starts at its raw value; keys in `carry` that are
    missing from this reading (a CPU gone offline) keep their last values so sums stay monotonic."""
    total = {}
    for key, value in raw.items():
        old = prev.raw.get(key)
        total[key] = value if old is None else prev.total[key] + delta32(old, value)
    if carry:
        raw = dict(raw)
        for key in carry:
            if key not in raw and key in prev.raw:
                raw[key] = prev.raw[key]
                total[key] = prev.total[key]
    return Counter32(raw, total)
