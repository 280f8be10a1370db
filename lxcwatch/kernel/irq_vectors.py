"""Assigns /proc/interrupts rows to NICs by bus device, and tells data vectors from control vectors."""

import re
from dataclasses import dataclass

from lxcwatch.kernel.interrupts import Interrupts
from lxcwatch.kernel.nic import Nic

# Vectors that carry no packets: virtio "config", i40e/ice "misc", mlx5 "async", ena "mgmnt", "event", "link".
_CONTROL = re.compile(r"(?:^|[-_@:.])(?:config|misc|async|mgmnt|event|link|lsc)\d*(?:$|[-_@:.])", re.IGNORECASE)
_RX = re.compile(r"rx|input|comp", re.IGNORECASE)  # mlx5 "comp" vectors complete both directions
_TX = re.compile(r"tx|output|comp", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class NicIrq:
    device: str
    irq: str
    vector: str  # "rx", "tx", "txrx" (data, direction unknown or both) or "control"
    action: str  # the handler name, as the driver registered it (stale after a rename)


def _vector(nic: Nic, action: str, vectors: int) -> str:
    if _CONTROL.search(action):
        return "control"
    # igb/ixgbe name their link-state vector after the bare interface ("eth0") next to "eth0-TxRx-N";
    # a single-vector NIC (tg3 with MSI) also uses the bare name, and that vector carries the packets.
    if action == nic.name and vectors > 1:
        return "control"
    words = action.replace(nic.name, "")
    rx, tx = bool(_RX.search(words)), bool(_TX.search(words))
    return "rx" if rx and not tx else "tx" if tx and not rx else "txrx"


def _by_name(nic: Nic, interrupts: Interrupts) -> list[str]:
    """Last resort when the device tree gave nothing: action names that mention the NIC or its bus address."""
    name = re.compile(rf"(?:^|-){re.escape(nic.name)}(?:$|-)")
    found = []
    for irq, row in interrupts.rows.items():
        if any(name.search(a) or (nic.bus_info and nic.bus_info in a) for a in row.actions):
            found.append(irq)
    return found


def assign(nics: dict[str, Nic], interrupts: Interrupts) -> tuple[NicIrq, ...]:
    out = []
    for nic in sorted(nics.values(), key=lambda n: n.name):
        irqs = [i for i in nic.irqs if i in interrupts.rows] or _by_name(nic, interrupts)
        for irq in irqs:
            actions = interrupts.rows[irq].actions
            # A shared INTx line lists every handler; the NIC's own name is the one that describes it.
            action = next((a for a in actions if nic.name in a), actions[0] if actions else "")
            out.append(NicIrq(nic.name, irq, _vector(nic, action, len(irqs)), action))
    return tuple(out)
