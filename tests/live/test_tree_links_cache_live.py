"""Tree mode (--path.sysfs not /sys) on the kernel's own sysfs: no inotify watcher there, every change of a real veth
is seen."""

import os
import subprocess
import uuid

import pytest

from lxcwatch.sources import tree_watch
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.root import Root
from lxcwatch.sources.sysfs_links import SysfsLinks
from tests.support.agent import wait_until


def test_a_kernel_sysfs_gets_no_watcher():
    assert tree_watch.fs_type("/sys") == 0x62656572  # SYSFS_MAGIC
    assert not tree_watch.watchable("/sys") and tree_watch.open_for("/sys/class/net") is None


def test_tree_mode_on_a_kernel_sysfs_sees_every_change_of_a_veth():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a veth pair")
    a, b = f"lwp{uuid.uuid4().hex[:8]}", f"lwq{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        sysfs = Root("/sys")
        nics = NicDirectory(sysfs)
        links = SysfsLinks(sysfs, nics)  # tree mode on the kernel's own sysfs, as with --path.sysfs=/host/sys
        assert links.read(nics.current())[a].promiscuous is False
        subprocess.run(["ip", "link", "set", a, "promisc", "on"], check=True)
        assert links.read(nics.current())[a].promiscuous is True
        subprocess.run(["ip", "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "link", "set", b, "up"], check=True)
        # operstate follows carrier through the kernel's linkwatch work, up to a second later
        wait_until(lambda: links.read(nics.current())[a].operstate == "up", f"{a} operstate up")
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)
