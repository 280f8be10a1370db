"""Link metadata (kind, master, flags, driver) read from a sysfs tree: the source when --path.sysfs is not /sys."""

import os
from dataclasses import dataclass

from lxcwatch.errors import Partial
from lxcwatch.kernel.link import ARPHRD_LOOPBACK, CLASS_NET, Driver, Link
from lxcwatch.kernel.nic import Nic
from lxcwatch.sources import tree_watch
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.root import Root, read_attr, read_link_name


def _kind(sysfs: Root, name: str, entries: list[str], physical: bool) -> str:
    if "bridge" in entries:
        return "bridge"
    if "bonding" in entries:
        return "bond"
    uevent = sysfs.attr(CLASS_NET, name, "uevent") or ""
    for line in uevent.splitlines():
        if line.startswith("DEVTYPE="):
            return line[len("DEVTYPE="):]
    if physical:
        return "physical"
    if sysfs.int_attr(CLASS_NET, name, "type") == ARPHRD_LOOPBACK:
        return "loopback"
    # A veth's iflink is its peer; other stacked devices (macvlan, ipvlan) have lower_* links instead.
    iflink = sysfs.int_attr(CLASS_NET, name, "iflink")
    ifindex = sysfs.int_attr(CLASS_NET, name, "ifindex")
    if iflink != ifindex and not any(e.startswith("lower_") for e in entries):
        return "veth"
    return "virtual"


def _driver(sysfs: Root, nic: Nic | None) -> Driver:
    if nic is None:
        return Driver()
    version = (sysfs.attr("module", nic.driver, "version") or "") if nic.driver else ""
    return Driver(driver=nic.driver, version=version, bus_info=nic.bus_info)


@dataclass(frozen=True, slots=True)
class _Identity:
    """What rarely changes about a link in a tree, and the NIC (from NicDirectory) it was read with."""

    path: str
    ifindex: int
    kind: str
    driver: Driver
    nic: Nic | None


NET = ("net", "")  # DirWatch key of class/net; a link's own keys are ("link", NAME) and, for a NIC, ("module", NAME)


class SysfsLinks:
    """Reads links from a sysfs tree. Kind and driver are read when a link appears or its NIC changes (a driver
    rebound), flags, operstate and master every sample; on a plain-file tree (tree_watch: not a kernel sysfs) all of
    it only when inotify says a link's directory or its class/net entry changed."""

    def __init__(self, sysfs: Root, directory: NicDirectory):
        self.sysfs = sysfs
        self._directory = directory  # its listing of class/net in this sample, shared: 1013 links, 0.6 ms a listing
        self._identity: dict[str, _Identity] = {}
        self._watch = tree_watch.open_for(sysfs.join(CLASS_NET))
        self._watching_net = False
        self._links: dict[str, Link] = {}  # with a watcher: the links as last read, unchanged since
        self._unreadable: dict[str, str] = {}  # with a watcher: links whose flags were unreadable, and the path
        self._watched_not: set[str] = set()  # links whose directory could not be watched: read every sample

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def read(self, nics: dict[str, Nic]) -> "dict[str, Link] | Partial":
        """The links; a Partial (the collector then fails, the links still count) if some `flags` is unreadable."""
        changed = self._changed()
        names = self._directory.names()
        listed = set(names)
        for gone in [n for n in self._identity if n not in listed]:
            self._forget(gone)
        links, unreadable = {}, []
        for name in names:
            nic = nics.get(name)
            ident = self._identity.get(name)
            if ident is None or ident.nic != nic or (changed is not None and name in changed):
                ident = self._identity[name] = self._read_identity(name, nic)
            elif changed is not None and name in self._links:  # watched, and nothing changed since the last read
                links[name] = self._links[name]
                if name in self._unreadable:
                    unreadable.append(self._unreadable[name])
                continue
            link, bad = self._read_state(name, ident)
            if link is None:
                self._forget(name)  # vanished since the listing: the next sample will not list it
                continue
            links[name] = link
            if bad:
                unreadable.append(bad)
            if self._watch is not None and name not in self._watched_not:
                self._links[name] = link
                if bad:
                    self._unreadable[name] = bad
                else:
                    self._unreadable.pop(name, None)
        if unreadable:
            return Partial(links, f"unreadable, so link_promiscuous unknown: {', '.join(sorted(unreadable))}")
        return links

    def _changed(self) -> set[str] | None:
        """Names whose files may have changed since the last read; None: any of them (no watcher, notices lost)."""
        if self._watch is None:
            return None
        if not self._watching_net:
            self._watching_net = self._watch.watch(NET, self.sysfs.join(CLASS_NET))
            self._identity.clear()  # read everything again once watched: nothing was missed meanwhile
            return None
        changes = self._watch.changes()
        if changes is None:  # the kernel's queue overflowed: start over
            self._watch.unwatch(NET)
            self._watching_net = False
            return self._changed()
        return {entry if key == NET else key[1] for key, entry in changes}

    def _forget(self, name: str) -> None:
        self._identity.pop(name, None)
        self._watched_not.discard(name)
        self._links.pop(name, None)
        self._unreadable.pop(name, None)
        if self._watch is not None:
            self._watch.unwatch(("link", name))
            self._watch.unwatch(("module", name))

    def _read_identity(self, name: str, nic: Nic | None) -> _Identity:
        path = self.sysfs.join(CLASS_NET, name)
        # Watched before reading: a change during the read is then noticed at the next sample. A link whose
        # directory cannot be watched (out of watches) is read every sample: not in self._links.
        if self._watch is not None:
            self._watch.unwatch(("module", name))
            if not self._watch.watch(("link", name), path):
                self._watched_not.add(name)
            else:
                self._watched_not.discard(name)
            if nic is not None and nic.driver:  # its version file: a module reloaded in the tree
                self._watch.watch(("module", name), self.sysfs.join("module", nic.driver))
        entries = self.sysfs.listdir(CLASS_NET, name)
        ifindex = self.sysfs.int_attr(CLASS_NET, name, "ifindex") or 0
        return _Identity(path, ifindex, _kind(self.sysfs, name, entries, nic is not None), _driver(self.sysfs, nic), nic)

    @staticmethod
    def _read_state(name: str, ident: _Identity) -> tuple[Link | None, str]:
        """(the link, the path of its flags if unreadable); (None, "") if the link vanished."""
        path = ident.path
        flags = read_attr(path + "/flags")
        if flags is None and not os.path.lexists(path):
            return None, ""
        link = Link(
            name=name,
            ifindex=ident.ifindex,
            kind=ident.kind,
            master=read_link_name(path + "/master") or "",
            operstate=read_attr(path + "/operstate") or "unknown",
            flags=None if flags is None else int(flags, 16) if flags.startswith("0x") else 0,
            promiscuity=None,
            driver=ident.driver,
        )
        return link, (path + "/flags" if flags is None else "")
