"""Table-driven tests of the pure /proc parsers on the fixture host trees; expected values copied by hand."""

import os
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lxcwatch.kernel import cpu_list, interrupts, locks, net_dev, proc_stat, softirqs, softnet_stat
from lxcwatch.errors import ParseError
from lxcwatch.kernel.net_dev import NetDevCounters
from lxcwatch.kernel.softnet_stat import SoftnetRow
from tests.support.paths import HOSTS

HOST_NAMES = ("tg3-pair", "mlx5-256", "arm64-igb", "virtio-live")
MLX5_ONLINE = tuple(c for c in range(256) if c not in (3, 200))  # CPUs 3 and 200 are offline


def proc(host: str, rel: str) -> str:
    return (HOSTS / host / "proc" / rel).read_text()


def irq_row(irq, counts, chip, actions):
    """An expected /proc/interrupts row; compared through the public attributes only."""
    return (irq, counts, chip, actions)


def seen(parsed_row) -> tuple:
    return (parsed_row.irq, parsed_row.counts, parsed_row.chip, parsed_row.actions)


def row(cpu, processed, dropped, squeeze, collision, rps=None, flow=None, backlog=None, inq=None, procq=None):
    """A SoftnetRow in column order; trailing columns default to "this kernel has none"."""
    return SoftnetRow(cpu, processed, dropped, squeeze, collision, rps, flow, backlog, inq, procq)


# ---------------------------------------------------------------- softnet_stat

SOFTNET_HOSTS = [
    pytest.param("tg3-pair", tuple(range(16)), {
        0: row(0, 0x3103A002, 0, 0xF, 2, 0),
        2: row(2, 0xE106D2B0, 0x2A02, 0x1B0FF, 1, 0),
        8: row(8, 0x3100708B, 0, 0x17, 1, 0),
    }, id="tg3-pair-10-columns"),
    pytest.param("mlx5-256", MLX5_ONLINE, {
        0: row(0, 0xFFFF3784, 0, 0x35E1, 0, 0, 0, 0, 0, 0),
        3: row(4, 0xFFFF9DDE, 0, 0x3C9B, 0, 0, 0, 5, 1, 4),
        198: row(199, 0x0059144A, 0, 0, 0, 0, 0, 0, 0, 0),
        199: row(201, 0x005CA75C, 0, 0, 0, 0, 0, 0, 0, 0),
        253: row(255, 0x00BE9872, 0, 0, 0, 0, 0, 0, 0, 0),
    }, id="mlx5-256-15-columns-offline-cpus"),
    pytest.param("arm64-igb", tuple(range(8)), {
        0: row(0, 0x2F060AAE, 0, 0x120, 0, 0, 0, 0),
        1: row(1, 0x0010C2DC, 0, 0, 0, 0, 0, 1),
        7: row(7, 0x00105F4C, 0, 0, 0, 0, 0, 1),
    }, id="arm64-igb-13-columns"),
    pytest.param("virtio-live", (0, 1), {
        0: row(0, 0x42D5, 0, 0, 0, 0, 0, 0, 0, 0),
        1: row(1, 0x4CBF, 0, 0, 0, 0, 0, 0, 0, 0),
    }, id="virtio-live-15-columns"),
]


@pytest.mark.parametrize(("host", "cpus", "rows"), SOFTNET_HOSTS)
def test_softnet_fixture(host, cpus, rows):
    parsed = softnet_stat.parse(proc(host, "net/softnet_stat"))
    assert tuple(r.cpu for r in parsed) == cpus
    for index, expected in rows.items():
        assert parsed[index] == expected


