"""The collectors, one module each: what it reads, what it adds to the snapshot and how it renders.

A module here defines COLLECTOR; ALL finds them (a new module is a new collector, nothing else to edit).
`read` goes through the host's handles (lxcwatch/sources/host.py); `merge` and `render` are pure."""

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lxcwatch.core.family import Family
from lxcwatch.core.snapshot import CollectorResult, Snapshot


@dataclass(frozen=True)
class Collector:
    name: str  # makes the --collector.NAME flag
    position: int  # order of reads, logs and families in the exposition
    read: Callable[[object], object]  # Sources -> the reading; raises (or returns errors.Partial) on failure
    # (previous snapshot or None, reading or None when the collector failed or is off) -> the snapshot's fields.
    # Counters carry their totals across a failure, so they stay monotonic.
    merge: Callable[[Snapshot | None, object], dict]
    render: Callable[[Snapshot], Iterable[Family]]
    files: tuple[str, ...] = ()  # procfs files it reads, relative to --path.procfs: what a trace records


def _discover() -> dict[str, Collector]:
    found = [importlib.import_module(f"{__name__}.{m.name}").COLLECTOR for m in pkgutil.iter_modules(__path__)]
    return {c.name: c for c in sorted(found, key=lambda c: c.position)}


ALL: dict[str, Collector] = _discover()


def build(prev: Snapshot | None, seq: int, timestamp: float, monotonic: float,
          readings: dict[str, object], results: dict[str, CollectorResult]) -> Snapshot:
    """A pure function of the previous snapshot and this sample's readings."""
    fields: dict[str, object] = {}
    for c in ALL.values():
        fields.update(c.merge(prev, readings.get(c.name)))
    return Snapshot(seq, timestamp, monotonic, results, fields)
