"""Which interfaces are physical NICs, their bus device and their IRQs, found by device, not by name."""

import os
import threading

from lxcwatch.kernel.link import CLASS_NET
from lxcwatch.kernel.nic import Nic
from lxcwatch.sources.root import Root


def _bus_device(sysfs: Root, name: str) -> str | None:
    device = sysfs.realpath(CLASS_NET, name, "device")
    if device is None:
        return None
    # virtio_net hangs off a virtio bus device (".../0000:00:03.0/virtio2"); the IRQs live on its PCI parent.
    if os.path.basename(device).startswith("virtio"):
        device = os.path.dirname(device)
    return device


def _irqs(device: Root) -> tuple[str, ...]:
    msi = sorted(device.listdir("msi_irqs"), key=lambda s: int(s) if s.isdigit() else 0)
    if msi:
        return tuple(msi)
    intx = device.attr("irq")
    return (intx,) if intx and intx != "0" else ()


def find(sysfs: Root, names: list[str]) -> dict[str, Nic]:
    """Interfaces with a `device` link are physical; everything else (veth, bridge, vlan...) is virtual."""
    nics = {}
    for name in names:
        path = _bus_device(sysfs, name)
        if path is None:
            continue
        device = Root(path)
        driver = sysfs.link_name(CLASS_NET, name, "device", "driver") or device.link_name("driver") or ""
        nics[name] = Nic(name, os.path.basename(path), driver, _irqs(device))
    return nics


class NicDirectory:
    """Keeps `find()` current: it re-reads the device tree when the set of interfaces changes or a NIC's driver
    link does (a driver rebound to another driver; one readlink per NIC and call). Within one sample of the
    sampler (`new_sample`), the first call's reading serves every collector: on a big host each reading lists
    ~1000 links and readlinks every NIC's driver."""

    def __init__(self, sysfs: Root):
        self.sysfs = sysfs
        self._names: tuple[str, ...] = ()
        self.nics: dict[str, Nic] = {}
        self._sample = 0  # samples started; 0: no sampler, every call reads again
        self._read_in = -1  # the sample of the last reading
        self._lock = threading.Lock()  # collectors call at once from their workers: one reads, the others wait

    def new_sample(self) -> None:
        self._sample += 1

    def current(self, force: bool = False) -> dict[str, Nic]:
        with self._lock:
            sample = self._sample
            if not force and sample and self._read_in == sample:
                return self.nics
            names = tuple(sorted(self.sysfs.listdir(CLASS_NET)))
            if force or names != self._names or self._rebound():
                self.nics = find(self.sysfs, list(names))
                self._names = names
            self._read_in = sample
            return self.nics

    def names(self) -> tuple[str, ...]:
        """The interfaces in class/net, as listed for this sample's reading (`current`)."""
        self.current()
        return self._names

    def _rebound(self) -> bool:
        for nic in self.nics.values():
            driver = self.sysfs.link_name(CLASS_NET, nic.name, "device", "driver")
            if driver is not None and driver != nic.driver:
                return True
        return False
