"""Deterministic generator of a large host tree (DIR/proc + DIR/sys) in the layout of docs/contract.md."""

import argparse
import os
import sys
import zlib
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthetic_containers  # noqa: E402  (sibling module)

# Kernel print widths: /proc/interrupts pads the IRQ column to the digits of nr_irqs (kernel/irq/proc.c).
NR_IRQS = 2048
PREC = len(str(NR_IRQS))
SOFTIRQS = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU")
SPECIAL_ROWS = (  # x86 arch_show_interrupts(): per-CPU system counters after the numbered IRQs
    ("NMI", "Non-maskable interrupts"),
    ("LOC", "Local timer interrupts"),
    ("SPU", "Spurious interrupts"),
    ("PMI", "Performance monitoring interrupts"),
    ("IWI", "IRQ work interrupts"),
    ("RTR", "APIC ICR read retries"),
    ("RES", "Rescheduling interrupts"),
    ("CAL", "Function call interrupts"),
    ("TLB", "TLB shootdowns"),
    ("TRM", "Thermal event interrupts"),
    ("THR", "Threshold APIC interrupts"),
    ("DFR", "Deferred Error APIC interrupts"),
    ("MCE", "Machine check exceptions"),
    ("MCP", "Machine check polls"),
)
TRAILING_ROWS = (("PIN", "Posted-interrupt notification event"), ("NPI", "Nested posted-interrupt event"),
                 ("PIW", "Posted-interrupt wakeup event"))
# (driver, PCI vendor, PCI device, speed Mb/s, MAC prefix, module version or None for in-tree drivers)
CARDS = (("ixgbe", "0x8086", "0x10fb", 10000, "a0:36:9f", None),
         ("tg3", "0x14e4", "0x165f", 1000, "00:10:18", "3.137"))


@dataclass(frozen=True)
class Irq:
    """One numbered row of /proc/interrupts."""

    number: int
    chip: str  # "PCI-MSIX-0000:18:00.0", "IO-APIC"
    hwirq: int
    flow: str  # "edge", "fasteoi"
    action: str
    home: int  # the CPU that takes most of the counts
    busy: bool = False  # a queue that carries traffic (large counts) rather than link or housekeeping events


@dataclass(frozen=True)
class Nic:
    """A physical PCI network function and where it sits in /sys/devices."""

    name: str
    driver: str
    vendor: str
    device: str
    speed: int
    mac_prefix: str
    module_version: str | None
    pci_dir: str  # relative to sys/, e.g. "devices/pci0000:00/0000:00:01.0/0000:18:00.0"
    irqs: tuple[int, ...]


@dataclass(frozen=True)
class Link:
    """One network interface as sysfs and /proc/net/dev show it."""

    name: str
    ifindex: int
    iflink: int
    kind: str  # loopback, physical, bridge, veth
    master: str | None = None
    nic: Nic | None = None


@dataclass(frozen=True)
class Host:
    cpus: int
    irqs: tuple[Irq, ...]
    links: tuple[Link, ...]


def num(*key: object, lo: int = 0, hi: int = 1_000_000) -> int:
    """A deterministic pseudo-random integer in [lo, hi) derived from `key`."""
    return lo + zlib.crc32(repr(key).encode()) % max(hi - lo, 1)


# ---- plan: names, numbers and topology, no I/O -------------------------------------------------------


def plan(cpus: int = 128, nics: int = 8, queues: int = 32, veths: int = 1000) -> Host:
    """The whole host as data: IRQ rows in number order and links in ifindex order."""
    irqs = _system_irqs(cpus)
    nic_list = []
    for index in range(nics):
        nic, nic_irqs = _plan_nic(index, queues, next_irq=irqs[-1].number + 1, cpus=cpus)
        nic_list.append(nic)
        irqs.extend(nic_irqs)
    irqs.extend(_storage_irqs(irqs[-1].number + 1, cpus))
    return Host(cpus, tuple(irqs), tuple(_plan_links(nic_list, veths)))


