"""Unwrapping of the kernel's 32-bit per-CPU counters (softnet_stat, interrupts, softirqs) into totals that never wrap."""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

MASK32 = 0xFFFFFFFF


def delta32(old: int, new: int) -> int:
    """Increase of a 32-bit counter that may have wrapped once since `old`. An "increase" of 2^31 or more
    in one sample is no wrap but a reset (a replayed trace starting over): count from zero, as Prometheus does."""
    d = (new - old) & MASK32
    return d if d < 0x80000000 else new


def increase(old: int, new: int) -> int:
    """Increase of a 64-bit counter; a decrease means it was reset."""
    return new - old if new >= old else new


@dataclass(frozen=True, slots=True)
class Counter32:
    """Raw kernel values and the unwrapped totals derived from them, per key."""

    raw: Mapping[Hashable, int]
    total: Mapping[Hashable, int]


EMPTY = Counter32({}, {})


def advance(prev: Counter32, raw: Mapping[Hashable, int]) -> Counter32:
    """Totals for a new reading. A key first seen starts at its raw value; a key gone is dropped."""
    total, before, totals = {}, prev.raw.get, prev.total
    for key, value in raw.items():
        old = before(key)
        if old == value:  # most per-CPU counters of a sample: no call
            total[key] = totals[key]
        else:
            total[key] = value if old is None else totals[key] + delta32(old, value)
    return Counter32(raw, total)


def advance_rows(prev: Counter32, prev_cpus: tuple[int, ...], prev_rows: Mapping[str, tuple[int, ...]],
                 cpus: tuple[int, ...], rows: Mapping[str, tuple[int, ...]]) -> Counter32:
    """Totals of per-CPU 32-bit rows summed over CPUs (/proc/interrupts), keyed by row.

    Each CPU's counter wraps on its own, but the true increase of the sum within one sample is far below
    2^32, so it equals the increase of the raw sum modulo 2^32. When CPUs went on- or offline the columns
    differ, and only the CPUs present in both readings count (a vanished column is not a decrease)."""
    raw = {key: sum(counts) for key, counts in rows.items()}
    total = {}
    same_columns = cpus == prev_cpus
    index = {cpu: i for i, cpu in enumerate(prev_cpus)}
    for key, value in raw.items():
        old = prev.raw.get(key)
        if old is None:
            total[key] = value
        elif same_columns:
            total[key] = prev.total[key] + delta32(old, value)
        else:
            before = prev_rows[key]
            common = ((n, before[index[cpu]]) for cpu, n in zip(cpus, rows[key]) if cpu in index)
            total[key] = prev.total[key] + sum(delta32(o, n) for n, o in common)
    return Counter32(raw, total)
