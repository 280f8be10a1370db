"""The kernel log watch on the live kernel's /dev/kmsg: a veth joining a bridge is counted, a forgery from user space
is not."""

from pathlib import Path

import pytest

from tests.support.agent import wait_until
from lxcwatch.blackbox import klog


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
