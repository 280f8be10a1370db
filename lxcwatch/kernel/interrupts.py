"""Parser for /proc/interrupts: hard IRQ counts per online CPU, with chip and action names."""

import re
from collections.abc import Collection
from dataclasses import dataclass
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
    printed: str = ""  # the text after the colon, where the counts stand in the kernel's columns: the next parse compares
    hot: int | None = None  # the column that changed last: an IRQ is delivered to one CPU at a time (its effective affinity)

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


# kernel/irq/proc.c prints each count as " %10u" (seq_put_decimal_ull_width(p, " ", n, 10); older kernels "%10u "
# after "N: "): a 32-bit count always fits, so a row's counts stand in columns of 11 characters.
COLUMN = 11
_COLUMNS = re.compile(r"(?: [ 0-9]{9}[0-9])*")


def parse(text: str, wanted: Collection[str] | None = None, before: Interrupts | None = None,
          tails: bool = True) -> Interrupts:
    """Parse /proc/interrupts. Counts are converted only for IRQs in `wanted` (all when None): a 256-CPU host
    prints ~2.8 KB per row, and only the NIC rows matter. `before`: the last reading, whose counts are taken for
    the columns whose text did not change. Without `tails`, the other rows' tails are left empty (not split)."""
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
        if not tails and wanted is not None and irq not in wanted:
            rows[irq] = IrqRow(irq, None, "")
            continue
        last = old.get(irq)
        if (wanted is None or irq in wanted) and last is not None and last.printed:
            if (row := _update(irq, rest, last, n)) is not None:
                rows[irq] = row
                continue
        parts = rest.split(None, n)
        if len(parts) < n:
            raise ParseError(SOURCE, f"IRQ {irq}: expected {n} per-CPU counts, found {len(parts)}", number)
        tail = parts[n] if len(parts) > n else ""
        if wanted is None or irq in wanted:
            try:
                counts = tuple(map(int, parts[:n]))
                if counts and min(counts) < 0:  # int() takes a sign; the kernel prints unsigned counts
                    raise ValueError
            except ValueError:
                raise ParseError(SOURCE, f"IRQ {irq}: expected {n} per-CPU counts", number) from None
            rows[irq] = IrqRow(irq, counts, tail, rest if _in_columns(rest, parts, n) else "")
        else:
            rows[irq] = IrqRow(irq, None, tail)
    return Interrupts(cpus, rows)


def _in_columns(rest: str, parts: list[str], n: int) -> bool:
    """Each column starts with a space and ends in a digit, and the columns hold the row's first n tokens: one
    token per column, ending where the column does."""
    region = rest[:COLUMN * n]
    return _COLUMNS.fullmatch(region) is not None and region.split() == parts[:n]


def _update(irq: str, rest: str, last: IrqRow, n: int) -> IrqRow | None:
    """The row converting only the columns whose text changed since `last`: a busy NIC queue's row on a 128-CPU
    host changes in one column a second, and an idle one in none. None when the text is not laid out as last
    time, or too much changed: then the caller parses the row from scratch."""
    before = last.printed
    if rest == before:
        return last
    end = COLUMN * n
    if len(rest) != len(before) or rest[end:] != before[end:]:
        return None
    hot = None if last.hot is None else last.hot * COLUMN
    if hot is not None and rest[:hot] == before[:hot] and rest[hot + COLUMN:end] == before[hot + COLUMN:end]:
        changed = [last.hot]
    elif (changed := _changed_columns(rest, before, n)) is None:
        return None
    counts = list(last.counts)
    for i in changed:
        column = rest[i * COLUMN:(i + 1) * COLUMN]
        if column[0] != " " or not column[-1].isdecimal() or not column.strip().isdecimal():
            return None  # not a count in its column: the caller's parse from scratch says what it is
        counts[i] = int(column)
    return IrqRow(irq, tuple(counts), last.tail, rest, changed[-1])


def _changed_columns(a: str, b: str, n: int, most: int = 8) -> list[int] | None:
    """The columns in which a and b differ, by halving the range; None past `most` of them."""
    found, ranges = [], [(0, n)]
    while ranges:
        lo, hi = ranges.pop()
        if a[lo * COLUMN:hi * COLUMN] == b[lo * COLUMN:hi * COLUMN]:
            continue
        if hi - lo > 1:
            mid = (lo + hi) // 2
            ranges += ((mid, hi), (lo, mid))
        elif len(found) == most:
            return None
        else:
            found.append(lo)
    return found
