"""softirqs: NET_RX and NET_TX softirqs per CPU (/proc/softirqs) and softirq CPU time (/proc/stat)."""

from dataclasses import dataclass

from lxcwatch.collectors import Collector
from lxcwatch.core.counters import EMPTY, advance
from lxcwatch.core.family import counter
from lxcwatch.kernel import proc_stat, softirqs
from lxcwatch.kernel.proc_stat import USER_HZ

VECTORS = ("NET_RX", "NET_TX")


@dataclass(frozen=True, slots=True)
class Softirqs:
    counts: dict[str, dict[int, int]]  # vector -> cpu -> raw count
    ticks: dict[int, int]  # cpu -> softirq time in USER_HZ ticks (64-bit)


def read(s):
    counts = softirqs.parse(s.procfs.read(softirqs.SOURCE), VECTORS)
    ticks = proc_stat.parse_softirq_ticks(s.procfs.read(proc_stat.SOURCE))
    return Softirqs({v: counts[v] for v in VECTORS if v in counts}, ticks)


def merge(prev, reading: Softirqs | None) -> dict:
    """softirqs: (vector, cpu) -> total, widened from 32 bits; softirq_ticks: cpu -> ticks as read."""
    totals = prev.softirqs if prev else EMPTY
    if reading is None:
        return {"softirqs": totals, "softirq_ticks": {}}
    raw = {(v, cpu): n for v in VECTORS for cpu, n in reading.counts.get(v, {}).items()}
    return {"softirqs": advance(totals, raw), "softirq_ticks": reading.ticks}


def render(s, view):
    family = counter("softirqs", "Softirqs raised per CPU and vector.", ["cpu", "vector"])
    by_cpu = sorted((cpu, vector, total) for (vector, cpu), total in s.softirqs.total.items())
    family.samples = [((str(cpu), vector), total) for cpu, vector, total in by_cpu]
    yield family
    seconds = counter("cpu_softirq_seconds", "CPU time spent in softirq context, ksoftirqd included.", ["cpu"])
    seconds.samples = [((str(cpu),), ticks / USER_HZ) for cpu, ticks in sorted(s.softirq_ticks.items())]
    yield seconds


COLLECTOR = Collector("softirqs", 20, read, merge, render, files=(softirqs.SOURCE, proc_stat.SOURCE))
