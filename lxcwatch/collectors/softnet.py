"""softnet: per-CPU receive work of net_rx_action, /proc/net/softnet_stat."""

from lxcwatch.collectors import Collector
from lxcwatch.core.counters import EMPTY, advance
from lxcwatch.core.family import counter, gauge
from lxcwatch.kernel import softnet_stat

SOFTNET = (  # (field, metric, help)
    ("processed", "softnet_processed", "Packets processed by net_rx_action on this CPU (bridging and VLANs count again)."),
    ("dropped", "softnet_dropped", "Packets dropped because the backlog queue was full (net.core.netdev_max_backlog)."),
    ("time_squeeze", "softnet_times_squeezed", "net_rx_action runs that ended with work left (budget or time exhausted)."),
    ("cpu_collision", "softnet_cpu_collision", "Transmit lock collisions."),
    ("received_rps", "softnet_received_rps", "Inter-processor interrupts received to steer packets (RPS/RFS)."),
    ("flow_limit_count", "softnet_flow_limit_count", "Packets dropped by the flow limit."),
)


def read(s):
    return softnet_stat.parse(s.procfs.read(softnet_stat.SOURCE))


def merge(prev, rows) -> dict:
    """softnet_rows: cpu -> the row as read; softnet: (cpu, field) -> total, widened from the kernel's 32 bits."""
    totals = prev.softnet if prev else EMPTY
    if rows is None:
        return {"softnet_rows": {}, "softnet": totals}
    raw = {(r.cpu, f): v for r in rows for f, _, _ in SOFTNET if (v := getattr(r, f)) is not None}
    return {"softnet_rows": {r.cpu: r for r in rows}, "softnet": advance(totals, raw)}


def render(s, view):
    cpus = sorted(s.softnet_rows)
    labels = [(str(cpu),) for cpu in cpus]
    total = s.softnet.total
    for field, name, doc in SOFTNET:
        family = counter(name, doc, ["cpu"])
        family.samples = [(key, total[cpu, field]) for cpu, key in zip(cpus, labels) if (cpu, field) in total]
        if family.samples:
            yield family
    backlog = gauge("softnet_backlog_packets", "Packets waiting in this CPU's backlog (input + process queue).", ["cpu"])
    rows = s.softnet_rows
    backlog.samples = [(key, rows[cpu].backlog_len) for cpu, key in zip(cpus, labels)
                       if rows[cpu].backlog_len is not None]
    if backlog.samples:
        yield backlog


COLLECTOR = Collector("softnet", 10, read, merge, render, files=(softnet_stat.SOURCE,))