Z = "00000000"
SOFTNET_VARIANTS = [
    pytest.param(
        f"0000a000 00000001 00000002 {Z} {Z} {Z} {Z} {Z} 00000003\n"
        f"ffffffff {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z}\n",
        [row(0, 0xA000, 1, 2, 3), row(1, 0xFFFFFFFF, 0, 0, 0)],
        id="9-columns-2.6.2x",
    ),
    pytest.param(
        f"0000a000 00000001 00000002 {Z} {Z} {Z} {Z} {Z} 00000003 00000004\n"
        f"0000b000 {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} 0000000a\n",
        [row(0, 0xA000, 1, 2, 3, 4), row(1, 0xB000, 0, 0, 0, 10)],
        id="10-columns-rhel6",
    ),
    pytest.param(
        f"0000a000 00000001 00000002 {Z} {Z} {Z} {Z} {Z} 00000003 00000004 00000005\n",
        [row(0, 0xA000, 1, 2, 3, 4, 5)],
        id="11-columns-3.11",
    ),
    pytest.param(  # CPU 1 offline: the second row is CPU 2
        f"0000a000 00000001 00000002 {Z} {Z} {Z} {Z} {Z} 00000003 00000004 00000005 00000006 {Z}\n"
        f"0000b000 {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} 00000002\n",
        [row(0, 0xA000, 1, 2, 3, 4, 5, 6), row(2, 0xB000, 0, 0, 0, 0, 0, 0)],
        id="13-columns-5.10-index-skips-offline",
    ),
    pytest.param(  # CPUs 1..9 offline; the index column is hex
        f"0000a000 00000001 00000002 {Z} {Z} {Z} {Z} {Z} 00000003 00000004 00000005 00000007 {Z} 00000003 00000004\n"
        f"0000b000 {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} {Z} 0000000a {Z} {Z}\n",
        [row(0, 0xA000, 1, 2, 3, 4, 5, 7, 3, 4), row(10, 0xB000, 0, 0, 0, 0, 0, 0, 0, 0)],
        id="15-columns-6.4-hex-index",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SOFTNET_VARIANTS)
def test_softnet_column_variants(text, expected):
    assert list(softnet_stat.parse(text)) == expected


# ---------------------------------------------------------------- interrupts

TG3_ROWS = {
    "16": irq_row("16", (22, 0, 0, 0, 6, 120083, 0, 0, 12, 0, 0, 0, 40, 0, 0, 0), "IO-APIC-fasteoi",
                 ("ehci_hcd:usb1", "uhci_hcd:usb3")),
    "64": irq_row("64", (88, 0, 0, 0, 72, 0, 0, 0, 78, 0, 0, 0, 9, 0, 0, 0), "DMAR_MSI-edge", ("dmar0",)),
    "71": irq_row("71", (950000938, 37, 0, 0, 0, 75, 0, 0, 0, 38, 0, 0, 0, 23, 0, 0), "IR-PCI-MSI-edge",
                 ("eth0-txrx-0",)),
    "72": irq_row("72", (2, 1900000956, 0, 0, 83, 0, 0, 0, 89, 0, 0, 0, 20, 0, 0, 0), "IR-PCI-MSI-edge",
                 ("eth0-rx-1",)),
    "80": irq_row("80", (13, 0, 0, 0, 94, 0, 0, 0, 3, 0, 0, 0, 210000432, 0, 0, 0), "IR-PCI-MSI-edge",
                 ("eth1-rx-4",)),
}
ARM64_ROWS = {
    "11": irq_row("11", (4012345678, 3601234567, 3190123456, 2779012345, 2367901234, 1956790123, 1545679012,
                        1134567901), "GICv3 30 Level", ("arch_timer",)),
    "12": irq_row("12", (65, 0, 0, 0, 49, 0, 0, 0), "GICv3 26 Level", ("kvm guest ptimer",)),
    "45": irq_row("45", (3457215, 0, 0, 66, 0, 0, 0, 18), "GICv3 176 Level", ("ehci_hcd:usb1", "eth1")),
    "49": irq_row("49", (210, 0, 0, 23, 0, 0, 0, 72), "ITS-MSI 1048576 Edge", ("eth0",)),
    "50": irq_row("50", (800000141, 0, 58, 0, 0, 0, 53, 0), "ITS-MSI 1048577 Edge", ("eth0-TxRx-0",)),
}
VIRTIO_ROWS = {
    "24": irq_row("24", (1, 0), "IO-APIC 5-edge", ("ACPI:Ged",)),
    "37": irq_row("37", (0, 0), "PCI-MSIX-0000:00:03.0 0-edge", ("virtio2-config",)),
    "38": irq_row("38", (0, 910), "PCI-MSIX-0000:00:03.0 1-edge", ("virtio2-input.0",)),
    "39": irq_row("39", (857, 0), "PCI-MSIX-0000:00:03.0 2-edge", ("virtio2-output.0",)),
}
INTERRUPTS_HOSTS = [
    pytest.param("tg3-pair", tuple(range(16)), {"0", "1", "8", "9", "16", "64", "66", *map(str, range(71, 81))},
                 TG3_ROWS, {}, id="tg3-pair-old-chip-format"),
    pytest.param("mlx5-256", MLX5_ONLINE, {"0", "8", "9", "24", "25", "40", *map(str, range(812, 829))}, {}, {
        # (irq, cpu): (count, chip, actions); comp3 is affine to CPU4 because CPU3 is offline
        ("812", 0): (8387, "PCI-MSIX-0000:3b:00.0 0-edge", ("mlx5_async0@pci:0000:3b:00.0",)),
        ("816", 4): (300000022, "PCI-MSIX-0000:3b:00.0 4-edge", ("mlx5_comp3@pci:0000:3b:00.0",)),
        ("816", 2): (0, "PCI-MSIX-0000:3b:00.0 4-edge", ("mlx5_comp3@pci:0000:3b:00.0",)),
        ("828", 4): (7, "PCI-MSIX-0000:3b:00.0 16-edge", ("mlx5_comp15@pci:0000:3b:00.0",)),
    }, id="mlx5-256-new-chip-format-offline-cpus"),
    pytest.param("arm64-igb", tuple(range(8)), {"10", "11", "12", "13", "14", "16", "45", "46", "49", "50", "51",
                                                "52", "53"}, ARM64_ROWS, {}, id="arm64-igb-gic-its"),
    pytest.param("virtio-live", (0, 1), {str(n) for n in range(24, 44) if n != 27}, VIRTIO_ROWS, {},
                 id="virtio-live"),
]


@pytest.mark.parametrize(("host", "cpus", "irqs", "rows", "cells"), INTERRUPTS_HOSTS)
def test_interrupts_fixture(host, cpus, irqs, rows, cells):
    parsed = interrupts.parse(proc(host, "interrupts"))
    assert parsed.cpus == cpus
    assert set(parsed.rows) == irqs  # NMI, LOC, ERR, MIS, IPI0, Err... are not device IRQs
    for irq, expected in rows.items():
        assert seen(parsed.rows[irq]) == expected
    for (irq, cpu), (count, chip, actions) in cells.items():
        got = parsed.rows[irq]
        assert (got.counts[cpus.index(cpu)], got.chip, got.actions) == (count, chip, actions)
        assert len(got.counts) == len(cpus)


HEADER2 = "           CPU0       CPU1       \n"
INTERRUPTS_ROWS = [
    pytest.param(" 72:          2 1900000956  IR-PCI-MSI-edge      eth0-rx-1",
                 irq_row("72", (2, 1900000956), "IR-PCI-MSI-edge", ("eth0-rx-1",)), id="old-3.0-ir-pci-msi"),
    pytest.param("  0:        140          0   IO-APIC-edge      timer",
                 irq_row("0", (140, 0), "IO-APIC-edge", ("timer",)), id="old-3.0-io-apic"),
    pytest.param(" 38:          0        910 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0",
                 irq_row("38", (0, 910), "PCI-MSIX-0000:00:03.0 1-edge", ("virtio2-input.0",)), id="new-pci-msix"),
    pytest.param(" 45:         12          0  IO-APIC  16-fasteoi   ehci_hcd:usb1, eth1",
                 irq_row("45", (12, 0), "IO-APIC 16-fasteoi", ("ehci_hcd:usb1", "eth1")), id="new-shared-intx"),
    pytest.param(" 45:    3457215          0     GICv3 176 Level     ehci_hcd:usb1, eth1",
                 irq_row("45", (3457215, 0), "GICv3 176 Level", ("ehci_hcd:usb1", "eth1")), id="arm64-gic-shared"),
    pytest.param(" 50:  800000141          0   ITS-MSI 1048577 Edge      eth0-TxRx-0",
                 irq_row("50", (800000141, 0), "ITS-MSI 1048577 Edge", ("eth0-TxRx-0",)), id="arm64-its-msi"),
    pytest.param(" 12:         65          0     GICv3  26 Level     kvm guest ptimer",
                 irq_row("12", (65, 0), "GICv3 26 Level", ("kvm guest ptimer",)), id="action-with-spaces"),
    pytest.param("13:1234567890 3601234567     GICv3  30 Level     arch_timer",
                 irq_row("13", (1234567890, 3601234567), "GICv3 30 Level", ("arch_timer",)),
                 id="aarch64-no-space-after-colon"),
]


@pytest.mark.parametrize(("line", "expected"), INTERRUPTS_ROWS)
def test_interrupts_row_formats(line, expected):
    parsed = interrupts.parse(HEADER2 + line + "\n")
    assert [seen(r) for r in parsed.rows.values()] == [expected]


def interrupts_text(cpus: list[int], rows: dict[str, list[int]]) -> str:
    """/proc/interrupts as kernel/irq/proc.c prints it: a column of width 10 per online CPU."""
    header = "     " + "".join(f"CPU{c:<8d}" for c in cpus) + "\n"
    return header + "".join(f"{irq:>3s}: " + "".join(f"{n:10d} " for n in counts) + " PCI-MSIX-0000:18:00.0 "
                            f"{irq}-edge eth0-TxRx-{irq}\n" for irq, counts in rows.items())


COUNT = st.integers(0, 2**32 - 1)


def rows_of(parsed) -> dict:
    return {irq: (r.counts, r.tail) for irq, r in parsed.rows.items()}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_interrupts_given_the_last_readings_parses_as_without_them(data):
    """The counts taken over from earlier readings for unchanged columns (found by the column that changed last,
    by halving, or past 8 changes from scratch) are those a parse from scratch finds."""
    n = data.draw(st.integers(1, 24))
    irqs = ["40", "41", "42"]
    readings = [{irq: data.draw(st.lists(COUNT, min_size=n, max_size=n)) for irq in irqs}]
    for _ in range(2):
        readings.append({irq: [data.draw(st.sampled_from([c, c, c, c + 1, 0, 2**32 - 1])) for c in counts]
                         for irq, counts in readings[-1].items()})
    wanted = set(data.draw(st.lists(st.sampled_from(irqs))))
    before = interrupts.parse(interrupts_text(list(range(n)), readings[0]), wanted=set(data.draw(st.lists(st.sampled_from(irqs)))))
    for counts in readings[1:]:
        text = interrupts_text(list(range(n)), counts)
        before = interrupts.parse(text, wanted, before)
        assert rows_of(before) == rows_of(interrupts.parse(text, wanted))
        for irq in wanted:
            assert before.rows[irq].counts == tuple(counts[irq])


def test_interrupts_counts_out_of_their_columns_parse_from_scratch():
    """Text whose counts do not stand in the kernel's 11-character columns (a hand-written fixture) is never
    compared column by column: the counts are the tokens."""
    before = interrupts.parse("CPU0 CPU1 CPU2\n40: 5 7 9 PCI-MSI 1-edge eth0\n")
    assert before.rows["40"].printed == ""
    text = "CPU0 CPU1 CPU2\n40: 5 8 9 PCI-MSI 1-edge eth0\n"
    assert interrupts.parse(text, before=before).rows["40"].counts == (5, 8, 9)
    aligned = interrupts.parse(interrupts_text([0, 1, 2], {"40": [5, 7, 9]}))
    assert aligned.rows["40"].printed  # the kernel's layout: compared column by column next time
    shifted = interrupts_text([0, 1, 2], {"40": [5, 7, 9]}).replace("         5          7", "5 7                  ")
    assert interrupts.parse(shifted, before=aligned).rows["40"].counts == (5, 7, 9)


def test_interrupts_last_reading_of_other_cpus_is_not_used():
    """CPU 1 went offline: the columns are those of CPUs 0 and 2 now, the old second column was CPU 1's."""
    before = interrupts.parse(interrupts_text([0, 1, 2], {"40": [5, 7, 9]}))
    assert interrupts.parse(interrupts_text([0, 2], {"40": [5, 7]}), before=before).rows["40"].counts == (5, 7)


def test_interrupts_a_changed_column_is_checked_as_from_scratch():
    before = interrupts.parse(interrupts_text([0, 1], {"40": [5, 7]}))
    text = interrupts_text([0, 1], {"40": [5, 7]}).replace("         7", "        -8")
    with pytest.raises(ParseError, match="IRQ 40: expected 2 per-CPU counts"):
        interrupts.parse(text, before=before)


SPECIAL_ROWS = [
    pytest.param("NMI:          0          0   Non-maskable interrupts\n"
                 "LOC:     245489     350249   Local timer interrupts\n", id="x86-per-cpu"),
    pytest.param("ERR:          0\nMIS:          0\n", id="x86-err-mis-single-number"),
    pytest.param(" ERR:          0\n PIN:          0          0   Posted-interrupt notification event\n", id="prec-4"),
    pytest.param("IPI0:3012456789     500710       Rescheduling interrupts\n"
                 "IPI1:      1234       5678       Function call interrupts\nErr:          0\n",
                 id="arm64-ipi-no-space"),
]


@pytest.mark.parametrize("rows", SPECIAL_ROWS)
def test_interrupts_special_rows_skipped(rows):
    text = HEADER2 + " 38:          0        910 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n" + rows
    assert list(interrupts.parse(text).rows) == ["38"]


def test_interrupts_wanted_leaves_other_counts_none():
    parsed = interrupts.parse(proc("tg3-pair", "interrupts"), wanted={"72", "80"})
    assert seen(parsed.rows["72"]) == TG3_ROWS["72"]
    assert seen(parsed.rows["80"]) == TG3_ROWS["80"]
    assert seen(parsed.rows["71"]) == irq_row("71", None, "IR-PCI-MSI-edge", ("eth0-txrx-0",))
    assert parsed.rows["16"].actions == ("ehci_hcd:usb1", "uhci_hcd:usb3")
    assert [irq for irq, r in parsed.rows.items() if r.counts is not None] == ["72", "80"]


# ---------------------------------------------------------------- softirqs

SOFTIRQS_3_0 = ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "BLOCK_IOPOLL", "TASKLET", "SCHED", "HRTIMER", "RCU"]
SOFTIRQS_NEW = ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"]
SOFTIRQS_HOSTS = [
    pytest.param("tg3-pair", SOFTIRQS_3_0, tuple(range(16)), {
        ("NET_RX", 1): 901000003, ("NET_RX", 15): 1815480, ("BLOCK_IOPOLL", 0): 165}, id="tg3-pair-3.0-vectors"),
    pytest.param("mlx5-256", SOFTIRQS_NEW, tuple(range(256)), {  # possible CPUs, offline ones included
        ("NET_RX", 0): 1500000000, ("NET_RX", 3): 852958, ("NET_RX", 200): 0, ("NET_RX", 255): 2260162,
        ("NET_TX", 2): 363912, ("NET_TX", 200): 0}, id="mlx5-256-possible-cpus"),
    pytest.param("arm64-igb", SOFTIRQS_NEW, tuple(range(8)), {
        ("NET_RX", 0): 300000000, ("NET_RX", 1): 500710, ("TIMER", 7): 1138491}, id="arm64-igb"),
    pytest.param("virtio-live", SOFTIRQS_NEW, (0, 1), {
        ("NET_RX", 0): 17399, ("NET_RX", 1): 18632, ("NET_TX", 0): 10, ("NET_TX", 1): 0}, id="virtio-live"),
]


