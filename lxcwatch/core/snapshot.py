"""The immutable snapshot of one sample, built from the collectors' readings and the previous snapshot."""

from dataclasses import dataclass, field

from lxcwatch.core import containers as lxc_containers
from lxcwatch.core.counters import EMPTY, Counter32, advance, advance_rows
from lxcwatch.kernel.irq_vectors import NicIrq
from lxcwatch.sources.kthreads import KernelThread
from lxcwatch.sources.sysfs_links import Link
from lxcwatch.sources.napi_tuning import Napi
from lxcwatch.kernel.napi_poll import NapiPollReading
from lxcwatch.kernel.net_dev import NetDevCounters
from lxcwatch.kernel.softnet_stat import SoftnetRow

SOFTNET_COUNTERS = ("processed", "dropped", "time_squeeze", "cpu_collision", "received_rps", "flow_limit_count")
SOFTIRQ_VECTORS = ("NET_RX", "NET_TX")


@dataclass(frozen=True, slots=True)
class CollectorResult:
    success: bool
    duration_seconds: float
    error: str = ""
    partial: bool = False  # failed in part: its reading is kept and rendered (a link with an unreadable attribute)


@dataclass(frozen=True, slots=True)
class Interrupts:
    cpus: tuple[int, ...]
    nic_irqs: tuple[NicIrq, ...]
    counts: dict[str, tuple[int, ...]]  # irq -> raw 32-bit count per CPU (in `cpus` order), NIC IRQs only


@dataclass(frozen=True, slots=True)
class Softirqs:
    counts: dict[str, dict[int, int]]  # vector -> cpu -> raw count
    ticks: dict[int, int]  # cpu -> softirq time in USER_HZ ticks (64-bit)


@dataclass(frozen=True)
class Snapshot:
    """Everything one sample saw. Never mutated after build(); failed collectors contribute nothing
    but their counter state is carried so totals stay monotonic across the failure."""

    seq: int
    timestamp: float  # wall clock, seconds since the epoch
    monotonic: float
    collectors: dict[str, CollectorResult]
    softnet_rows: dict[int, SoftnetRow] = field(default_factory=dict)
    softnet: Counter32 = EMPTY  # (cpu, counter name) -> total
    softirqs: Counter32 = EMPTY  # (vector, cpu) -> total
    softirq_ticks: dict[int, int] = field(default_factory=dict)
    nic_irqs: tuple[NicIrq, ...] = ()
    irq_cpus: tuple[int, ...] = ()
    irq_rows: dict[str, tuple[int, ...]] = field(default_factory=dict)  # irq -> raw count per irq_cpus
    irqs: Counter32 = EMPTY  # irq -> total over CPUs
    netdev: dict[str, NetDevCounters] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    napi: Napi | None = None
    napi_polls: NapiPollReading | None = None  # the tracepoint's poll counts; None when the collector failed
    kthreads: dict[KernelThread, int] = field(default_factory=dict)  # CPU ticks of ksoftirqd/N, napi/*
    containers: dict[str, lxc_containers.Container] = field(default_factory=dict)  # LXC containers by name
    container_probes: tuple = ()  # ProbeResult of each declared probe that ran

    def ok(self, collector: str) -> bool:
        result = self.collectors.get(collector)
        return result is not None and result.success


def build(prev: "Snapshot | None", seq: int, timestamp: float, monotonic: float,
          readings: dict[str, object], results: dict[str, CollectorResult]) -> Snapshot:
    """A pure function of the previous snapshot and this sample's readings."""
    p = prev or Snapshot(0, 0.0, 0.0, {})
    parts: dict[str, object] = {}

    rows = readings.get("softnet")
    if rows is not None:
        raw = {(r.cpu, f): getattr(r, f) for r in rows for f in SOFTNET_COUNTERS if getattr(r, f) is not None}
        parts.update(softnet_rows={r.cpu: r for r in rows}, softnet=advance(p.softnet, raw))
    else:
        parts.update(softnet=p.softnet)

    softirqs = readings.get("softirqs")
    if softirqs is not None:
        raw = {(v, cpu): n for v in SOFTIRQ_VECTORS for cpu, n in softirqs.counts.get(v, {}).items()}
        parts.update(softirqs=advance(p.softirqs, raw), softirq_ticks=softirqs.ticks)
    else:
        parts.update(softirqs=p.softirqs)

    interrupts = readings.get("interrupts")
    if interrupts is not None:
        irqs = advance_rows(p.irqs, p.irq_cpus, p.irq_rows, interrupts.cpus, interrupts.counts)
        parts.update(nic_irqs=interrupts.nic_irqs, irq_cpus=interrupts.cpus, irq_rows=interrupts.counts, irqs=irqs)
    else:
        parts.update(irqs=p.irqs, irq_cpus=p.irq_cpus, irq_rows=p.irq_rows)

    if readings.get("netdev") is not None:
        parts["netdev"] = readings["netdev"]
    if readings.get("links") is not None:
        parts["links"] = readings["links"]
    for name in ("napi", "kthreads"):
        if readings.get(name) is not None:
            parts[name] = readings[name]
    if readings.get("napi_poll") is not None:
        parts["napi_polls"] = readings["napi_poll"]

    lxc = readings.get("lxc")
    if lxc is not None:  # state changes are counted against the last sample the collector succeeded in
        parts.update(containers=lxc_containers.advance(p.containers, lxc), container_probes=lxc.probes)
    else:
        parts.update(containers=p.containers)
    return Snapshot(seq, timestamp, monotonic, results, **parts)
