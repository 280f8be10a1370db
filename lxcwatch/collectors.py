"""The collectors: each reads one concern of the host into a reading. Names make the --collector.NAME flags."""

import os
from collections.abc import Callable
from dataclasses import dataclass

from lxcwatch import interrupts as interrupts_file
from lxcwatch import ethtool_coalesce, napi, napi_poll, net_dev, proc_stat, softirqs, softnet_stat
from lxcwatch.fsroot import Root
from lxcwatch.irq_vectors import assign
from lxcwatch.kthreads import KernelThreads
from lxcwatch.links import SysfsLinks
from lxcwatch.lxc_host import DEFAULT_LXC_PATH, LxcHost
from lxcwatch.nics import NicDirectory
from lxcwatch.snapshot import Interrupts, Softirqs


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

    @classmethod
    def open(cls, procfs: str, sysfs: str, lxc_paths: tuple[str, ...] = (DEFAULT_LXC_PATH,),
             probes_file: str | None = None, probes_interval: float = 10.0) -> "Sources":
        sys_root = Root(sysfs)
        if is_live(sysfs):
            from lxcwatch.netlink import NetlinkLinks  # netlink describes only the live kernel

            links = NetlinkLinks(sys_root)
        else:
            links = SysfsLinks(sys_root)
        sources = cls(Root(procfs), sys_root, NicDirectory(sys_root), links, KernelThreads(Root(procfs)))
        sources.lxc = sources.lxc_host(lxc_paths, probes_file, probes_interval)
        sources.napi_polls = LiveNapiPolls() if is_live(sysfs) else TreeNapiPolls(sources.procfs)
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
            return napi_poll.NapiPollReading(unavailable=f"{self.procfs.join(napi_poll.SOURCE)}: absent from the tree")
        return napi_poll.NapiPollReading(napi_poll.parse(text))


class LiveNapiPolls:
    """Placeholder until the perf_event_open counting lands."""

    def read(self, devices: list[str]) -> napi_poll.NapiPollReading:
        return napi_poll.NapiPollReading(unavailable="not implemented")

    def close(self) -> None:
        pass


def read_coalesce(s: Sources) -> dict:
    """Interrupt coalescing per NIC: from the tree's file; on the live host from ETHTOOL_GCOALESCE (to come)."""
    if is_live(s.sysfs.path):
        return {}
    try:
        return ethtool_coalesce.parse(s.procfs.read(ethtool_coalesce.SOURCE))
    except FileNotFoundError:
        return {}


def read_napi(s: Sources):
    return napi.read(s.procfs, s.sysfs, sorted(s.nics.current()), read_coalesce(s))


def read_napi_poll(s: Sources):
    return s.napi_polls.read(sorted(s.nics.current()))


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
