"""The collectors: each reads one concern of the host into a reading. Names make the --collector.NAME flags."""

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from lxcwatch.kernel import interrupts as interrupts_file
from lxcwatch.sources import ethtool, napi_tuning as napi
from lxcwatch.kernel import ethtool_coalesce, napi_poll, net_dev, proc_stat, softirqs, softnet_stat
from lxcwatch.sources.root import Root
from lxcwatch.kernel.irq_vectors import assign
from lxcwatch.sources.kthreads import KernelThreads
from lxcwatch.sources.sysfs_links import SysfsLinks
from lxcwatch.sources.lxc_host import DEFAULT_LXC_PATH, LxcHost
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.perf_napi_poll import PerfNapiPolls
from lxcwatch.core.snapshot import Interrupts, Softirqs


@dataclass
class Sources:
    """The I/O handles the collectors share for the agent's lifetime."""

    procfs: Root
    sysfs: Root
    nics: NicDirectory
    links: object  # NetlinkLinks on the live host, SysfsLinks on a tree
    kthreads: KernelThreads
    assigned: tuple | None = None  # (key, NicIrqs) of the last IRQ assignment
    lxc: LxcHost | None = None  # containers of the LXC paths (--path.lxc), probes on their own thread
    napi_polls: object = None  # TreeNapiPolls on a tree; on the live host the tracepoint's counters
    napi_poll_include: re.Pattern | None = None  # --collector.napi_poll.device-include: counted beside the NICs

    @classmethod
    def open(cls, procfs: str, sysfs: str, lxc_paths: tuple[str, ...] = (DEFAULT_LXC_PATH,),
             probes_file: str | None = None, probes_interval: float = 10.0,
             napi_poll_include: re.Pattern | None = None) -> "Sources":
        sys_root = Root(sysfs)
        if is_live(sysfs):
            from lxcwatch.sources.netlink import NetlinkLinks  # netlink describes only the live kernel

            links = NetlinkLinks(sys_root)
        else:
            links = SysfsLinks(sys_root)
        sources = cls(Root(procfs), sys_root, NicDirectory(sys_root), links, KernelThreads(Root(procfs)))
        sources.lxc = sources.lxc_host(lxc_paths, probes_file, probes_interval)
        sources.napi_polls = PerfNapiPolls() if is_live(sysfs) else TreeNapiPolls(sources.procfs)
        sources.napi_poll_include = napi_poll_include
        return sources

    def lxc_host(self, lxc_paths: tuple[str, ...], probes_file: str | None, probes_interval: float) -> LxcHost:
        return LxcHost(self.procfs, self.sysfs, lxc_paths, is_live(self.sysfs.path), probes_file, probes_interval)

    def close(self) -> None:
        close = getattr(self.links, "close", None)
        if close:
            close()
        if self.lxc is not None:
            self.lxc.close()
        if self.napi_polls is not None and hasattr(self.napi_polls, "close"):
            self.napi_polls.close()


def is_live(sysfs: str) -> bool:
    return os.path.realpath(sysfs) == "/sys"


def read_softnet(s: Sources):
    return softnet_stat.parse(s.procfs.read("net", "softnet_stat"))


def read_softirqs(s: Sources):
    counts = softirqs.parse(s.procfs.read("softirqs"))
    ticks = proc_stat.parse_softirq_ticks(s.procfs.read("stat"))
    return Softirqs({v: counts[v] for v in ("NET_RX", "NET_TX") if v in counts}, ticks)


def read_interrupts(s: Sources):
    text = s.procfs.read("interrupts")
    nics = s.nics.current()
    wanted = {irq for nic in nics.values() for irq in nic.irqs}
    parsed = interrupts_file.parse(text, wanted)
    if any(irq not in parsed.rows for irq in wanted):  # a driver reloaded: its vectors were renumbered
        nics = s.nics.current(force=True)
        wanted = {irq for nic in nics.values() for irq in nic.irqs}
        parsed = interrupts_file.parse(text, wanted)
    nic_irqs = _assign_cached(s, nics, parsed)
    if any(parsed.rows[i.irq].counts is None for i in nic_irqs):  # some were found by name only
        parsed = interrupts_file.parse(text, {i.irq for i in nic_irqs})
    return Interrupts(parsed.cpus, nic_irqs, {i.irq: parsed.rows[i.irq].counts for i in nic_irqs})


def _assign_cached(s: Sources, nics, parsed) -> tuple:
    """assign() again only when the NICs or the text of their IRQ rows changed (a driver reload)."""
    key = (tuple(nics.values()), tuple(row.tail for row in parsed.rows.values() if row.counts is not None))
    if s.assigned is None or s.assigned[0] != key:
        s.assigned = (key, assign(nics, parsed))
    return s.assigned[1]


def read_netdev(s: Sources):
    return net_dev.parse(s.procfs.read("net", "dev"))


def read_links(s: Sources):
    return s.links.read(s.nics.current())


class TreeNapiPolls:
    """The counts a trace recorded (napi_poll.SOURCE); a tree without that file had no tracepoint counts."""

    def __init__(self, procfs: Root):
        self.procfs = procfs

    def read(self, devices: list[str]) -> napi_poll.NapiPollReading:
        try:
            text = self.procfs.read(napi_poll.SOURCE)
        except FileNotFoundError:
            return napi_poll.NapiPollReading(unavailable=f"{napi_poll.SOURCE}: absent from the tree (recorded without the kernel's poll counts)")
        return napi_poll.NapiPollReading(napi_poll.parse(text))


def live_coalesce(names) -> dict[str, ethtool_coalesce.Coalesce]:
    """One ETHTOOL_GCOALESCE per interface; those whose driver has no coalescing ops are left out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        found = {name: ethtool.coalesce(sock, name) for name in names}
    return {name: c for name, c in found.items() if c is not None}


def read_coalesce(s: Sources) -> dict:
    """Interrupt coalescing per NIC: from the tree's file; on the live host from the NICs' drivers."""
    if is_live(s.sysfs.path):
        return live_coalesce(s.nics.current())
    try:
        return ethtool_coalesce.parse(s.procfs.read(ethtool_coalesce.SOURCE))
    except FileNotFoundError:
        return {}


def read_napi(s: Sources):
    return napi.read(s.procfs, s.sysfs, sorted(s.nics.current()), read_coalesce(s))


def napi_poll_devices(nics: NicDirectory, include: re.Pattern | None) -> list[str]:
    """The physical NICs (what detection judges), and the interfaces --collector.napi_poll.device-include names."""
    devices = set(nics.current())
    if include is not None:
        devices.update(n for n in nics.sysfs.listdir("class", "net") if include.search(n))
    return sorted(devices)


def read_napi_poll(s: Sources):
    return s.napi_polls.read(napi_poll_devices(s.nics, s.napi_poll_include))


def read_kthreads(s: Sources):
    return s.kthreads.read()


def read_lxc(s: Sources):
    return s.lxc.read()


# name -> reader; every collector is on by default. Order matters only for readability of logs.
COLLECTORS: dict[str, Callable[[Sources], object]] = {
    "softnet": read_softnet,
    "softirqs": read_softirqs,
    "interrupts": read_interrupts,
    "netdev": read_netdev,
    "links": read_links,
    "napi": read_napi,
    "kthreads": read_kthreads,
    "napi_poll": read_napi_poll,
    "lxc": read_lxc,
}
