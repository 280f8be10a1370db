"""Kept-open kernel files (lxcwatch/sources/openfiles.py): a pread at offset 0 sees fresh text, and a file whose
process or device is gone says so, as the lxc collector's fast path relies on."""

import os
import subprocess

import pytest

import netlab

from lxcwatch.sources.openfiles import FD_BASE, OpenFiles


def test_kept_descriptors_sit_above_the_select_range_and_see_rewrites(tmp_path):
    files = OpenFiles(budget=2)
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for i, path in enumerate(paths):
        path.write_text(f"{i}\n")
    assert [files.read(str(p)) for p in paths] == ["0", "1", "2"]
    assert len(files) == 2 and not files.kept(str(paths[2]))  # over budget: opened and closed each time
    assert all(files.fd(str(p)) >= FD_BASE for p in paths[:2])
    paths[0].write_text("10\n")  # in place, as the kernel regenerates a seq_file
    assert files.read(str(paths[0])) == "10"
    files.forget_under((str(tmp_path) + "/",))
    assert len(files) == 0
    assert files.read(str(tmp_path / "missing")) is None


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
