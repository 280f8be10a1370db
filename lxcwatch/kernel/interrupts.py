"""Parser for /proc/interrupts: hard IRQ counts per online CPU, with chip and action names."""

import re
from collections.abc import Collection
from dataclasses import dataclass
from itertools import compress
from operator import ne
from typing import NamedTuple

from lxcwatch.errors import ParseError

SOURCE = "interrupts"

# The token that ends the chip part of a row: a flow handler ("5-edge", "PCI-MSIX-0000:00:03.0 1-edge",
# old "IR-PCI-MSI-edge") or the GENERIC_IRQ_SHOW_LEVEL trigger ("Edge", "Level") on arm64.
_FLOW = re.compile(r"(?:^|-)(?:edge|fasteoi|level|simple|percpu|percpu_devid|untracked|none|bad)$|^(?:Edge|Level)$")
_TOKEN = re.compile(r"\S+")
_CPU = re.compile(r"CPU[0-9]+")


class IrqRow(NamedTuple):
    """One numbered IRQ. `counts` is None when the caller did not ask for this IRQ's counts. A NamedTuple, as
    net_dev.NetDevCounters: one per row per sample."""

    irq: str
    counts: tuple[int, ...] | None  # 32-bit per CPU, in header order
    tail: str  # the text after the counts: chip, hwirq, flow, then the actions
    columns: tuple[str, ...] = ()  # the counts as printed, where converted: the next parse compares with them

    @property
    def chip(self) -> str:
        """Everything between the counts and the actions, e.g. "PCI-MSIX-0000:00:03.0 1-edge"."""
        return " ".join(t.group() for t in _split_tail(self.tail)[0])

    @property
    def actions(self) -> tuple[str, ...]:
        """One name per handler; a shared IRQ lists several, separated by ", "."""
        return _split_tail(self.tail)[1]


def _split_tail(tail: str):
    tokens = list(_TOKEN.finditer(tail))
    flow = max((i for i, t in enumerate(tokens) if _FLOW.search(t.group())), default=None)
    chip_end = len(tokens) - 1 if flow is None else flow + 1  # unknown chip format: last word is the action
    text = tail[tokens[chip_end].start():].strip() if chip_end < len(tokens) else ""
    return tokens[:chip_end], tuple(a.strip() for a in text.split(", ")) if text else ()


@dataclass(frozen=True, slots=True)
class Interrupts:
    cpus: tuple[int, ...]  # online CPUs, the columns of every row
    rows: dict[str, IrqRow]  # numbered IRQs only; NMI, LOC, ERR... are skipped


def parse(text: str, wanted: Collection[str] | None = None, before: Interrupts | None = None) -> Interrupts:
    """Parse /proc/interrupts. Counts are converted only for IRQs in `wanted` (all when None): a 256-CPU host
    prints ~2.8 KB per row, and only the NIC rows matter. `before`: the last reading, whose counts are taken for
    the columns whose text did not change."""
    lines = text.splitlines()
    if not lines:
        raise ParseError(SOURCE, "empty file")
    header = lines[0].split()
    if not header or not all(_CPU.fullmatch(tok) for tok in header):
        raise ParseError(SOURCE, f"bad CPU header {lines[0].strip()[:60]!r}", 1)
    cpus = tuple(int(tok[3:]) for tok in header)
    n = len(cpus)
    old = before.rows if before and before.cpus == cpus else {}  # a CPU on- or offline moves the columns
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
        parts = rest.split(None, n)
        if len(parts) < n:
            raise ParseError(SOURCE, f"IRQ {irq}: expected {n} per-CPU counts, found {len(parts)}", number)
        tail = parts[n] if len(parts) > n else ""
        if wanted is None or irq in wanted:
            columns = tuple(parts[:n])
            try:
                rows[irq] = IrqRow(irq, _counts(columns, old.get(irq)), tail, columns)
            except ValueError:
                raise ParseError(SOURCE, f"IRQ {irq}: expected {n} per-CPU counts", number) from None
        else:
            rows[irq] = IrqRow(irq, None, tail)
    return Interrupts(cpus, rows)


def _counts(columns: tuple[str, ...], old: IrqRow | None) -> tuple[int, ...]:
    """The per-CPU counts of a row, converting only the columns whose text changed since `old`: an IRQ is delivered
    to one CPU at a time (its effective affinity), so a busy NIC queue's row on a 128-CPU host changes in one or two
    columns a second, and most of the time in none."""
    if old is None or not old.columns:
        counts = tuple(map(int, columns))
        if counts and min(counts) < 0:  # int() takes a sign; the kernel prints unsigned counts
            raise ValueError
        return counts
    changed = list(compress(range(len(columns)), map(ne, columns, old.columns)))
    if not changed:
        return old.counts
    counts = list(old.counts)
    for i in changed:
        counts[i] = int(columns[i])
        if counts[i] < 0:
            raise ValueError
    return tuple(counts)
