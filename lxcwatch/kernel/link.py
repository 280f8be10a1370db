"""A network interface as the agent sees it: kind, master, flags and driver (from netlink and ethtool, or sysfs)."""

from dataclasses import dataclass, field

CLASS_NET = "class/net"  # the sysfs directory of every network interface, relative to --path.sysfs
IFF_PROMISC = 0x100  # include/uapi/linux/if.h
ARPHRD_LOOPBACK = 772  # include/uapi/linux/if_arp.h


@dataclass(frozen=True, slots=True)
class Driver:
    driver: str = ""
    version: str = ""
    firmware: str = ""
    bus_info: str = ""


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    ifindex: int
    kind: str  # physical, bridge, veth, vlan, bond, loopback, or the netlink kind of other virtual links
    master: str  # bridge or bond this link is a port of; "" when none
    operstate: str
    flags: int | None  # raw device flags (IFF_PROMISC includes bridge- and tcpdump-induced); None: unreadable
    promiscuity: int | None  # IFLA_PROMISCUITY reference count; None when read from a sysfs tree
    driver: Driver = field(default_factory=Driver)

    @property
    def promiscuous(self) -> bool | None:
        return None if self.flags is None else bool(self.flags & IFF_PROMISC)
