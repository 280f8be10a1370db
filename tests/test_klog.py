"""Kernel log signatures: exact kernel wordings, old and new; pstore; real journal files from systemd-journal-remote."""

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from agent import wait_until
from lxcwatch.blackbox import flight_recorder, klog
from lxcwatch.kernel import kmsg

CASES = [
    ("NETDEV WATCHDOG: eth0 (tg3): transmit queue 0 timed out", ("netdev_watchdog", "eth0")),
    ("<4>[1234.5678] NETDEV WATCHDOG: enp3s0f1 (tg3): transmit queue 2 timed out", ("netdev_watchdog", "enp3s0f1")),
    ("tg3 0000:02:00.0 eth1: NETDEV WATCHDOG: CPU: 3: transmit queue 0 timed out 5120 ms", ("netdev_watchdog", "eth1")),
    ("eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 1 timed out 8000 ms", ("netdev_watchdog", "eth0")),
    ("tg3 0000:02:00.0 eth0: transmit timed out, resetting", ("tx_timeout", "eth0")),
    ("Kernel panic - not syncing: Fatal exception in interrupt", ("panic", "")),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000008", ("null_dereference", "")),
    ("BUG: unable to handle kernel NULL pointer dereference at 0000000000000010", ("null_dereference", "")),
    ("watchdog: BUG: soft lockup - CPU#3 stuck for 22s! [ksoftirqd/3:30]", ("soft_lockup", "")),
    ("BUG: soft lockup - CPU#0 stuck for 23s! [swapper/0:0]", ("soft_lockup", "")),
    ("rcu: INFO: rcu_sched self-detected stall on CPU", ("rcu_stall", "")),
    ("INFO: rcu_preempt detected stalls on CPUs/tasks:", ("rcu_stall", "")),
    ("NAPI poll function tg3_poll_msix+0x0/0x1e0 [tg3] returned 65, exceeding its budget of 64.", ("napi_budget", "")),
    ("device eth0 entered promiscuous mode", ("promiscuous", "eth0")),
    ("eth0.100: entered promiscuous mode", ("promiscuous", "eth0.100")),
    ("tg3 0000:02:00.0 eth1: entered promiscuous mode", ("promiscuous", "eth1")),
    ("device eth0 left promiscuous mode", None),
    ("tg3 0000:02:00.0 eth0: Link is up at 1000 Mbps, full duplex", None),
    ("br0: port 1(eth0) entered forwarding state", None),
    ("", None),
]


@pytest.mark.parametrize("line,expected", CASES)
def test_signatures(line, expected):
    assert kmsg.match(line) == expected


def test_kmsg_records_of_user_space_are_not_kernel_messages():
    assert kmsg.kmsg_message("12,1022,5678200,-;lxwfake0: entered promiscuous mode") is None  # user.warning
    assert kmsg.kmsg_message("30,1023,5678300,-;systemd[1]: Started foo.service.") is None  # daemon.info


def test_kmsg_records():
    assert kmsg.kmsg_message("4,1021,5678123,-;tg3 0000:02:00.0 eth0: transmit timed out, resetting") == \
        "tg3 0000:02:00.0 eth0: transmit timed out, resetting"
    assert kmsg.kmsg_message(" SUBSYSTEM=pci") is None


def test_pstore_dumps_are_counted(tmp_path):
    (tmp_path / "dmesg-ramoops-0").write_text(
        "Panic#1 Part1\n<4>[ 8123.1] NETDEV WATCHDOG: eth0 (tg3): transmit queue 0 timed out\n"
        "<4>[ 8123.2] tg3 0000:02:00.0 eth0: transmit timed out, resetting\n"
        "<0>[ 8124.0] Kernel panic - not syncing: Fatal exception in interrupt\n")
    (tmp_path / "dmesg-efi-1.enc.z").write_bytes(b"Kernel panic - not syncing")  # compressed: not read
    assert kmsg.count(klog.pstore_lines(str(tmp_path))) == {
        ("netdev_watchdog", "eth0"): 1, ("tx_timeout", "eth0"): 1, ("panic", ""): 1}
    assert kmsg.count(klog.pstore_lines(str(tmp_path / "absent"))) == {}


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def export(entries: list[dict]) -> bytes:
    """Journal Export Format."""
    out = []
    for i, e in enumerate(entries):
        fields = {"__CURSOR": f"s=0;i={i}", "__REALTIME_TIMESTAMP": str(int(e.pop("t") * 1e6)),
                  "__MONOTONIC_TIMESTAMP": str(i + 1), "_HOSTNAME": "node-a", **e}
        out.append("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n")
    return "".join(out).encode()