def _system_irqs(cpus: int) -> list[Irq]:
    """Legacy IO-APIC lines, DMAR and PCIe port service IRQs: the rows before the NICs."""
    legacy = [(0, "2-edge", "timer"), (1, "1-edge", "i8042"), (4, "4-edge", "ttyS0"), (8, "8-edge", "rtc0"),
              (9, "9-fasteoi", "acpi"), (12, "12-edge", "i8042"), (14, "14-edge", "ata_piix"),
              (15, "15-edge", "ata_piix"), (16, "16-fasteoi", "ehci_hcd:usb1"), (18, "18-fasteoi", "i801_smbus"),
              (19, "19-fasteoi", "ipmi_si"), (23, "23-fasteoi", "ehci_hcd:usb2")]
    rows = [Irq(n, "IO-APIC", int(hw.split("-")[0]), hw.split("-")[1], name, 0) for n, hw, name in legacy]
    rows += [Irq(24 + i, "DMAR-MSI", i, "edge", f"dmar{i}", 0) for i in range(2)]
    for port in range(8):
        bdf = f"0000:{0x80 * (port // 4):02x}:{port % 4 + 1:02x}.0"
        rows.append(Irq(26 + port, f"PCI-MSI-{bdf}", 0, "edge", "PCIe PME, aerdrv, pciehp", port % cpus))
    rows += [Irq(34, "PCI-MSI-0000:00:17.0", 0, "edge", "ahci[0000:00:17.0]", 2 % cpus),
             Irq(35, "PCI-MSI-0000:00:14.0", 0, "edge", "xhci_hcd", 3 % cpus),
             Irq(36, "PCI-MSI-0000:00:16.0", 0, "edge", "mei_me", 4 % cpus)]
    rows += [Irq(37 + i, f"PCI-MSIX-0000:00:04.{i // 2}", i % 2, "edge", "ioat-msix", i % cpus) for i in range(16)]
    return rows


def _plan_nic(index: int, queues: int, next_irq: int, cpus: int) -> tuple[Nic, list[Irq]]:
    """Dual-port cards, alternating ixgbe and tg3, half of them behind the second host bridge."""
    card, function = divmod(index, 2)
    driver, vendor, device, speed, mac, version = CARDS[card % len(CARDS)]
    host_bridge = 0x80 * (card % 2)
    bus = host_bridge + 0x18 + card
    bdf = f"0000:{bus:02x}:00.{function}"
    pci_dir = f"devices/pci0000:{host_bridge:02x}/0000:{host_bridge:02x}:{card + 1:02x}.0/{bdf}"
    name = f"eth{index}"
    if driver == "ixgbe":  # queue vectors first, then the link ("other") vector named after the netdev
        vectors = [f"{name}-TxRx-{q}" for q in range(queues)] + [name]
    else:  # tg3: vector 0 carries link events, the others carry rings
        vectors = [name] + [f"{name}-txrx-{q + 1}" for q in range(queues)]
    chip = f"PCI-MSIX-{bdf}"
    irqs = [Irq(next_irq + entry, chip, entry, "edge", action, (index * queues + entry) % cpus, action != name)
            for entry, action in enumerate(vectors)]
    nic = Nic(name, driver, vendor, device, speed, mac, version, pci_dir, tuple(i.number for i in irqs))
    return nic, irqs


def _storage_irqs(first: int, cpus: int) -> list[Irq]:
    """Two NVMe drives with an admin queue and 32 I/O queues each: the rows after the NICs."""
    rows = []
    for drive in range(2):
        bdf = f"0000:{0xc1 + drive:02x}:00.0"
        for q in range(33):
            rows.append(Irq(first + len(rows), f"PCI-MSIX-{bdf}", q, "edge", f"nvme{drive}q{q}", (q * 4) % cpus, q > 0))
    return rows


def _plan_links(nics: list[Nic], veths: int) -> list[Link]:
    """lo, the NICs, lxcbr0..3, then host-side veths whose peers (ifindex + 1) live in containers."""
    links = [Link("lo", 1, 1, "loopback")]
    links += [Link(n.name, 2 + i, 2 + i, "physical", nic=n) for i, n in enumerate(nics)]
    bridges = [f"lxcbr{i}" for i in range(4)]
    base = len(links) + 1
    links += [Link(b, base + i, base + i, "bridge") for i, b in enumerate(bridges)]
    first_veth = base + len(bridges)
    for k in range(veths):
        ifindex = first_veth + 2 * k  # LXC creates the pair in the host, then moves the peer with its index
        links.append(Link(_veth_name(k), ifindex, ifindex + 1, "veth", master=bridges[k % len(bridges)]))
    return links


