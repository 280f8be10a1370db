"""The collectors, one module each: what it reads, what it adds to the snapshot and how it renders.

A module here defines COLLECTOR; ALL finds them (a new module is a new collector, nothing else to edit): the
flags, the sampler, the snapshot, the exposition and `lxcwatch record` take it from there.
`read` goes through the host's handles (lxcwatch/sources/host.py); `merge` and `render` are pure."""

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lxcwatch.core.family import Family
from lxcwatch.core.snapshot import CollectorResult, Snapshot


@dataclass(frozen=True)
class DeviceFilter:
    """--collector.NAME.device-include or -exclude, as node_exporter's: a regex searched in the name (Go's
    MatchString), the two mutually exclusive."""

    include: re.Pattern | None = None
    exclude: re.Pattern | None = None

    def __call__(self, device: str) -> bool:
        if self.include is not None:
            return self.include.search(device) is not None
        return self.exclude is None or self.exclude.search(device) is None


@dataclass(frozen=True)
class View:
    """What the flags choose to export of a snapshot: rendering only. Readings, the snapshot and the verdict still
    see every device and container, so a device left out never makes a verdict calm (docs/metrics.md)."""

    devices: dict[str, DeviceFilter] = field(default_factory=dict, hash=False)  # collector -> its device filter
    lxc_detail: frozenset[str] | None = None  # --collector.lxc.* switches: the groups on; None: all

    def device_filter(self, collector: str) -> DeviceFilter:
        return self.devices.get(collector, EVERY_DEVICE)


EVERY_DEVICE = DeviceFilter()


@dataclass(frozen=True)
class Collector:
    name: str  # makes the --collector.NAME flag
    position: int  # order of reads, logs and families in the exposition
    read: Callable[[object], object]  # Sources -> the reading; raises (or returns errors.Partial) on failure
    # (previous snapshot or None, reading or None when the collector failed or is off) -> the snapshot's fields.
    # Counters carry their totals across a failure, so they stay monotonic.
    merge: Callable[[Snapshot | None, object], dict]
    render: Callable[[Snapshot, View], Iterable[Family]]
    files: tuple[str, ...] = ()  # procfs files it reads, relative to --path.procfs: a trace re-reads them every sample
    # What else it reads (sysfs, /proc/PID), copied into a trace by `lxcwatch record`: called with a
    # traces.capture.Capture at each full capture; what it marks volatile is re-read every sample in between.
    capture: Callable[[object], None] | None = None
    exports_devices: str = ""  # the series --collector.NAME.device-include/-exclude choose; "": no such flags


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