@pytest.mark.parametrize(("host", "vectors", "cpus", "cells"), SOFTIRQS_HOSTS)
def test_softirqs_fixture(host, vectors, cpus, cells):
    parsed = softirqs.parse(proc(host, "softirqs"))
    assert list(parsed) == vectors
    assert all(tuple(per_cpu) == cpus for per_cpu in parsed.values())
    for (vector, cpu), count in cells.items():
        assert parsed[vector][cpu] == count


@pytest.mark.parametrize(("host", "vectors", "cpus", "cells"), SOFTIRQS_HOSTS)
def test_softirqs_wanted_vectors_only(host, vectors, cpus, cells):
    """The agent converts the two rows it exports; the others (a TIMER row the kernel changed) are not read."""
    text = proc(host, "softirqs").replace("TIMER:", "TIMER: x", 1)
    parsed = softirqs.parse(text, ("NET_RX", "NET_TX"))
    assert list(parsed) == ["NET_TX", "NET_RX"]
    assert parsed == {v: per_cpu for v, per_cpu in softirqs.parse(proc(host, "softirqs")).items() if v in parsed}


# ---------------------------------------------------------------- stat

STAT_HOSTS = [
    pytest.param("tg3-pair", tuple(range(16)), {0: 21000, 3: 4100003, 15: 21255}, id="tg3-pair"),
    pytest.param("mlx5-256", MLX5_ONLINE, {0: 3200000, 4: 3200004, 199: 9199, 201: 9201, 255: 9255},
                 id="mlx5-256-online-only"),
    pytest.param("arm64-igb", tuple(range(8)), {0: 1700000, 3: 4003, 7: 4007}, id="arm64-igb"),
    pytest.param("virtio-live", (0, 1), {0: 24, 1: 93}, id="virtio-live"),
]


