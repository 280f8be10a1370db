"""netdev: packets, bytes, drops and errors of every interface, /proc/net/dev."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import counter
from lxcwatch.kernel import net_dev

NETDEV = (
    ("receive_packets", "Packets received."),
    ("receive_bytes", "Bytes received."),
    ("receive_dropped", "Received packets dropped (rx_dropped + rx_missed_errors)."),
    ("receive_errors", "Receive errors."),
    ("transmit_packets", "Packets transmitted."),
    ("transmit_bytes", "Bytes transmitted."),
    ("transmit_dropped", "Transmit packets dropped."),
    ("transmit_errors", "Transmit errors."),
)


def read(s):
    return net_dev.parse(s.procfs.read(net_dev.SOURCE))


def merge(prev, reading) -> dict:
    """netdev: interface -> its counters as read (the kernel's are 64-bit)."""
    return {"netdev": reading or {}}


def render(s, view):
    names = sorted(filter(view.device_filter("netdev"), s.netdev))
    keys = [(name,) for name in names]
    columns = dict(zip(net_dev.NetDevCounters._fields, zip(*[s.netdev[name] for name in names])))
    for field, doc in NETDEV:
        family = counter(f"link_{field}", doc, ["device"])
        family.samples = list(zip(keys, columns.get(field, ())))  # 8 x 1000 links: no add() per sample
        yield family


COLLECTOR = Collector("netdev", 40, read, merge, render, files=(net_dev.SOURCE,),
                      exports_devices="lxcwatch_link_* counters (/proc/net/dev)")
