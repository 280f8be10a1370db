"""Parser for /proc/interrupts: hard IRQ counts per online CPU, with chip and action names."""

import re
from collections.abc import Collection
from dataclasses import dataclass

from lxcwatch.errors import ParseError

SOURCE = "interrupts"

# The token that ends the chip part of a row: a flow handler ("5-edge", "PCI-MSIX-0000:00:03.0 1-edge",
# old "IR-PCI-MSI-edge") or the GENERIC_IRQ_SHOW_LEVEL trigger ("Edge", "Level") on arm64.
_FLOW = re.compile(r"(?:^|-)(?:edge|fasteoi|level|simple|percpu|percpu_devid|untracked|none|bad)$|^(?:Edge|Level)$")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class IrqRow:
    """One numbered IRQ. `counts` is None when the caller did not ask for this IRQ's counts."""

    irq: str
    counts: tuple[int, ...] | None  # 32-bit per CPU, in header order
    chip: str  # everything between the counts and the actions, e.g. "PCI-MSIX-0000:00:03.0 1-edge"
    actions: tuple[str, ...]  # one per handler; several on a shared IRQ


@dataclass(frozen=True, slots=True)
class Interrupts:
    cpus: tuple[int, ...]  # online CPUs, the columns of every row
    rows: dict[str, IrqRow]  # numbered IRQs only; NMI, LOC, ERR... are skipped


def parse(text: str, wanted: Collection[str] | None = None) -> Interrupts:
    """Parse /proc/interrupts. Counts are converted only for IRQs in `wanted` (all when None):
    a 256-CPU host prints ~2.8 KB per row, and only the NIC rows matter."""
    lines = text.splitlines()
    if not lines:
        raise ParseError(SOURCE, "empty file")
    header = lines[0].split()
    if not header or not all(tok.startswith("CPU") for tok in header):
        raise ParseError(SOURCE, f"bad CPU header {lines[0].strip()[:60]!r}", 1)
    cpus = tuple(int(tok[3:]) for tok in header)
    n = len(cpus)
    rows = {}
    for number, line in enumerate(lines[1:], start=2):
        # aarch64 may print "13:1234" with no space after the colon: split on the colon.
        name, colon, rest = line.partition(":")
        irq = name.strip()
        if not colon:
            if line.strip():
                raise ParseError(SOURCE, f"no colon in {line.strip()[:60]!r}", number)
            continue
        if not irq.isdigit():
            continue  # NMI, LOC, ERR, MIS...: per-CPU system counters, not device IRQs
        tokens = list(_TOKEN.finditer(rest))
        if len(tokens) < n or not all(t.group().isdigit() for t in tokens[:n]):
            raise ParseError(SOURCE, f"IRQ {irq}: expected {n} per-CPU counts", number)
        counts = tuple(int(t.group()) for t in tokens[:n]) if wanted is None or irq in wanted else None
        tail = tokens[n:]
        flow = max((i for i, t in enumerate(tail) if _FLOW.search(t.group())), default=None)
        if flow is None:  # unknown chip format: take the last word as the action
            chip_end = len(tail) - 1
        else:
            chip_end = flow + 1
        chip = " ".join(t.group() for t in tail[:chip_end])
        action_text = rest[tail[chip_end].start():].strip() if chip_end < len(tail) else ""
        actions = tuple(a.strip() for a in action_text.split(", ")) if action_text else ()
        rows[irq] = IrqRow(irq, counts, chip, actions)
    return Interrupts(cpus, rows)