@pytest.mark.parametrize(("host", "cpus", "ticks"), STAT_HOSTS)
def test_stat_fixture(host, cpus, ticks):
    parsed = proc_stat.parse_softirq_ticks(proc(host, "stat"))
    assert tuple(parsed) == cpus
    for cpu, value in ticks.items():
        assert parsed[cpu] == value


# ---------------------------------------------------------------- net/dev

NET_DEV_HOSTS = [
    pytest.param("tg3-pair", ["lo", "eth0", "eth1", "br0", "eth0.100", "vethA", "vethB", "vethC"], {
        "eth0": NetDevCounters(918273645546, 1523456789, 0, 48213, 123456789012, 456789012, 0, 0),
        "eth0.100": NetDevCounters(1234567890, 2345678, 0, 0, 987654321, 1234567, 0, 0),
        "vethA": NetDevCounters(4567890123, 7654321, 0, 0, 45678901234, 65432109, 0, 3321),
        "vethC": NetDevCounters(2345678, 34567, 0, 0, 3456789, 45678, 0, 0),
    }, id="tg3-pair-names-touching-colon"),
    pytest.param("mlx5-256", ["lo", "ens1f0np0"], {
        "ens1f0np0": NetDevCounters(98765432109876, 87654321098, 0, 1234, 12345678901234, 9876543210, 0, 0),
    }, id="mlx5-256"),
    pytest.param("arm64-igb", ["lo", "eth0", "eth1"], {
        "eth1": NetDevCounters(456789012, 3456789, 2, 0, 56789012, 456789, 0, 0),
    }, id="arm64-igb"),
    pytest.param("virtio-live", ["lo", "ifb0", "ifb1", "eth0"], {
        "lo": NetDevCounters(88525695, 35387, 0, 0, 88525695, 35387, 0, 0),
        "eth0": NetDevCounters(37606112, 1273, 0, 0, 123470, 1047, 0, 0),
    }, id="virtio-live"),
]


