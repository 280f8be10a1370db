"""netdev: packets, bytes, drops and errors of every interface, /proc/net/dev."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import Columns, counter
from lxcwatch.core.memo import LastResult
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


def _exported(exported, devices: list[str]) -> tuple[tuple[str], ...]:
    """The label values of the devices exported, sorted."""
    return tuple((name,) for name in sorted(filter(exported, devices)))


# The same links from sample to sample: sorted and filtered once (0.35 ms per new snapshot on 1013 links, timeit).
_exported_keys = LastResult(_exported)


def render(s, view):
    keys = _exported_keys(view.device_filter("netdev"), list(s.netdev))
    # One column per counter, no pair per series: 8 x 1013 series move every sample on the bench tree.
    columns = dict(zip(net_dev.NetDevCounters._fields, zip(*[s.netdev[name] for name, in keys])))
    for field, doc in NETDEV:
        family = counter(f"link_{field}", doc, ["device"])
        family.samples = Columns(keys, columns.get(field, ()))
        yield family


COLLECTOR = Collector("netdev", 40, read, merge, render, files=(net_dev.SOURCE,),
                      exports_devices="lxcwatch_link_* counters (/proc/net/dev)")
