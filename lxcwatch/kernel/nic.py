"""A physical NIC: an interface with a bus device, its driver and its IRQ vectors (sysfs, lxcwatch/sources/nics.py)."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Nic:
    name: str
    bus_info: str  # PCI address ("0000:3b:00.0"), as `ethtool -i` prints it
    driver: str  # from the device's driver link
    irqs: tuple[str, ...]  # MSI/MSI-X vectors of the bus device, else its INTx line