@pytest.mark.parametrize(("host", "names", "links"), NET_DEV_HOSTS)
def test_net_dev_fixture(host, names, links):
    parsed = net_dev.parse(proc(host, "net/dev"))
    assert list(parsed) == names
    for name, expected in links.items():
        assert parsed[name] == expected


# ---------------------------------------------------------------- broken fixtures

BROKEN = [
    pytest.param("softnet-truncated", softnet_stat.parse, "net/softnet_stat", 8, "expected at least 9 columns"),
    pytest.param("softnet-8-columns", softnet_stat.parse, "net/softnet_stat", 1, "found 8"),
    pytest.param("softnet-not-hex", softnet_stat.parse, "net/softnet_stat", 2, "not a hexadecimal field"),
    pytest.param("interrupts-short-row", interrupts.parse, "interrupts", 14, "IRQ 53: expected 8 per-CPU counts"),
    pytest.param("softirqs-no-net-rx", softirqs.parse, "softirqs", None, "no NET_RX row"),  # no line to name
    pytest.param("netdev-15-counters", net_dev.parse, "net/dev", 4, "eth0: expected 16 counters, found 15"),
    pytest.param("stat-short-cpu", proc_stat.parse_softirq_ticks, "stat", 5, "cpu3: expected at least 7 values"),
]