def _veth_name(k: int) -> str:
    """LXC style `vethXXXXXX`: six random alphanumerics, here derived from k."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    value = zlib.crc32(f"veth{k}".encode()) * 7919 + k
    chars = []
    for _ in range(6):
        value, rest = divmod(value, len(alphabet))
        chars.append(alphabet[rest])
    return "veth" + "".join(chars)


# ---- procfs text, rendered with the kernel's format strings --------------------------------------------


def render_interrupts(host: Host, tick: int = 0) -> str:
    """/proc/interrupts: kernel/irq/proc.c show_interrupts() plus x86 arch_show_interrupts(); `tick` moves the
    counters (see advance())."""
    cpus = range(host.cpus)
    out = [" " * (PREC + 8) + "".join(f"CPU{c:<8d}" for c in cpus)]
    for irq in host.irqs:
        counts = "".join(f"{_irq_count(irq, c, host.cpus, tick):10d} " for c in cpus)
        out.append(f"{irq.number:{PREC}d}: {counts}{irq.chip:>8s} {irq.hwirq:{PREC}d}-{irq.flow:<8s}  {irq.action}")
    for name, text in SPECIAL_ROWS:
        counts = "".join(f"{num(name, c, hi=5_000_000 if name in ('LOC', 'RES', 'CAL') else 50):10d} " for c in cpus)
        out.append(f"{name:>{PREC}s}: {counts}  {text}")
    out.append(f"{'ERR':>{PREC}s}: {0:10d}")
    out.append(f"{'MIS':>{PREC}s}: {0:10d}")
    for name, text in TRAILING_ROWS:
        out.append(f"{name:>{PREC}s}: " + "".join(f"{0:10d} " for _ in cpus) + f"  {text}")
    return "\n".join(out) + "\n"


def _irq_count(irq: Irq, cpu: int, cpus: int, tick: int = 0) -> int:
    """Most of an IRQ's count on its home CPU, some on the CPU irqbalance used before, 0 elsewhere. A busy queue's
    home count grows by 1,000-20,000 per tick (a coalesced NIC queue) and wraps at 32 bits, as the kernel's does."""
    if cpu == irq.home:
        if irq.busy:
            start = num(irq.number, "home", lo=10_000_000, hi=4_000_000_000)
            return (start + tick * num(irq.number, "rate", lo=1_000, hi=20_000)) % 2**32
        return num(irq.number, hi=50_000)
    if cpu == (irq.home + cpus // 2) % cpus:
        return num(irq.number, "old", hi=100_000)
    return 0


def render_softirqs(host: Host) -> str:
    """/proc/softirqs: fs/proc/softirqs.c, a column per possible CPU."""
    out = [" " * 20 + "".join(f"CPU{c:<8d}" for c in range(host.cpus))]
    for vector in SOFTIRQS:
        out.append(f"{vector:>12s}:" + "".join(f" {num(vector, c, hi=4_000_000_000):10d}" for c in range(host.cpus)))
    return "\n".join(out) + "\n"


def render_stat(host: Host) -> str:
    """/proc/stat: fs/proc/stat.c show_stat(); the 7th cpu value is softirq time."""
    per_cpu = [[num("stat", c, field, hi=50_000_000) for field in range(10)] for c in range(host.cpus)]
    for values in per_cpu:
        values[8] = values[9] = 0  # guest, guest_nice
    total = [sum(col) for col in zip(*per_cpu)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{c} " + " ".join(map(str, values)) for c, values in enumerate(per_cpu)]
    intr = [0] * NR_IRQS
    for irq in host.irqs:
        intr[irq.number] = sum(_irq_count(irq, c, host.cpus) for c in range(host.cpus))
    lines.append(f"intr {sum(intr)} " + " ".join(map(str, intr)))
    lines += ["ctxt 98765432101", "btime 1700000000", "processes 12345678", "procs_running 3", "procs_blocked 0"]
    softirq = [sum(num(v, c, hi=4_000_000_000) for c in range(host.cpus)) for v in SOFTIRQS]
    lines.append(f"softirq {sum(softirq)} " + " ".join(map(str, softirq)))
    return "\n".join(lines) + "\n"


def render_softnet(host: Host) -> str:
    """/proc/net/softnet_stat, 13 columns (5.10+): ..., cpu_collision, received_rps, flow_limit, backlog, cpu."""
    rows = []
    for c in range(host.cpus):
        values = [num("sn", c, 0, hi=2**32), num("sn", c, 1, hi=1000), num("sn", c, 2, hi=100_000), 0, 0, 0, 0, 0,
                  0, num("sn", c, 9, hi=10_000), 0, num("sn", c, 11, hi=4), c]
        rows.append(" ".join(f"{v:08x}" for v in values))
    return "\n".join(rows) + "\n"


def render_net_dev(host: Host, tick: int = 0) -> str:
    """/proc/net/dev: net/core/net-procfs.c dev_seq_printf_stats(); `tick` moves every link's bytes and packets."""
    out = ["Inter-|   Receive                                                |  Transmit",
           " face |bytes    packets errs drop fifo frame compressed multicast|"
           "bytes    packets errs drop fifo colls carrier compressed"]
    fmt = "%6s: %7d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d"
    for link in host.links:
        scale = 10**12 if link.kind == "physical" else 10**9
        rx_bytes = num(link.name, "rxb", hi=scale) + tick * num(link.name, "rxr", hi=10**7)
        tx_bytes = num(link.name, "txb", hi=scale) + tick * num(link.name, "txr", hi=10**7)
        rx_pkts, tx_pkts = rx_bytes // 700, tx_bytes // 700
        drops = num(link.name, "drop", hi=1000)
        out.append(fmt % (link.name, rx_bytes, rx_pkts, 0, drops, 0, 0, 0, rx_pkts // 1000,
                          tx_bytes, tx_pkts, 0, drops // 3, 0, 0, 0, 0))
    return "\n".join(out) + "\n"


NET_CORE = {"netdev_budget": "300", "netdev_budget_usecs": "8000", "netdev_max_backlog": "1000",
            "busy_poll": "0", "busy_read": "0", "dev_weight": "64", "somaxconn": "4096"}


# ---- writing the tree -----------------------------------------------------------------------------------


def build(dir: str, cpus: int = 128, nics: int = 8, queues: int = 32, veths: int = 1000, containers: int = 0) -> Host:
    """Write DIR/proc and DIR/sys for the planned host and return the plan; with `containers`, also DIR/var/lib/lxc
    and that many running LXC containers (synthetic_containers' layout), one behind each of the first veths."""
    host = plan(cpus, nics, queues, veths)
    if containers > veths:
        raise ValueError(f"{containers} containers need as many veths, not {veths}")
    proc, sysfs = os.path.join(dir, "proc"), os.path.join(dir, "sys")
    _write_proc(proc, host)
    _write_drivers(sysfs, host)
    for link in host.links:
        _write_link(sysfs, link)
    _write_bridge_ports(sysfs, host)
    os.makedirs(os.path.join(dir, "var", "lib", "lxc"), exist_ok=True)
    if containers:
        synthetic_containers.write_base(dir)
        for k, link in enumerate([link for link in host.links if link.kind == "veth"][:containers]):
            synthetic_containers.write_container(dir, k, link.master, link.ifindex, link.iflink)
    return host


def advance(dir: str, host: Host, tick: int) -> None:
    """Move the counters of a live host: every busy NIC queue's interrupts on its home CPU (one column of each of
    those rows changes, as with IRQ affinity) and every link's bytes and packets. Each file is replaced by rename,
    so that a reader sees the old text or the new."""
    proc = os.path.join(dir, "proc")
    for rel, text in (("interrupts", render_interrupts(host, tick)), ("net/dev", render_net_dev(host, tick))):
        path = os.path.join(proc, rel)
        _write(path + ".new", text)
        os.rename(path + ".new", path)


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _symlink(link: str, target: str) -> None:
    """A relative symlink the way kernfs_get_target_path() writes it: up to the common ancestor of the
    link's directory and the target's parent, then down, always naming the target (`device ->
    ../../../0000:18:00.0`, never `../..`)."""
    os.makedirs(os.path.dirname(link), exist_ok=True)
    up = os.path.relpath(os.path.dirname(target), os.path.dirname(link))
    name = os.path.basename(target)
    os.symlink(name if up == "." else f"{up}/{name}", link)


def _write_proc(proc: str, host: Host) -> None:
    _write(os.path.join(proc, "interrupts"), render_interrupts(host))
    _write(os.path.join(proc, "softirqs"), render_softirqs(host))
    _write(os.path.join(proc, "stat"), render_stat(host))
    _write(os.path.join(proc, "net", "softnet_stat"), render_softnet(host))
    _write(os.path.join(proc, "net", "dev"), render_net_dev(host))
    for name, value in NET_CORE.items():
        _write(os.path.join(proc, "sys", "net", "core", name), value + "\n")


def _write_drivers(sysfs: str, host: Host) -> None:
    """bus/pci/drivers/NAME with device links, and module/NAME (version only for out-of-tree style drivers)."""
    for link in host.links:
        nic = link.nic
        if nic is None:
            continue
        driver_dir = os.path.join(sysfs, "bus", "pci", "drivers", nic.driver)
        module_dir = os.path.join(sysfs, "module", nic.driver)
        bdf = os.path.basename(nic.pci_dir)
        _symlink(os.path.join(driver_dir, bdf), os.path.join(sysfs, nic.pci_dir))
        _symlink(os.path.join(sysfs, "bus", "pci", "devices", bdf), os.path.join(sysfs, nic.pci_dir))
        if not os.path.lexists(os.path.join(driver_dir, "module")):
            _symlink(os.path.join(driver_dir, "module"), module_dir)
            _symlink(os.path.join(module_dir, "drivers", f"pci:{nic.driver}"), driver_dir)
            if nic.module_version:
                _write(os.path.join(module_dir, "version"), nic.module_version + "\n")


def _write_link(sysfs: str, link: Link) -> None:
    """devices/<...>/net/IF with its attributes, and the class/net/IF symlink to it."""
    if link.nic:
        dev_dir = os.path.join(sysfs, link.nic.pci_dir, "net", link.name)
        _write_pci_function(sysfs, link.nic)
        _symlink(os.path.join(dev_dir, "device"), os.path.join(sysfs, link.nic.pci_dir))
    else:
        dev_dir = os.path.join(sysfs, "devices", "virtual", "net", link.name)
    for name, value in _link_attrs(link).items():
        _write(os.path.join(dev_dir, name), value + "\n")
    _symlink(os.path.join(dev_dir, "subsystem"), os.path.join(sysfs, "class", "net"))
    _symlink(os.path.join(sysfs, "class", "net", link.name), dev_dir)
    rx_queues = len(link.nic.irqs) - 1 if link.nic else 1
    for q in range(rx_queues):
        _write(os.path.join(dev_dir, "queues", f"rx-{q}", "rps_cpus"), "0\n")
        _write(os.path.join(dev_dir, "queues", f"tx-{q}", "tx_timeout"), "0\n")
    if link.kind == "bridge":
        for name, value in _bridge_attrs(link).items():
            _write(os.path.join(dev_dir, "bridge", name), value + "\n")
        os.makedirs(os.path.join(dev_dir, "brif"), exist_ok=True)


def _write_pci_function(sysfs: str, nic: Nic) -> None:
    """The PCI function: driver link, msi_irqs/ (one file per IRQ), INTx irq and identity files."""
    pci = os.path.join(sysfs, nic.pci_dir)
    _symlink(os.path.join(pci, "driver"), os.path.join(sysfs, "bus", "pci", "drivers", nic.driver))
    _symlink(os.path.join(pci, "subsystem"), os.path.join(sysfs, "bus", "pci"))
    for irq in nic.irqs:
        _write(os.path.join(pci, "msi_irqs", str(irq)), "msix\n")
    numa = 0 if "pci0000:00" in nic.pci_dir else 1
    files = {"irq": "16", "vendor": nic.vendor, "device": nic.device, "class": "0x020000",
             "numa_node": str(numa), "local_cpulist": "0-63" if numa == 0 else "64-127", "enable": "1"}
    for name, value in files.items():
        _write(os.path.join(pci, name), value + "\n")


def _link_attrs(link: Link) -> dict[str, str]:
    """The regular files of /sys/class/net/IF (what node_exporter's netclass collector reads too)."""
    flags = {"loopback": 0x9, "physical": 0x1003, "bridge": 0x1003, "veth": 0x1103}[link.kind]  # ports: PROMISC
    attrs = {
        "addr_assign_type": {"physical": "0", "veth": "1"}.get(link.kind, "3"),
        "addr_len": "6", "address": _mac(link), "broadcast": "ff:ff:ff:ff:ff:ff" if link.kind != "loopback" else
        "00:00:00:00:00:00", "carrier": "1", "carrier_changes": "2", "carrier_down_count": "1",
        "carrier_up_count": "1", "dev_id": "0x0", "dev_port": "0", "dormant": "0", "flags": f"{flags:#x}",
        "ifalias": "", "ifindex": str(link.ifindex), "iflink": str(link.iflink), "link_mode": "0",
        "mtu": "65536" if link.kind == "loopback" else "1500", "name_assign_type": "4" if link.nic else "3",
        "netdev_group": "0", "operstate": "unknown" if link.kind == "loopback" else "up", "proto_down": "0",
        "testing": "0", "tx_queue_len": "0" if link.kind == "bridge" else "1000",
        "type": "772" if link.kind == "loopback" else "1", "uevent": _uevent(link),
    }
    attrs.update(_napi_attrs(link))
    if link.kind in ("physical", "veth"):  # bridges and lo answer EINVAL: absent here
        attrs["speed"] = str(link.nic.speed if link.nic else 10000)
        attrs["duplex"] = "full"
    return attrs


def _napi_attrs(link: Link) -> dict[str, str]:
    """NAPI tuning: eth1 polls in threads, eth2 defers hard IRQs; everything else has kernel defaults."""
    threaded, defer, gro = "0", "0", "0"
    if link.name == "eth1":
        threaded = "1"
    elif link.name == "eth2":
        defer, gro = "2", "200000"
    return {"threaded": threaded, "napi_defer_hard_irqs": defer, "gro_flush_timeout": gro}


def _uevent(link: Link) -> str:
    devtype = "DEVTYPE=bridge\n" if link.kind == "bridge" else ""
    return f"{devtype}INTERFACE={link.name}\nIFINDEX={link.ifindex}"


def _mac(link: Link) -> str:
    if link.kind == "loopback":
        return "00:00:00:00:00:00"
    prefix = link.nic.mac_prefix if link.nic else "fe:16:3e"
    tail = num("mac", link.name, hi=2**24)
    return f"{prefix}:{tail >> 16:02x}:{(tail >> 8) & 0xFF:02x}:{tail & 0xFF:02x}"


def _bridge_attrs(link: Link) -> dict[str, str]:
    bridge_id = "8000." + _mac(link).replace(":", "")
    return {"stp_state": "0", "forward_delay": "1500", "hello_time": "200", "max_age": "2000",
            "ageing_time": "30000", "priority": "32768", "bridge_id": bridge_id, "vlan_filtering": "0",
            "multicast_snooping": "1"}


def _write_bridge_ports(sysfs: str, host: Host) -> None:
    """Port side: brport/, master and upper_BR links; bridge side: brif/PORT and lower_PORT links."""
    virtual = os.path.join(sysfs, "devices", "virtual", "net")
    port_numbers: dict[str, int] = {}
    for link in host.links:
        if link.master is None:
            continue
        port_dir = os.path.join(virtual, link.name)
        bridge_dir = os.path.join(virtual, link.master)
        port_no = port_numbers[link.master] = port_numbers.get(link.master, 0) + 1
        brport = {"state": "3", "port_no": f"{port_no:#x}", "path_cost": "2", "priority": "32",
                  "hairpin_mode": "0", "learning": "1", "unicast_flood": "1"}
        for name, value in brport.items():
            _write(os.path.join(port_dir, "brport", name), value + "\n")
        _symlink(os.path.join(port_dir, "master"), bridge_dir)
        _symlink(os.path.join(port_dir, f"upper_{link.master}"), bridge_dir)
        _symlink(os.path.join(bridge_dir, "brif", link.name), os.path.join(port_dir, "brport"))
        _symlink(os.path.join(bridge_dir, f"lower_{link.name}"), port_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", help="output directory (proc/ and sys/ are created in it; must not exist yet)")
    parser.add_argument("--cpus", type=int, default=128)
    parser.add_argument("--nics", type=int, default=8)
    parser.add_argument("--queues", type=int, default=32)
    parser.add_argument("--veths", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=0, help="running LXC containers, one per veth (default 0)")
    args = parser.parse_args(argv)
    if os.path.exists(os.path.join(args.dir, "proc")) or os.path.exists(os.path.join(args.dir, "sys")):
        parser.error(f"{args.dir} already holds proc/ or sys/")
    if args.containers > args.veths:
        parser.error("--containers must not exceed --veths (one veth per container)")
    host = build(args.dir, args.cpus, args.nics, args.queues, args.veths, args.containers)
    print(f"{args.dir}: {host.cpus} CPUs, {len(host.irqs)} IRQs, {len(host.links)} links", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
