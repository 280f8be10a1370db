"""IRQ -> NIC assignment by bus device, name fallback, and vector kinds."""

import pytest

from lxcwatch.kernel import interrupts
from lxcwatch.kernel.irq_vectors import assign
from lxcwatch.kernel.nic import Nic

HEADER = "           CPU0       CPU1\n"


def rows(*lines: str) -> interrupts.Interrupts:
    return interrupts.parse(HEADER + "".join(f"{line}\n" for line in lines))


@pytest.mark.parametrize(
    "nic,lines,expected",
    [
        (
            Nic("eth0", "0000:00:03.0", "virtio_net", ("37", "38", "39")),
            [" 37: 0 0 PCI-MSIX-0000:00:03.0 0-edge virtio2-config",
             " 38: 0 5 PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0",
             " 39: 4 0 PCI-MSIX-0000:00:03.0 2-edge virtio2-output.0"],
            [("37", "control"), ("38", "rx"), ("39", "tx")],
        ),
        (
            Nic("eth0", "0000:01:00.0", "igb", ("50", "51", "52")),
            [" 50: 1 0 IR-PCI-MSI-edge eth0", " 51: 9 0 IR-PCI-MSI-edge eth0-TxRx-0", " 52: 0 9 IR-PCI-MSI-edge eth0-TxRx-1"],
            [("50", "control"), ("51", "txrx"), ("52", "txrx")],
        ),
        (
            Nic("eth0", "0000:02:00.0", "tg3", ("60",)),
            [" 60: 100 0 IR-PCI-MSI-edge eth0"],
            [("60", "txrx")],
        ),
        (
            Nic("eth1", "0000:02:00.1", "tg3", ("61", "62", "63")),
            [" 61: 1 0 IR-PCI-MSI-edge eth1-rx-1", " 62: 1 0 IR-PCI-MSI-edge eth1-tx-1", " 63: 1 0 IR-PCI-MSI-edge eth1-txrx-2"],
            [("61", "rx"), ("62", "tx"), ("63", "txrx")],
        ),
        (
            Nic("ens1f0np0", "0000:3b:00.0", "mlx5_core", ("70", "71")),
            [" 70: 0 0 PCI-MSIX-0000:3b:00.0 0-edge mlx5_async0@pci:0000:3b:00.0",
             " 71: 0 7 PCI-MSIX-0000:3b:00.0 1-edge mlx5_comp0@pci:0000:3b:00.0"],
            [("70", "control"), ("71", "txrx")],
        ),
        (
            Nic("eth1", "0000:00:1d.0", "e1000", ("45",)),
            [" 45: 3 3 IO-APIC 16-fasteoi ehci_hcd:usb1, eth1"],
            [("45", "txrx")],
        ),
    ],
    ids=["virtio", "igb-link-vector", "tg3-single", "tg3-split", "mlx5", "shared-intx"],
)
def test_assign_by_device(nic, lines, expected):
    got = assign({nic.name: nic}, rows(*lines))
    assert [(i.irq, i.vector) for i in got] == expected
    assert {i.device for i in got} == {nic.name}


def test_device_irqs_win_over_misleading_names():
    # eth0 was renamed from eth1: its handler names are stale, but its device owns IRQ 80.
    nic = Nic("eth0", "0000:05:00.0", "tg3", ("80",))
    got = assign({"eth0": nic}, rows(" 80: 5 5 IR-PCI-MSI-edge eth1", " 81: 5 5 IR-PCI-MSI-edge eth0"))
    assert [i.irq for i in got] == ["80"]


def test_name_fallback_when_the_device_tree_has_no_irqs():
    nic = Nic("eth2", "0000:06:00.0", "i40e", ())
    got = assign({"eth2": nic}, rows(
        " 90: 0 0 IR-PCI-MSI 0-edge i40e-0000:06:00.0:misc",
        " 91: 4 0 IR-PCI-MSI 1-edge i40e-eth2-TxRx-0",
        " 92: 0 0 IR-PCI-MSI 2-edge eth20-TxRx-0",
    ))
    assert [(i.irq, i.vector) for i in got] == [("90", "control"), ("91", "txrx")]