@pytest.mark.parametrize(("case", "parse", "rel", "line", "words"), BROKEN, ids=[p.values[0] for p in BROKEN])
def test_broken_fixture(case, parse, rel, line, words):
    with pytest.raises(ParseError) as caught:
        parse(proc(f"broken/{case}", rel))
    where = rel if line is None else f"{rel}:{line}"
    assert (caught.value.source, caught.value.line) == (rel, line)
    assert str(caught.value).startswith(f"{where}: ")
    assert words in str(caught.value)


# ---------------------------------------------------------------- fixture trees are internally consistent


def device_irqs(sysfs: Path, name: str) -> list[str]:
    """IRQs of a NIC the way the contract maps them: msi_irqs/ of the PCI function, else its INTx `irq`."""
    device = Path(os.path.realpath(sysfs / "class/net" / name / "device"))
    if device.name.startswith("virtio"):
        device = device.parent
    msi = sorted(os.listdir(device / "msi_irqs")) if (device / "msi_irqs").is_dir() else []
    return msi or [(device / "irq").read_text().strip()]


@pytest.mark.parametrize("host", HOST_NAMES)
def test_fixture_tree_consistent(host):
    sysfs = HOSTS / host / "sys"
    names = sorted(os.listdir(sysfs / "class/net"))
    rows = proc(host, "net/dev").splitlines()[2:]
    assert sorted(r.split(":")[0].strip() for r in rows) == names
    irq_rows = {line.split(":")[0].strip() for line in proc(host, "interrupts").splitlines()[1:]}
    for name in names:
        if (sysfs / "class/net" / name / "device").exists():
            assert set(device_irqs(sysfs, name)) <= irq_rows, name
    for path in sysfs.rglob("*"):
        if path.is_symlink():
            target = Path(os.path.realpath(path))
            assert target.exists() and target.is_relative_to(HOSTS / host), path


