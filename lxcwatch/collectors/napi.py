"""napi: NAPI tuning per NIC (sysfs), its interrupt coalescing (ethtool) and the net.core sysctls that bound polling."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import gauge
from lxcwatch.kernel import ethtool_coalesce
from lxcwatch.kernel.napi import SYSCTL_DIR

SYSCTLS = (  # (sysctl, metric, scale, help)
    ("netdev_budget", "net_core_netdev_budget_packets", 1, "net.core.netdev_budget: packets one net_rx_action may process."),
    ("netdev_budget_usecs", "net_core_netdev_budget_seconds", 1e-6, "net.core.netdev_budget_usecs: time one net_rx_action may run."),
    ("netdev_max_backlog", "net_core_netdev_max_backlog_packets", 1, "net.core.netdev_max_backlog: per-CPU backlog queue length."),
    ("busy_poll", "net_core_busy_poll_seconds", 1e-6, "net.core.busy_poll: busy polling time for poll/select (0: off)."),
    ("busy_read", "net_core_busy_read_seconds", 1e-6, "net.core.busy_read: busy polling time for socket reads (0: off)."),
)
SYSCTL_FILES = tuple(f"{SYSCTL_DIR}/{sysctl}" for sysctl, *_ in SYSCTLS)


def read(s):
    return s.napi_tuning(tuple(sysctl for sysctl, *_ in SYSCTLS))


TUNING = ("threaded", "napi_defer_hard_irqs", "gro_flush_timeout")  # sysfs, per interface


def capture(c) -> None:
    for _, base in c.interfaces():
        for attr in TUNING:
            c.sys.file(f"{base}/{attr}", volatile=True)


def merge(prev, reading) -> dict:
    """napi: Napi (tuning per NIC, sysctls), or None."""
    return {"napi": reading}


def render(s, view):
    threaded = gauge("link_napi_threaded", "1 if the NIC polls in napi/<dev> kernel threads.", ["device"])
    defer = gauge("link_napi_defer_hard_irqs", "Polls that may end empty before hard IRQs are re-enabled.", ["device"])
    gro = gauge("link_gro_flush_timeout_seconds", "GRO flush timeout; with napi_defer_hard_irqs it defers IRQs.", ["device"])
    rx_delay = gauge("link_coalesce_rx_delay_seconds", "Interrupt coalescing (ethtool -c rx-usecs): how long the NIC "
                     "may delay an RX interrupt after a packet; 0: no time-based coalescing.", ["device"])
    rx_frames = gauge("link_coalesce_rx_max_frames", "Interrupt coalescing (ethtool -c rx-frames): packets the NIC "
                      "may gather before an RX interrupt; 0: no count-based coalescing.", ["device"])
    rx_adaptive = gauge("link_coalesce_rx_adaptive", "1 if the driver moves RX coalescing with the load "
                        "(ethtool -c adaptive-rx: DIM, adaptive ITR).", ["device"])
    for name, t in sorted(s.napi.nics.items()):
        if t.threaded is not None:
            threaded.add([name], int(t.threaded))
        if t.defer_hard_irqs is not None:
            defer.add([name], t.defer_hard_irqs)
        if t.gro_flush_timeout_ns is not None:
            gro.add([name], t.gro_flush_timeout_ns / 1e9)
        if t.coalesce is not None:
            rx_delay.add([name], t.coalesce.rx_usecs / 1e6)
            rx_frames.add([name], t.coalesce.rx_frames)
            rx_adaptive.add([name], int(t.coalesce.adaptive_rx))
    yield from (threaded, defer, gro, rx_delay, rx_frames, rx_adaptive)
    for sysctl, name, scale, doc in SYSCTLS:
        if sysctl in s.napi.sysctls:
            family = gauge(name, doc)
            family.add([], s.napi.sysctls[sysctl] * scale)
            yield family


COLLECTOR = Collector("napi", 60, read, merge, render, files=SYSCTL_FILES + (ethtool_coalesce.SOURCE,), capture=capture)
