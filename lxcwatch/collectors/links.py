"""links: every interface's kind, master, flags, promiscuity and driver (netlink and ethtool, or a sysfs tree)."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import Family, gauge
from lxcwatch.core.memo import LastResult


def read(s):
    return s.links.read(s.nics.current())


IDENTITY = ("ifindex", "iflink", "type", "uevent", "brport/state")
STATE = ("flags", "operstate", "carrier")  # change while a host runs: re-read every sample (docs/trace-format.md)
KIND_DIRS = ("bridge", "bonding")  # presence marks the kind; a few small attrs keep them in git


def capture(c) -> None:
    """What a sysfs tree answers for this collector (lxcwatch/sources/sysfs_links.py): each interface's identity,
    state, kind markers and relation links (master, lower_*, brif/)."""
    for _, base in c.interfaces():
        for attr in IDENTITY:
            c.sys.file(f"{base}/{attr}")
        for attr in STATE:
            c.sys.file(f"{base}/{attr}", volatile=True)
        for sub in KIND_DIRS:
            for entry in c.sys.listdir(f"{base}/{sub}"):
                c.sys.file(f"{base}/{sub}/{entry}")
        c.sys.link(f"{base}/master", volatile=True)
        for entry in c.sys.listdir(base):
            if entry.startswith("lower_"):
                c.sys.link(f"{base}/{entry}")
        for port in c.sys.listdir(f"{base}/brif"):
            c.sys.link(f"{base}/brif/{port}")


def merge(prev, reading) -> dict:
    """links: name -> Link."""
    return {"links": reading or {}}


def render(s, view):
    # New Family objects on the same sample lists: a caller may change a family, not its samples.
    return [Family(f.name, f.type, f.help, f.labels, f.samples) for f in _families_of(view, list(s.links.values()))]


def _families(view, table) -> tuple[Family, ...]:
    exported = view.device_filter("links")
    links = sorted((link for link in table if exported(link.name)), key=lambda link: link.name)
    promiscuous = gauge("link_promiscuous", "1 if the link is effectively promiscuous (IFF_PROMISC, also when a bridge or tcpdump set it).", ["device"])
    promiscuity = gauge("link_promiscuity", "Promiscuity reference count (IFLA_PROMISCUITY): how many users asked for promiscuous mode.", ["device"])
    up = gauge("link_up", "1 if the link's operational state is up.", ["device"])
    # No operstate here: a volatile value on an info metric makes new series at every flap (lxcwatch_link_up has it).
    info = gauge("link_info", "Link metadata; value is always 1.",
                 ["device", "kind", "master", "driver", "driver_version", "firmware_version", "bus_info"])
    ports: dict[str, int] = {}
    for link in table:  # a bridge's ports counted whether or not they are exported
        if link.master:
            ports[link.master] = ports.get(link.master, 0) + 1
    # 1000 links on a big host: each family's samples built in one go, not one add() per link
    promiscuous.samples = [((link.name,), int(link.promiscuous)) for link in links
                           if link.flags is not None]  # unreadable: unknown, and the links collector says so
    promiscuity.samples = [((link.name,), link.promiscuity) for link in links if link.promiscuity is not None]
    up.samples = [((link.name,), int(link.operstate == "up")) for link in links]
    info.samples = [((link.name, link.kind, link.master, d.driver, d.version, d.firmware, d.bus_info), 1)
                    for link in links for d in (link.driver,)]
    bridge_ports = gauge("bridge_ports", "Links attached to this bridge.", ["bridge"])
    bridge_ports.samples = [((link.name,), ports.get(link.name, 0)) for link in links if link.kind == "bridge"]
    return promiscuous, promiscuity, up, info, bridge_ports


# Links change seldom (a container starts, a flag flips), and an equal table renders to equal families: 1.3 ms per
# new snapshot on 1013 links (bench/breakdown.py).
_families_of = LastResult(_families)


COLLECTOR = Collector("links", 50, read, merge, render, capture=capture,
                      exports_devices="lxcwatch_link_info, _up, _promiscuous, _promiscuity and lxcwatch_bridge_ports")
