"""Kept-open files of the live host (lxcwatch/sources/openfiles.py): a kept /proc file of an exited process and a
kept sysfs file of a deleted link answer gone, as the lxc collector's fast path relies on."""

import os
import subprocess

import pytest

from tests.support import netlab
from lxcwatch.sources.openfiles import FD_BASE, OpenFiles


def test_a_kept_proc_file_of_an_exited_process_answers_gone():
    child = subprocess.Popen(["sleep", "60"])
    files = OpenFiles(budget=8)
    path = f"/proc/{child.pid}/stat"
    try:
        assert files.read(path).startswith(f"{child.pid} (sleep) ")
        assert files.kept(path)
    finally:
        child.kill()
        child.wait()
    assert files.read(path) is None  # ESRCH from the kept descriptor, whatever the PID is now
    assert not files.kept(path)


@pytest.mark.live
def test_a_kept_sysfs_file_of_a_deleted_link_answers_gone():
    reason = netlab.unavailable()
    if reason:
        pytest.skip(reason)
    name, peer = f"lxwof{os.getpid() % 10000}", f"lxwog{os.getpid() % 10000}"
    netlab.ip("link", "add", name, "type", "veth", "peer", "name", peer)
    files = OpenFiles(budget=8)
    path = f"/sys/class/net/{name}/operstate"
    try:
        assert files.read(path) == "down"
        netlab.ip("link", "set", peer, "up")
        netlab.ip("link", "set", name, "up")
        assert files.read(path) == "up"  # the same descriptor, the new state
        directory = files.directory(f"/sys/class/net/{name}")
        assert directory is not None and directory >= FD_BASE
    finally:
        netlab.ip("link", "del", name, check=False)
    assert files.read(path) is None  # ENODEV: the kernfs node is gone
    files.close()
    assert len(files) == 0
