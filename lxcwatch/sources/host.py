"""The I/O handles of one host, live or a tree, that the collectors (lxcwatch/collectors) read through."""

import re
import socket
from dataclasses import dataclass

from lxcwatch.kernel import ethtool_coalesce, napi_poll
from lxcwatch.kernel.link import CLASS_NET
from lxcwatch.kernel.napi import Napi
from lxcwatch.sources import ethtool, napi_tuning
from lxcwatch.sources.kthreads import KernelThreads
from lxcwatch.sources.lxc_host import DEFAULT_LXC_PATH, LxcHost
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.perf_napi_poll import PerfNapiPolls
from lxcwatch.sources.root import Root, is_live
from lxcwatch.sources.sysfs_links import SysfsLinks


@dataclass
class Sources:
    """The handles the collectors share for the agent's lifetime. `live`: the running kernel (is_live), decided
    once; a tree answers from its files what the live host answers from netlink, ethtool and perf."""

    procfs: Root
    sysfs: Root
    live: bool
    nics: NicDirectory
    links: object  # NetlinkLinks on the live host, SysfsLinks on a tree
    kthreads: KernelThreads
    assigned: tuple | None = None  # (key, NicIrqs) of the last IRQ assignment
    interrupts: object = None  # the last kernel.interrupts reading: the next converts only the counts that changed
    lxc: LxcHost | None = None  # containers of the LXC paths (--path.lxc), probes on their own thread
    napi_polls: object = None  # TreeNapiPolls on a tree; on the live host the tracepoint's counters
    napi_poll_include: re.Pattern | None = None  # --collector.napi_poll.device-include: counted beside the NICs

    @classmethod
    def open(cls, procfs: str, sysfs: str, lxc_paths: tuple[str, ...] = (DEFAULT_LXC_PATH,),
             probes_file: str | None = None, probes_interval: float = 10.0,
             napi_poll_include: re.Pattern | None = None) -> "Sources":
        proc_root, sys_root, live = Root(procfs), Root(sysfs), is_live(sysfs)
        nics = NicDirectory(sys_root)
        if live:
            from lxcwatch.sources.netlink import NetlinkLinks  # pyroute2 only where netlink is read

            links = NetlinkLinks(sys_root)
        else:
            links = SysfsLinks(sys_root, nics)
        sources = cls(proc_root, sys_root, live, nics, links, KernelThreads(proc_root))
        sources.lxc = sources.lxc_host(lxc_paths, probes_file, probes_interval)
        sources.napi_polls = PerfNapiPolls() if live else TreeNapiPolls(proc_root)
        sources.napi_poll_include = napi_poll_include
        return sources

    def lxc_host(self, lxc_paths: tuple[str, ...], probes_file: str | None, probes_interval: float) -> LxcHost:
        return LxcHost(self.procfs, self.sysfs, lxc_paths, self.live, probes_file, probes_interval)

    def coalesce(self, nics) -> dict[str, ethtool_coalesce.Coalesce]:
        """Interrupt coalescing per NIC: on the live host from the NICs' drivers, on a tree from its file."""
        if self.live:
            return live_coalesce(nics)
        try:
            return ethtool_coalesce.parse(self.procfs.read(ethtool_coalesce.SOURCE))
        except FileNotFoundError:
            return {}

    def napi_tuning(self, sysctls: tuple[str, ...]) -> Napi:
        """NAPI tuning and coalescing of the NICs, and the net.core sysctls named."""
        nics = self.nics.current()
        return napi_tuning.read(self.procfs, self.sysfs, sorted(nics), self.coalesce(nics), sysctls)

    def napi_poll_devices(self) -> list[str]:
        return napi_poll_devices(self.nics, self.napi_poll_include)

    def close(self) -> None:
        for handle in (self.links, self.lxc, self.napi_polls):
            close = getattr(handle, "close", None)
            if close:
                close()


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


def napi_poll_devices(nics: NicDirectory, include: re.Pattern | None) -> list[str]:
    """The physical NICs (what detection judges), and the interfaces --collector.napi_poll.device-include names."""
    devices = set(nics.current())
    if include is not None:
        devices.update(n for n in nics.sysfs.listdir(CLASS_NET) if include.search(n))
    return sorted(devices)