def test_cpu_lists():
    assert cpu_list.parse("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert cpu_list.parse("0") == (0,)
    with pytest.raises(ParseError, match=r"devices/system/cpu/online: bad CPU range 'x'"):
        cpu_list.parse("0-3,x")


# /proc/locks as fs/locks.c prints it (Documentation/filesystems/proc.rst): a flock, a POSIX record lock, an OFD
# lock (pid -1), a flock blocked behind the first ("->", one more level deeper), a lock without an inode.
LOCKS = """1: FLOCK  ADVISORY  WRITE 4242 fd:00:2531448 0 EOF
1: -> FLOCK  ADVISORY  WRITE 5151 fd:00:2531448 0 EOF
1:  -> FLOCK  ADVISORY  WRITE 6161 fd:00:2531448 0 EOF
2: POSIX  ADVISORY  WRITE 3568 fd:00:2531452 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:06:1028 0 EOF
4: FLOCK  ADVISORY  READ  0 103:02:77 0 EOF
5: POSIX  *NOINODE* WRITE 77 <none>:0 0 EOF
"""


def test_proc_locks():
    held = locks.parse(LOCKS)
    assert [(lock.kind, lock.pid, lock.file) for lock in held] == [
        ("FLOCK", 4242, (0xFD, 0, 2531448)), ("POSIX", 3568, (0xFD, 0, 2531452)), ("OFDLCK", -1, (0, 6, 1028)),
        ("FLOCK", 0, (0x103, 2, 77)), ("POSIX", 77, None)]
    assert locks.flock_holders(held, (0xFD, 0, 2531448)) == {4242}  # not the blocked 5151 and 6161
    assert locks.flock_holders(held, (0xFD, 0, 2531452)) == set()  # a POSIX lock is not the ring's flock
    assert locks.flock_holders(held, (0x103, 2, 77)) == {0}  # a holder in another pid namespace
    assert locks.parse("") == ()


@pytest.mark.parametrize("line", ["1: FLOCK  ADVISORY  WRITE", "1: FLOCK  ADVISORY  WRITE x fd:00:1 0 EOF",
                                  "1: FLOCK  ADVISORY  WRITE 1 fd:00 0 EOF"])
def test_proc_locks_malformed(line):
    with pytest.raises(ParseError, match=r"^locks:1: "):
        locks.parse(line)


# ---------------------------------------------------------------- properties: ParseError or a result, nothing else


def test_interrupts_superscript_cpu_header_is_a_parse_error():
    with pytest.raises(ParseError):  # str.isdigit() accepts "\u00b2", int() does not
        interrupts.parse("CPU0 CPU\u00b2\n")


@pytest.mark.parametrize("text", ["CPU\n", "CPU0 CPUx\n", "CPU0\n 1:          \u00b2  IO-APIC 1-edge  i8042\n"])
def test_interrupts_bad_numbers_are_parse_errors(text):
    with pytest.raises(ParseError):
        interrupts.parse(text)


TOKENS = (
    "CPU0", "CPU1", "CPU", "CPUx", "cpu", "cpu0", "cpu1 ", "NET_RX", "NET_TX", "eth0", "lo", "IO-APIC", "edge",
    "Edge", "Level", "fasteoi", "PCI-MSIX-0000:00:03.0", "0", "7", "42", "4294967295", "ffffffff", "0000zz12",
    "-1", "+1", "1_0", "\u00b2", "\u0663", "|", ":", ",", ", ", " ", "  ", "\t", "\n", "\n", "\r", "\x0b", "\x00",
    "NMI", "ERR", "IPI0",
)
FIXTURE_TEXTS = [
    proc(host, rel)
    for host in ("tg3-pair", "arm64-igb", "virtio-live")
    for rel in ("interrupts", "softirqs", "stat", "net/softnet_stat", "net/dev")
]


@st.composite
def mutated_fixture(draw) -> str:
    """A real fixture file with a slice cut out and a token spliced in."""
    text = draw(st.sampled_from(FIXTURE_TEXTS))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 200)))
    return text[:start] + draw(st.sampled_from(TOKENS)) + text[end:]


