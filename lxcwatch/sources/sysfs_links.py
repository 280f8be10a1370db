"""Link metadata (kind, master, flags, driver) read from a sysfs tree: the source when --path.sysfs is not /sys."""

import os

from lxcwatch.errors import Partial
from lxcwatch.kernel.link import ARPHRD_LOOPBACK, Driver, Link
from lxcwatch.kernel.nic import Nic
from lxcwatch.sources.root import Root, read_attr, read_link_name


def _kind(sysfs: Root, name: str, entries: list[str], nics: dict[str, Nic]) -> str:
    if "bridge" in entries:
        return "bridge"
    if "bonding" in entries:
        return "bond"
    uevent = sysfs.attr("class", "net", name, "uevent") or ""
    for line in uevent.splitlines():
        if line.startswith("DEVTYPE="):
            return line[len("DEVTYPE="):]
    if name in nics:
        return "physical"
    if sysfs.int_attr("class", "net", name, "type") == ARPHRD_LOOPBACK:
        return "loopback"
    # A veth's iflink is its peer; other stacked devices (macvlan, ipvlan) have lower_* links instead.
    iflink = sysfs.int_attr("class", "net", name, "iflink")
    ifindex = sysfs.int_attr("class", "net", name, "ifindex")
    if iflink != ifindex and not any(e.startswith("lower_") for e in entries):
        return "veth"
    return "virtual"


def _driver(sysfs: Root, nic: Nic | None) -> Driver:
    if nic is None:
        return Driver()
    version = (sysfs.attr("module", nic.driver, "version") or "") if nic.driver else ""
    return Driver(driver=nic.driver, version=version, bus_info=nic.bus_info)


class SysfsLinks:
    """Reads links from a sysfs tree. What rarely changes (kind, driver) is re-read only when the set of
    interfaces changes; flags, operstate and master are read every sample."""

    def __init__(self, sysfs: Root):
        self.sysfs = sysfs
        self._identity: dict[str, tuple[str, int, str, Driver]] = {}

    def read(self, nics: dict[str, Nic]) -> "dict[str, Link] | Partial":
        """The links; a Partial (the collector then fails, the links still count) if some `flags` is unreadable."""
        names = self.sysfs.listdir("class", "net")
        if set(names) != set(self._identity):
            self._identity = {n: self._read_identity(n, nics) for n in names}
        links, unreadable = {}, []
        for name in names:
            path, ifindex, kind, driver = self._identity[name]
            flags = read_attr(path + "/flags")
            if flags is None:
                if not os.path.lexists(path):
                    continue  # vanished since the listing: the next sample will not list it
                unreadable.append(path + "/flags")
            links[name] = Link(
                name=name,
                ifindex=ifindex,
                kind=kind,
                master=read_link_name(path + "/master") or "",
                operstate=read_attr(path + "/operstate") or "unknown",
                flags=None if flags is None else int(flags, 16) if flags.startswith("0x") else 0,
                promiscuity=None,
                driver=driver,
            )
        if unreadable:
            return Partial(links, f"unreadable, so link_promiscuous unknown: {', '.join(sorted(unreadable))}")
        return links

    def _read_identity(self, name: str, nics: dict[str, Nic]) -> tuple[str, int, str, Driver]:
        entries = self.sysfs.listdir("class", "net", name)
        ifindex = self.sysfs.int_attr("class", "net", name, "ifindex") or 0
        path = self.sysfs.join("class", "net", name)
        return path, ifindex, _kind(self.sysfs, name, entries, nics), _driver(self.sysfs, nics.get(name))
