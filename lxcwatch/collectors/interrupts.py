"""interrupts: the hard interrupts of each NIC's vectors, /proc/interrupts rows matched to the NICs' IRQs."""

import posixpath
from dataclasses import dataclass, field

from lxcwatch.collectors import Collector
from lxcwatch.core.counters import EMPTY, advance_rows
from lxcwatch.core.family import counter
from lxcwatch.kernel import interrupts
from lxcwatch.kernel.irq_vectors import NicIrq, assign


@dataclass(frozen=True, slots=True)
class Interrupts:
    cpus: tuple[int, ...]
    nic_irqs: tuple[NicIrq, ...]
    counts: dict[str, tuple[int, ...]]  # irq -> raw 32-bit count per CPU (in `cpus` order), NIC IRQs only
    hot: dict[str, int] = field(default_factory=dict)  # irq -> the column the parser saw change last (IrqRow.hot)


def read(s):
    text = s.procfs.read(interrupts.SOURCE)
    nics = s.nics.current()
    wanted = {irq for nic in nics.values() for irq in nic.irqs}
    parsed = interrupts.parse(text, wanted, s.interrupts, tails=False)
    if any(irq not in parsed.rows for irq in wanted):  # a driver reloaded: its vectors were renumbered
        nics = s.nics.current(force=True)
        wanted = {irq for nic in nics.values() for irq in nic.irqs}
        parsed = interrupts.parse(text, wanted, s.interrupts, tails=False)
    nic_irqs = _assign_cached(s, nics, parsed, text)
    if any(parsed.rows[i.irq].counts is None for i in nic_irqs):  # some were found by name only
        parsed = interrupts.parse(text, {i.irq for i in nic_irqs}, s.interrupts, tails=False)
    s.interrupts = parsed
    rows = parsed.rows
    return Interrupts(parsed.cpus, nic_irqs, {i.irq: rows[i.irq].counts for i in nic_irqs},
                      {i.irq: rows[i.irq].hot for i in nic_irqs if rows[i.irq].hot is not None})


def _assign_cached(s, nics, parsed, text: str) -> tuple:
    """assign() again only when the NICs or the text of their IRQ rows changed (a driver reload), on every row's
    tail (the other rows' actions name the vectors of a NIC without msi_irqs)."""
    key = (tuple(nics.values()), tuple(row.tail for row in parsed.rows.values() if row.counts is not None))
    if s.assigned is None or s.assigned[0] != key:
        s.assigned = (key, assign(nics, interrupts.parse(text, ())))
    return s.assigned[1]


def capture(c) -> None:
    """What NicDirectory (lxcwatch/sources/nics.py) reads of each NIC's bus device: IRQs (msi_irqs/, irq) and
    driver (its link, the driver's back link, the module's version); for virtio_net, of the PCI parent too."""
    for _, base in c.interfaces():
        device = c.device(base)
        if device is None:
            continue
        _capture_device(c.sys, device)
        if posixpath.basename(device).startswith("virtio"):
            _capture_device(c.sys, posixpath.dirname(device))


def _capture_device(sysfs, device: str) -> None:
    sysfs.file(f"{device}/irq")
    for irq in sysfs.listdir(f"{device}/msi_irqs"):
        sysfs.file(f"{device}/msi_irqs/{irq}")
    driver = sysfs.link(f"{device}/driver")
    if driver is None:
        return
    sysfs.link(f"{driver}/{posixpath.basename(device)}")
    module = sysfs.link(f"{driver}/module") or f"module/{posixpath.basename(driver).replace('-', '_')}"
    sysfs.file(f"{module}/version")


def merge(prev, reading: Interrupts | None) -> dict:
    """irqs: irq -> total over CPUs, widened from 32 bits per CPU; the raw rows are kept for the next sample, and
    irq_hot, where each row changed last: a hint for core/rates.py, never a count."""
    p = prev.fields if prev else {"irqs": EMPTY, "irq_cpus": (), "irq_rows": {}}
    if reading is None:
        return {"nic_irqs": (), "irqs": p["irqs"], "irq_cpus": p["irq_cpus"], "irq_rows": p["irq_rows"], "irq_hot": {}}
    irqs = advance_rows(p["irqs"], p["irq_cpus"], p["irq_rows"], reading.cpus, reading.counts)
    return {"nic_irqs": reading.nic_irqs, "irq_cpus": reading.cpus, "irq_rows": reading.counts, "irqs": irqs,
            "irq_hot": reading.hot}


def render(s, view):
    family = counter("nic_interrupts", "Hard interrupts of a NIC's vector (rx, tx, txrx or control), summed over CPUs.",
                     ["device", "irq", "vector"])
    for i in s.nic_irqs:
        family.add([i.device, i.irq, i.vector], s.irqs.total.get(i.irq, 0))
    yield family


COLLECTOR = Collector("interrupts", 30, read, merge, render, files=(interrupts.SOURCE,), capture=capture)
