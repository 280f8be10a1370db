"""Fixtures of the live tier, which need root: a network lab, a tiny real file system to fill."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import netlab


@pytest.fixture
def tiny_tmpfs():
    """A 64 KiB tmpfs mounted on a fresh directory, unmounted and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory = tempfile.mkdtemp(prefix="lxcwatch-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", directory], check=True)
    try:
        yield Path(directory)
    finally:
        subprocess.run(["umount", "--lazy", directory], check=True)  # lazy: a failed test may hold the ring open
        os.rmdir(directory)


@pytest.fixture
def lab():
    """A bridge/veth/namespace lab (tests/support/netlab.py), removed afterwards even when the test fails."""
    reason = netlab.unavailable()
    if reason:
        pytest.skip(reason)
    lab = netlab.Lab()
    yield lab
    lab.cleanup()
    assert not netlab.leftovers(lab.suffix), "lab links or namespaces left behind"