def make_journal(directory: Path, entries: list[dict]) -> Path:
    if not Path(JOURNAL_REMOTE).exists():
        pytest.skip("systemd-journal-remote is not installed (scripts/debian-packages)")
    directory.mkdir(exist_ok=True)
    subprocess.run([JOURNAL_REMOTE, "-o", str(directory / "remote.journal"), "-"], input=export(entries),
                   check=True, capture_output=True)
    return directory


def kernel(t: float, boot: str, message: str) -> dict:
    return {"t": t, "_BOOT_ID": boot.replace("-", ""), "_TRANSPORT": "kernel", "MESSAGE": message}


PREVIOUS = "0123456789abcdef0123456789abcdef"
OLDER = "fedcba9876543210fedcba9876543210"


def journal_of_three_boots(tmp_path) -> tuple[Path, str]:
    current = flight_recorder.boot_id()
    return make_journal(tmp_path / "journal", [
        kernel(1000.0, OLDER, "NETDEV WATCHDOG: eth9 (tg3): transmit queue 0 timed out"),
        kernel(2000.0, PREVIOUS, "device eth0 entered promiscuous mode"),
        {"t": 2001.0, "_BOOT_ID": PREVIOUS, "_TRANSPORT": "stdout", "MESSAGE": "Kernel panic - not syncing: a user's echo"},
        kernel(2002.0, PREVIOUS, "tg3 0000:02:00.0 eth0: transmit timed out, resetting"),
        kernel(2003.0, PREVIOUS, "tg3 0000:02:00.0 eth0: transmit timed out, resetting"),
        kernel(2004.0, PREVIOUS, "Kernel panic - not syncing: Fatal exception in interrupt"),
        kernel(3000.0, current, "tg3 0000:02:00.0 eth1: NETDEV WATCHDOG: CPU: 1: transmit queue 0 timed out 5000 ms"),
    ]), current


def test_previous_boot_from_real_journal_files(tmp_path):
    journal, current = journal_of_three_boots(tmp_path)
    assert klog.previous_boot(str(journal), current) == str(uuid.UUID(PREVIOUS))
    previous, counts = klog.scan_previous_boot(current, str(journal), True, None)
    assert previous == str(uuid.UUID(PREVIOUS))
    assert counts == {("promiscuous", "eth0"): 1, ("tx_timeout", "eth0"): 2, ("panic", ""): 1}


def test_live_watch_counts_this_boot_from_the_journal(tmp_path):
    journal, current = journal_of_three_boots(tmp_path)
    watch = klog.Watch(current, str(journal), None, True)
    try:
        assert watch.source == "journal"
        deadline = time.monotonic() + 10
        while not watch.counts and time.monotonic() < deadline:
            watch._stop.wait(0.02)  # the thread reads the journal; nothing to wait on but its result
        assert dict(watch.counts) == {("netdev_watchdog", "eth1"): 1}
    finally:
        watch.stop()


@pytest.mark.live
def test_live_watch_counts_the_real_kernel_from_kmsg(lab):
    """A veth joining a bridge makes this kernel log "<veth>: entered promiscuous mode"; the same words written
    into /dev/kmsg by user space just before are not the kernel's and are not counted."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    watch = klog.Watch(boot, None, "/dev/kmsg", use_journal=False)
    try:
        assert watch.source == "kmsg"
        forged = lab.name("fk")
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(f"{forged}: entered promiscuous mode\n")
        port, _ = lab.veth("kp", "kq", bridge=lab.bridge("kb"), up=False)
        # Records are read in order: once the kernel's is counted, the forgery before it has been read too.
        wait_until(lambda: ("promiscuous", port) in watch.counts, f"{port} counted", timeout=10,
                   diagnose=lambda: str(dict(watch.counts)))
        assert watch.counts[("promiscuous", port)] == 1
        assert ("promiscuous", forged) not in watch.counts
    finally:
        watch.stop()


def test_no_journal_and_no_kmsg_is_a_state_not_a_crash(tmp_path, caplog):
    watch = klog.Watch("b", str(tmp_path / "no-journal"), str(tmp_path / "no-kmsg"), True)
    assert watch.source == "none"
    assert any("unavailable" in r.getMessage() for r in caplog.records)


def test_fold_bounds_the_device_label():
    counts = kmsg.count([f"device veth{i} entered promiscuous mode" for i in range(40)] +
                        ["tg3 0000:02:00.0 eth0: transmit timed out, resetting", "Kernel panic - not syncing: x"])
    folded = kmsg.fold(counts, limit=32)
    assert folded[("promiscuous", "other")] == 8 and folded[("promiscuous", "veth31")] == 1
    assert ("promiscuous", "veth32") not in folded
    assert folded[("tx_timeout", "eth0")] == 1 and folded[("panic", "")] == 1