TOKEN_SOUP = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)
CPU_SUFFIX = st.one_of(st.sampled_from(["", "0", "17", "x", "-1", "+2", "1_0", "\u00b2", "\u0663"]),
                       st.text(max_size=3))
CPU_HEADER = st.lists(CPU_SUFFIX.map("CPU".__add__), min_size=1, max_size=4).map(" ".join)
ANY_TEXT = st.one_of(
    st.text(), TOKEN_SOUP, mutated_fixture(), st.tuples(CPU_HEADER, TOKEN_SOUP).map("\n".join),
)


PARSERS = [
    pytest.param(softnet_stat.parse, id="softnet_stat"),
    pytest.param(interrupts.parse, id="interrupts"),
    pytest.param(lambda text: interrupts.parse(text, wanted={"1", "45"}), id="interrupts-wanted"),
    pytest.param(softirqs.parse, id="softirqs"),
    pytest.param(proc_stat.parse_softirq_ticks, id="stat"),
    pytest.param(net_dev.parse, id="net_dev"),
]


@pytest.mark.parametrize("parse", PARSERS)
@settings(max_examples=300, deadline=None)
@given(text=ANY_TEXT)
@example(text="")
@example(text="\n\n")
def test_parser_returns_or_raises_parse_error(parse, text):
    try:
        parse(text)
    except ParseError:
        pass


def test_net_dev_rows_whose_miscounts_balance_are_not_read_as_columns():
    """One row a counter short and the next one over: the token count of the whole text is right, the rows are not."""
    text = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
            "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n"
            "  eth1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n")
    with pytest.raises(ParseError) as caught:
        net_dev.parse(text)
    assert str(caught.value) == "net/dev:3: eth0: expected 16 counters, found 15"
